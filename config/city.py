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

    def get(self, d: Any, key: str, path: str, typ: type | tuple[type, ...], default: Any = ...) -> Any:
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


def load_city(path: str | Path | None = None) -> City:
    """Load and validate a city file (default: the packaged ``config/city.yaml``)."""
    from config.settings import DEFAULT_CITY

    p = Path(path) if path else DEFAULT_CITY
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the city file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return parse_city(doc, source=str(p))


def parse_city(doc: Any, *, source: str = "<memory>") -> City:
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
        )
        if seg.district not in dids:
            raise r.fail(f"{p}.district", seg.district, "unknown district")
        for key in ("length_km", "free_speed_kmh", "capacity_vph"):
            if getattr(seg, key) <= 0:
                raise r.fail(f"{p}.{key}", getattr(seg, key), "must be > 0")
        if seg.lanes < 1:
            raise r.fail(f"{p}.lanes", seg.lanes, "must be >= 1")
        segments.append(seg)
    _unique(r, "segments", [s.id for s in segments])
    sids_known = {s.id for s in segments}

    gateways = []
    for i, g in enumerate(r.get(doc, "gateways", "city", list)):
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
        sensors = []
        for j, s in enumerate(r.get(g, "sensors", p, list)):
            sp = f"{p}.sensors[{j}]"
            seg = r.get(s, "segment", sp, str, default=None)
            if seg is not None and seg not in sids_known:
                raise r.fail(f"{sp}.segment", seg, "unknown segment")
            sensors.append(
                Sensor(
                    id=r.get(s, "id", sp, str),
                    kind=kind,
                    gateway=gid,
                    district=district,
                    x=r.get(s, "x", sp, float),
                    y=r.get(s, "y", sp, float),
                    segment=seg,
                    interval_s=interval,
                )
            )
        if not sensors:
            raise r.fail(f"{p}.sensors", [], "a gateway needs at least one sensor")
        gateways.append(Gateway(id=gid, kind=kind, district=district, sensors=tuple(sensors)))
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
