"""The city model: districts, road segments, gateways and sensors, loaded from YAML.

Coordinates are kilometres on a local east/north grid (x, y); the dashboard draws them without
map tiles. Every error names the file, the key path and the value::

    ConfigError: config/city.yaml: gateways[3].kind='loops': unknown kind (known: loop, air, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from config.domains import KIND_DOMAIN
from config.errors import ConfigError


@dataclass(frozen=True, slots=True)
class District:
    id: str
    name: str
    name_zh: str
    polygon: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Segment:
    id: str
    district: str
    length_km: float
    lanes: int
    free_speed_kmh: float
    capacity_vph: float
    coords: tuple[tuple[float, float], ...]
    #: graph nodes (optional): a segment runs ``from_node -> to_node``; queues spill back to
    #: the segments that end where this one starts
    from_node: str | None = None
    to_node: str | None = None


@dataclass(frozen=True, slots=True)
class Sensor:
    id: str
    kind: str
    gateway: str
    district: str
    x: float
    y: float
    segment: str | None = None
    interval_s: float = 30.0
    #: network zone (optional): the water DMA of a meter or pressure node, the substation of a
    #: power feeder
    zone: str | None = None

    @property
    def domain(self) -> str:
        return KIND_DOMAIN[self.kind]


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    kind: str
    district: str
    sensors: tuple[Sensor, ...]

    @property
    def domain(self) -> str:
        return KIND_DOMAIN[self.kind]


@dataclass(frozen=True)
class City:
    name: str
    districts: tuple[District, ...]
    segments: tuple[Segment, ...]
    gateways: tuple[Gateway, ...]
    source: str = "<memory>"
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def sensors(self) -> tuple[Sensor, ...]:
        return tuple(s for g in self.gateways for s in g.sensors)

    @cached_property
    def sensor_index(self) -> dict[str, Sensor]:
        return {s.id: s for s in self.sensors}

    @cached_property
    def gateway_index(self) -> dict[str, Gateway]:
        return {g.id: g for g in self.gateways}

    @cached_property
    def segment_index(self) -> dict[str, Segment]:
        return {s.id: s for s in self.segments}

    @cached_property
    def district_index(self) -> dict[str, District]:
        return {d.id: d for d in self.districts}

    @property
    def utc_offset_s(self) -> float:
        """Local time minus UTC, seconds (``utc_offset_h`` in the file; default 0)."""
        return float(self.extra.get("utc_offset_h", 0.0)) * 3600.0

    def lonlat(self, x_km: Any, y_km: Any) -> tuple[Any, Any]:
        """Local km grid -> (lon, lat) degrees, around the file's ``geo:`` origin.

        An equirectangular projection: exact enough for a city of a few tens of kilometres.
        """
        geo = self.extra.get("geo") or {"lon": 0.0, "lat": 0.0}
        lat0 = float(geo["lat"])
        lat = lat0 + np.asarray(y_km, dtype=np.float64) / 110.574
        lon = float(geo["lon"]) + np.asarray(x_km, dtype=np.float64) / (
            111.320 * np.cos(np.radians(lat0))
        )
        return lon, lat

    def sensor_table(self) -> dict[str, np.ndarray]:
        """Columns of the sensor dimension (for ClickHouse and vectorised lookups)."""
        s = self.sensors
        return {
            "sensor_id": np.array([x.id for x in s], dtype=object),
            "kind": np.array([x.kind for x in s], dtype=object),
            "domain": np.array([x.domain for x in s], dtype=object),
            "gateway": np.array([x.gateway for x in s], dtype=object),
            "district": np.array([x.district for x in s], dtype=object),
            "segment": np.array([x.segment or "" for x in s], dtype=object),
            "x_km": np.array([x.x for x in s], dtype=np.float64),
            "y_km": np.array([x.y for x in s], dtype=np.float64),
        }


class _Reader:
    """Typed access to a YAML mapping with error messages that name file and key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}={value!r}: {why}")

    def get(
        self, d: Any, key: str, path: str, typ: type | tuple[type, ...], default: Any = ...
    ) -> Any:
        if not isinstance(d, dict):
            raise self.fail(path, d, "expected a mapping")
        if key not in d:
            if default is ...:
                raise ConfigError(f"{self.source}: {path}.{key}: missing")
            return default
        value = d[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
            name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise self.fail(f"{path}.{key}", value, f"expected {name}")
        return value

    def points(self, value: Any, path: str) -> tuple[tuple[float, float], ...]:
        if not isinstance(value, list) or len(value) < 2:
            raise self.fail(path, value, "expected a list of [x, y] points")
        out = []
        for i, p in enumerate(value):
            if (
                not isinstance(p, list)
                or len(p) != 2
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)
            ):
                raise self.fail(f"{path}[{i}]", p, "expected [x, y] numbers")
            out.append((float(p[0]), float(p[1])))
        return tuple(out)


def load_city(path: str | Path | None = None, *, sensors: int | None = None) -> City:
    """Load and validate a city file (default: the packaged ``config/city.yaml``).

    A ``generate:`` block in the file adds a deterministic road grid and sensors (see
    :func:`generate_network`); ``sensors=N`` overrides its sensor count (scale the city up to
    100,000 sensors without another file).
    """
    from config.settings import DEFAULT_CITY

    p = Path(path) if path else DEFAULT_CITY
    try:
        doc = yaml.load(p.read_text(), Loader=_YamlLoader)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the city file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return parse_city(doc, source=str(p), sensors=sensors)


_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_city(doc: Any, *, source: str = "<memory>", sensors: int | None = None) -> City:
    r = _Reader(source)
    if not isinstance(doc, dict):
        raise r.fail("(top)", type(doc).__name__, "expected a mapping")
    name = r.get(doc, "name", "city", str)
    districts = []
    for i, d in enumerate(r.get(doc, "districts", "city", list)):
        p = f"districts[{i}]"
        districts.append(
            District(
                id=r.get(d, "id", p, str),
                name=r.get(d, "name", p, str),
                name_zh=r.get(d, "name_zh", p, str, default=r.get(d, "name", p, str)),
                polygon=r.points(r.get(d, "polygon", p, list), f"{p}.polygon"),
            )
        )
    if not districts:
        raise r.fail("districts", [], "a city needs at least one district")
    _unique(r, "districts", [d.id for d in districts])
    dids = {d.id for d in districts}
    for key in ("utc_offset_h",):
        if key in doc:
            off = r.get(doc, key, "city", float)
            if not -14.0 <= off <= 14.0:
                raise r.fail(key, off, "must be in [-14, 14]")
    if "geo" in doc:
        geo = r.get(doc, "geo", "city", dict)
        lon, lat = r.get(geo, "lon", "geo", float), r.get(geo, "lat", "geo", float)
        if not (-180.0 <= lon <= 180.0 and -85.0 <= lat <= 85.0):
            raise r.fail("geo", geo, "lon must be in [-180, 180] and lat in [-85, 85]")

    segments = []
    for i, s in enumerate(r.get(doc, "segments", "city", list, default=[])):
        p = f"segments[{i}]"
        seg = Segment(
            id=r.get(s, "id", p, str),
            district=r.get(s, "district", p, str),
            length_km=r.get(s, "length_km", p, float),
            lanes=r.get(s, "lanes", p, int),
            free_speed_kmh=r.get(s, "free_speed_kmh", p, float),
            capacity_vph=r.get(s, "capacity_vph", p, float),
            coords=r.points(r.get(s, "coords", p, list), f"{p}.coords"),
            from_node=r.get(s, "from", p, str, default=None),
            to_node=r.get(s, "to", p, str, default=None),
        )
        if seg.district not in dids:
            raise r.fail(f"{p}.district", seg.district, "unknown district")
        for key in ("length_km", "free_speed_kmh", "capacity_vph"):
            if getattr(seg, key) <= 0:
                raise r.fail(f"{p}.{key}", getattr(seg, key), "must be > 0")
        if seg.lanes < 1:
            raise r.fail(f"{p}.lanes", seg.lanes, "must be >= 1")
        segments.append(seg)
    sids_known = {s.id for s in segments}

    has_generate = "generate" in doc
    gateways = []
    for i, g in enumerate(
        r.get(doc, "gateways", "city", list, default=[] if has_generate else ...)
    ):
        p = f"gateways[{i}]"
        gid = r.get(g, "id", p, str)
        kind = r.get(g, "kind", p, str)
        if kind not in KIND_DOMAIN:
            raise r.fail(f"{p}.kind", kind, f"unknown kind (known: {', '.join(KIND_DOMAIN)})")
        district = r.get(g, "district", p, str)
        if district not in dids:
            raise r.fail(f"{p}.district", district, "unknown district")
        interval = r.get(g, "interval_s", p, float, default=30.0)
        if interval <= 0:
            raise r.fail(f"{p}.interval_s", interval, "must be > 0")
        sensors_ = []
        for j, s in enumerate(r.get(g, "sensors", p, list)):
            sp = f"{p}.sensors[{j}]"
            seg = r.get(s, "segment", sp, str, default=None)
            if seg is not None and seg not in sids_known:
                raise r.fail(f"{sp}.segment", seg, "unknown segment")
            sensors_.append(
                Sensor(
                    id=r.get(s, "id", sp, str),
                    kind=kind,
                    gateway=gid,
                    district=district,
                    x=r.get(s, "x", sp, float),
                    y=r.get(s, "y", sp, float),
                    segment=seg,
                    interval_s=interval,
                    zone=r.get(s, "zone", sp, str, default=None),
                )
            )
        if not sensors_:
            raise r.fail(f"{p}.sensors", [], "a gateway needs at least one sensor")
        gateways.append(Gateway(id=gid, kind=kind, district=district, sensors=tuple(sensors_)))
    if has_generate:
        spec = parse_generate(r, doc["generate"], sensors=sensors)
        gen_segments, gen_gateways = generate_network(spec, tuple(districts))
        segments.extend(gen_segments)
        gateways.extend(gen_gateways)
    elif sensors is not None:
        raise ConfigError(
            f"{source}: sensors={sensors!r}: the city has no generate: block to scale"
        )
    if not gateways:
        raise r.fail("gateways", [], "a city needs at least one gateway")
    _unique(r, "segments", [s.id for s in segments])
    _unique(r, "gateways", [g.id for g in gateways])
    _unique(r, "sensors", [s.id for g in gateways for s in g.sensors])
    extra = {k: v for k, v in doc.items() if k not in {"name", "districts", "segments", "gateways"}}
    return City(name, tuple(districts), tuple(segments), tuple(gateways), source, extra)


def _unique(r: _Reader, what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if x in seen:
            raise r.fail(f"{what}[{i}].id", x, "duplicate id")
        seen.add(x)


# --- generated cities ------------------------------------------------------------------------

#: kind -> id prefix of generated sensors and gateways (``TR-S000001``, ``TR-G0001``)
KIND_PREFIX: dict[str, str] = {
    "loop": "TR",
    "air": "AQ",
    "noise": "NZ",
    "weather": "WX",
    "water_flow": "WF",
    "water_pressure": "WP",
    "power": "PW",
}

_DEFAULT_MIX = {
    "loop": 0.60,
    "noise": 0.09,
    "air": 0.05,
    "weather": 0.01,
    "water_flow": 0.015,
    "water_pressure": 0.125,
    "power": 0.11,
}
_DEFAULT_GATEWAY_SIZE = {
    "loop": 24,
    "noise": 20,
    "air": 12,
    "weather": 6,
    "water_flow": 8,
    "water_pressure": 25,
    "power": 20,
}
_DEFAULT_INTERVALS = {
    "loop": 30.0,
    "noise": 60.0,
    "air": 60.0,
    "weather": 60.0,
    "water_flow": 60.0,
    "water_pressure": 60.0,
    "power": 15.0,
}
MAX_GENERATED_SENSORS = 100_000


@dataclass(frozen=True, slots=True)
class GenerateSpec:
    """The ``generate:`` block of a city file: how many sensors of which kinds, and how."""

    seed: int
    sensors: int
    mix: dict[str, float]
    gateway_size: dict[str, int]
    intervals: dict[str, float]
    loops_per_segment: float = 3.0


def parse_generate(r: _Reader, block: Any, *, sensors: int | None = None) -> GenerateSpec:
    if not isinstance(block, dict):
        raise r.fail("generate", block, "expected a mapping")
    known = {"seed", "sensors", "mix", "gateway_size", "intervals", "loops_per_segment"}
    for key in block:
        if key not in known:
            raise r.fail(
                f"generate.{key}", block[key], f"unknown key (known: {', '.join(sorted(known))})"
            )
    seed = r.get(block, "seed", "generate", int, default=0)
    n = sensors if sensors is not None else r.get(block, "sensors", "generate", int, default=5000)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_GENERATED_SENSORS:
        raise r.fail("generate.sensors", n, f"must be an integer in [1, {MAX_GENERATED_SENSORS}]")

    def kind_map(key: str, typ: type, default: dict[str, Any]) -> dict[str, Any]:
        raw = r.get(block, key, "generate", dict, default={})
        out = dict(default)
        for kind in raw:
            if kind not in KIND_DOMAIN:
                raise r.fail(
                    f"generate.{key}.{kind}",
                    raw[kind],
                    f"unknown kind (known: {', '.join(KIND_DOMAIN)})",
                )
            value = r.get(raw, kind, f"generate.{key}", typ)
            if value < 0 or (key != "mix" and value <= 0):
                raise r.fail(
                    f"generate.{key}.{kind}",
                    value,
                    "must be > 0" if key != "mix" else "must be >= 0",
                )
            out[kind] = value
        return out

    mix = kind_map("mix", float, _DEFAULT_MIX)
    if sum(mix.values()) <= 0:
        raise r.fail("generate.mix", mix, "needs at least one kind with a share > 0")
    sizes = kind_map("gateway_size", int, _DEFAULT_GATEWAY_SIZE)
    intervals = kind_map("intervals", float, _DEFAULT_INTERVALS)
    lps = r.get(block, "loops_per_segment", "generate", float, default=3.0)
    if not 0.1 <= lps <= 20:
        raise r.fail("generate.loops_per_segment", lps, "must be in [0.1, 20]")
    return GenerateSpec(seed, n, mix, sizes, intervals, lps)


def _shares(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    out = np.floor(exact).astype(np.int64)
    rest = total - int(out.sum())
    if rest > 0:
        order = np.argsort(-(exact - out), kind="stable")
        out[order[:rest]] += 1
    return out


def _in_polygon(x: np.ndarray, y: np.ndarray, poly: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Vectorised even-odd rule."""
    inside = np.zeros(x.shape, dtype=bool)
    pts = list(poly)
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xint)
    return inside


def _district_of(x: np.ndarray, y: np.ndarray, districts: tuple[District, ...]) -> np.ndarray:
    """Index of the district containing each point (the nearest centroid when none does)."""
    out = np.full(x.shape, -1, dtype=np.int64)
    for i, d in enumerate(districts):
        out[(out < 0) & _in_polygon(x, y, d.polygon)] = i
    if (out < 0).any():
        cx = np.array([np.mean([p[0] for p in d.polygon]) for d in districts])
        cy = np.array([np.mean([p[1] for p in d.polygon]) for d in districts])
        miss = out < 0
        dist = (x[miss, None] - cx) ** 2 + (y[miss, None] - cy) ** 2
        out[miss] = np.argmin(dist, axis=1)
    return out


def generate_network(
    spec: GenerateSpec, districts: tuple[District, ...]
) -> tuple[list[Segment], list[Gateway]]:
    """A deterministic road grid over the districts and ``spec.sensors`` sensors on it.

    Roads: a jittered grid of two-way streets (every 4th line an arterial: 3 lanes, 60 km/h;
    every 2nd a 2-lane collector at 50 km/h; the rest 1-lane local streets at 40 km/h), one
    directed segment per block and direction, each knowing its graph nodes. Loop detectors sit
    along segments; point sensors are spread over districts in proportion to their area; water
    pressure nodes and DMA inflow meters share a DMA ``zone``; feeders belong to a substation.
    """
    rng = np.random.default_rng([spec.seed, 0xC17])
    kinds = list(spec.mix)
    counts = dict(
        zip(
            kinds,
            _shares(spec.sensors, np.array([spec.mix[k] for k in kinds])).tolist(),
            strict=True,
        )
    )

    allx = np.array([p[0] for d in districts for p in d.polygon])
    ally = np.array([p[1] for d in districts for p in d.polygon])
    x0, x1, y0, y1 = allx.min(), allx.max(), ally.min(), ally.max()
    width, height = max(x1 - x0, 0.5), max(y1 - y0, 0.5)

    # --- road grid ---------------------------------------------------------------------------
    n_loop = counts.get("loop", 0)
    n_seg_target = max(4, int(np.ceil(n_loop / spec.loops_per_segment)))
    aspect = width / height
    ny = max(2, int(np.ceil(np.sqrt(n_seg_target / (4 * aspect)))) + 1)
    nx = max(2, int(np.ceil(ny * aspect)))
    sx, sy = width / (nx - 1), height / (ny - 1)
    gx = x0 + np.arange(nx)[:, None] * sx + rng.uniform(-0.12, 0.12, (nx, ny)) * sx
    gy = y0 + np.arange(ny)[None, :] * sy + rng.uniform(-0.12, 0.12, (nx, ny)) * sy
    gx[0, :], gx[-1, :] = x0 + 0.02 * sx, x1 - 0.02 * sx
    gy[:, 0], gy[:, -1] = y0 + 0.02 * sy, y1 - 0.02 * sy

    edges: list[tuple[int, int, int, int, int]] = []  # (i, j, i2, j2, line index)
    for j in range(ny):
        for i in range(nx - 1):
            edges.append((i, j, i + 1, j, j))
            edges.append((i + 1, j, i, j, j))
    for i in range(nx):
        for j in range(ny - 1):
            edges.append((i, j, i, j + 1, i))
            edges.append((i, j + 1, i, j, i))
    e = np.array(edges, dtype=np.int64)
    ax, ay = gx[e[:, 0], e[:, 1]], gy[e[:, 0], e[:, 1]]
    bx, by = gx[e[:, 2], e[:, 3]], gy[e[:, 2], e[:, 3]]
    length = np.hypot(bx - ax, by - ay)
    # drive on the right: offset each direction a little to its right
    off = 0.012
    nxr, nyr = (by - ay) / length * off, -(bx - ax) / length * off
    ax, ay, bx, by = ax + nxr, ay + nyr, bx + nxr, by + nyr
    seg_district = _district_of((ax + bx) / 2, (ay + by) / 2, districts)
    line = e[:, 4]
    arterial = line % 4 == 0
    collector = ~arterial & (line % 2 == 0)
    lanes = np.where(arterial, 3, np.where(collector, 2, 1))
    free = np.where(arterial, 60.0, np.where(collector, 50.0, 40.0))
    per_lane = np.where(arterial, 1900.0, np.where(collector, 1800.0, 1700.0))
    segments = [
        Segment(
            id=f"SEG{k + 1:05d}",
            district=districts[int(seg_district[k])].id,
            length_km=round(float(length[k]), 4),
            lanes=int(lanes[k]),
            free_speed_kmh=float(free[k]),
            capacity_vph=float(lanes[k] * per_lane[k]),
            coords=(
                (round(float(ax[k]), 4), round(float(ay[k]), 4)),
                (round(float(bx[k]), 4), round(float(by[k]), 4)),
            ),
            from_node=f"N{e[k, 0]:03d}_{e[k, 1]:03d}",
            to_node=f"N{e[k, 2]:03d}_{e[k, 3]:03d}",
        )
        for k in range(len(edges))
    ]

    gateways: list[Gateway] = []
    gw_counter: dict[str, int] = {}
    s_counter: dict[str, int] = {}

    def add_gateways(
        kind: str,
        district: int,
        xs: np.ndarray,
        ys: np.ndarray,
        groups: list[np.ndarray],
        seg: np.ndarray | None = None,
        zones: list[str | None] | None = None,
        member_zones: np.ndarray | None = None,
    ) -> None:
        prefix = KIND_PREFIX[kind]
        interval = float(spec.intervals[kind])
        for gi, idx in enumerate(groups):
            if len(idx) == 0:
                continue
            gw_counter[kind] = gw_counter.get(kind, 0) + 1
            gid = f"{prefix}-G{gw_counter[kind]:04d}"
            zone = zones[gi] if zones is not None else None
            members = []
            for k in idx.tolist():
                s_counter[kind] = s_counter.get(kind, 0) + 1
                members.append(
                    Sensor(
                        id=f"{prefix}-S{s_counter[kind]:06d}",
                        kind=kind,
                        gateway=gid,
                        district=districts[district].id,
                        x=round(float(xs[k]), 4),
                        y=round(float(ys[k]), 4),
                        segment=segments[int(seg[k])].id if seg is not None else None,
                        interval_s=interval,
                        zone=(
                            str(member_zones[k])
                            if member_zones is not None
                            else (zone if zone is not None else (gid if kind == "power" else None))
                        ),
                    )
                )
            gateways.append(Gateway(gid, kind, districts[district].id, tuple(members)))

    def chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
        n_groups = max(1, int(np.ceil(len(order) / size)))
        return [a for a in np.array_split(order, n_groups) if len(a)]

    # --- loop detectors along segments --------------------------------------------------------
    if n_loop:
        n_seg = len(segments)
        owner = (
            (np.arange(n_loop) * n_seg) // n_loop if n_loop <= n_seg else np.arange(n_loop) % n_seg
        )
        owner = np.sort(owner)
        first = np.searchsorted(owner, owner, side="left")
        per = np.bincount(owner, minlength=n_seg)
        frac = (np.arange(n_loop) - first + 0.5) / per[owner]
        lx = ax[owner] + (bx[owner] - ax[owner]) * frac
        ly = ay[owner] + (by[owner] - ay[owner]) * frac
        ldist = seg_district[owner]
        for d in range(len(districts)):
            # group by a coarse spatial cell so that a junction controller serves nearby loops
            idx = np.flatnonzero(ldist == d)
            cell = (np.floor(ly[idx] / 1.0) * 1000 + np.floor(lx[idx] / 1.0)).astype(np.int64)
            order = idx[np.lexsort((owner[idx], cell))]
            add_gateways("loop", d, lx, ly, chunks(order, spec.gateway_size["loop"]), seg=owner)

    # --- point sensors -----------------------------------------------------------------------
    areas = np.array([_area(d.polygon) for d in districts])

    def scatter(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        poly = districts[d].polygon
        px, py = np.array([p[0] for p in poly]), np.array([p[1] for p in poly])
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        got = 0
        while got < n:
            cx = rng.uniform(px.min(), px.max(), 4 * (n - got) + 8)
            cy = rng.uniform(py.min(), py.max(), 4 * (n - got) + 8)
            ok = _in_polygon(cx, cy, poly)
            xs.append(cx[ok])
            ys.append(cy[ok])
            got += int(ok.sum())
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]

    def spatial_order(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        cell = np.floor(ys / 0.75) * 1000 + np.where(np.floor(ys / 0.75) % 2 == 0, xs, -xs)
        return np.argsort(cell, kind="stable")

    for kind in ("air", "noise", "weather", "power"):
        n = counts.get(kind, 0)
        if not n:
            continue
        for d, nd in enumerate(_shares(n, areas).tolist()):
            if nd:
                xs, ys = scatter(nd, d)
                add_gateways(
                    kind, d, xs, ys, chunks(spatial_order(xs, ys), spec.gateway_size[kind])
                )

    # water: DMAs = groups of pressure nodes; inflow meters are assigned to DMAs
    n_wp, n_wf = counts.get("water_pressure", 0), counts.get("water_flow", 0)
    wp_d = _shares(n_wp, areas) if n_wp else np.zeros(len(districts), np.int64)
    wf_d = _shares(n_wf, areas) if n_wf else np.zeros(len(districts), np.int64)
    for d in range(len(districts)):
        npd, nfd = int(wp_d[d]), int(wf_d[d])
        if not npd and not nfd:
            continue
        n_dma = max(1, round(max(npd, 1) / spec.gateway_size["water_pressure"]))
        if nfd:
            n_dma = min(n_dma, nfd)
        dma_ids = [f"DMA-{districts[d].id}-{k + 1:02d}" for k in range(n_dma)]
        centres = []
        if npd:
            xs, ys = scatter(npd, d)
            groups = [a for a in np.array_split(np.argsort(xs, kind="stable"), n_dma)]
            zones: list[str | None] = list(dma_ids[: len(groups)])
            add_gateways("water_pressure", d, xs, ys, groups, zones=zones)
            centres = [
                (float(xs[g].mean()), float(ys[g].mean())) if len(g) else (0.0, 0.0) for g in groups
            ]
        if nfd:
            owner_dma = np.arange(nfd) % n_dma
            if centres:
                fx = np.array([centres[k][0] for k in owner_dma]) + rng.uniform(-0.2, 0.2, nfd)
                fy = np.array([centres[k][1] for k in owner_dma]) + rng.uniform(-0.2, 0.2, nfd)
            else:
                fx, fy = scatter(nfd, d)
            member_zones = np.array([dma_ids[k] for k in owner_dma], dtype=object)
            order = np.argsort(owner_dma, kind="stable")
            add_gateways(
                "water_flow",
                d,
                fx,
                fy,
                chunks(order, spec.gateway_size["water_flow"]),
                member_zones=member_zones,
            )
    return segments, gateways


def _area(poly: tuple[tuple[float, float], ...]) -> float:
    xs = np.array([p[0] for p in poly])
    ys = np.array([p[1] for p in poly])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2.0)
