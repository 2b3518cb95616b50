"""The simulator: a city, a scenario and a seed in; frames (and ground truth) out.

>>> from config.city import load_city
>>> from sensors_sim.scenario import load_scenario
>>> sim = Simulator(load_city(), load_scenario("normal_day"), seed=1, duration=60)
>>> frames = next(iter(sim.steps()))
>>> sorted({f.domain for f in frames})
['environment', 'traffic', 'utility']

Generation is vectorised per *cohort* (all sensors of one kind and interval) and per *chunk*
(ten simulated minutes): each chunk draws its noise from its own random stream keyed by
(seed, cohort, chunk index), so the output does not depend on how far a run goes or how it is
consumed, and two scenarios with the same seed differ only where an incident or fault acts.
Frames are then cut from the chunk arrays by column slices (one frame per gateway and reading
time) without copying.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator

import numpy as np

from config.city import City
from config.domains import KINDS, METRIC_INFO
from models.frame import Frame
from sensors_sim.errors import SimError
from sensors_sim.faults import DeliveryFault, ValueFault, build_faults
from sensors_sim.generators import GENERATORS, Cohort, Generator
from sensors_sim.incidents import Incident, build_incidents
from sensors_sim.labels import Label
from sensors_sim.scenario import Scenario
from sensors_sim.timeutil import parse_local_iso
from sensors_sim.world import STREAM_NOISE, World

DEFAULT_START = "2026-01-05T00:00:00"  # a Monday, local time of the city
CHUNK_TARGET_S = 600

#: decimals kept per metric: the sensors' resolution, and compact JSON
DECIMALS: dict[str, int] = {
    "flow_vph": 1,
    "speed_kmh": 1,
    "occupancy_pct": 2,
    "pm25": 2,
    "pm10": 2,
    "no2": 2,
    "o3": 2,
    "so2": 2,
    "co": 3,
    "noise_dba": 2,
    "temp_c": 2,
    "humidity_pct": 1,
    "wind_ms": 2,
    "wind_dir_deg": 1,
    "rain_mmh": 2,
    "inflow_m3h": 2,
    "pressure_bar": 3,
    "load_mw": 3,
    "voltage_kv": 3,
}
_KIND_ORDER = [k for d in KINDS.values() for k in d]


class Simulator:
    """Deterministic readings of ``city`` under ``scenario`` for ``seed``.

    ``start`` is the first reading time (epoch seconds; default: the scenario's ``start``, else
    Monday 2026-01-05 00:00 local). ``duration`` (seconds; default the scenario's, ``inf`` for an
    endless run) bounds event time: readings have ``start <= ts < start + duration``.
    """

    def __init__(
        self,
        city: City,
        scenario: Scenario,
        *,
        seed: int = 1,
        start: float | None = None,
        duration: float | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if start is None:
            start = parse_local_iso(scenario.start or DEFAULT_START, city.utc_offset_s)
        if not (
            isinstance(start, (int, float)) and math.isfinite(start) and 0 <= start < 4_102_444_800
        ):
            raise ValueError(f"start must be epoch seconds in 1970..2100, got {start!r}")
        duration = scenario.duration_s if duration is None else float(duration)
        if not duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
        self.city = city
        self.scenario = scenario
        self.seed = seed
        self.start = float(start)
        self.duration = duration
        self.end = self.start + duration
        self.world = World(city, scenario, seed=seed, start=self.start)
        self.cohorts = self._cohorts()
        intervals = sorted({int(c.interval) for c in self.cohorts})
        self.tick_s = math.gcd(*intervals)
        lcm = math.lcm(*intervals)
        self.chunk_s = lcm * max(1, math.ceil(CHUNK_TARGET_S / lcm))
        self.incidents: list[Incident] = build_incidents(self.world)
        self._value_faults: dict[str, list[ValueFault]]
        self._delivery: dict[str, list[DeliveryFault]]
        self._value_faults, self._delivery, fault_labels = build_faults(self.world, self.cohorts)
        labels = [lab for inc in self.incidents for lab in inc.labels] + fault_labels
        self.labels: list[Label] = sorted(labels, key=lambda lab: (lab.start, lab.id))
        self.generators: dict[str, Generator] = {
            c.key: GENERATORS[c.kind](self.world, c, self.incidents) for c in self.cohorts
        }

    # --- layout ------------------------------------------------------------------------------
    def _cohorts(self) -> list[Cohort]:
        groups: dict[tuple[str, float], list[int]] = {}
        for gi, g in enumerate(self.city.gateways):
            iv = g.sensors[0].interval_s
            for s in g.sensors:
                if s.interval_s != iv:
                    raise SimError(f"gateway {g.id}: sensors with different intervals")
            if iv != int(iv) or iv < 1:
                raise SimError(
                    f"gateway {g.id}: interval_s={iv!r} must be a whole number of seconds >= 1"
                )
            groups.setdefault((g.kind, iv), []).append(gi)
        pos = self.world.sensor_pos
        out = []
        for kind, iv in sorted(groups, key=lambda k: (_KIND_ORDER.index(k[0]), k[1])):
            gidx: list[int] = []
            gws = []
            for gi in groups[(kind, iv)]:
                g = self.city.gateways[gi]
                lo = len(gidx)
                gidx.extend(pos[s.id] for s in g.sensors)
                gws.append((g.id, lo, len(gidx)))
            domain = self.city.gateways[groups[(kind, iv)][0]].domain
            idx = np.array(gidx, dtype=np.int64)
            out.append(
                Cohort(
                    key=f"{kind}/{int(iv)}",
                    kind=kind,
                    domain=domain,
                    interval=float(iv),
                    metrics=KINDS[domain][kind],
                    gidx=idx,
                    ids=np.array([self.city.sensors[i].id for i in gidx], dtype=object),
                    gateways=tuple(gws),
                )
            )
        return out

    @property
    def sensors(self) -> int:
        return len(self.world.sensor_kind)

    def readings_per_second_of_sim(self) -> float:
        return sum(c.n / c.interval for c in self.cohorts)

    # --- generation ----------------------------------------------------------------------------
    def chunk(
        self, index: int
    ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]]:
        """Readings of chunk ``index``: cohort key -> (times (T,), {metric: (T, n)}, present).

        ``present`` is ``None`` or a (T, n) mask of readings that exist (dropouts are False).
        Faults are applied; frames are cut from these arrays.
        """
        t0 = self.start + index * self.chunk_s
        out = {}
        for co in self.cohorts:
            rows = int(self.chunk_s // co.interval)
            t = t0 + np.arange(rows, dtype=np.float64) * co.interval
            rng = np.random.default_rng(
                [STREAM_NOISE, self.seed, zlib.crc32(co.key.encode()), index]
            )
            arrays = self.generators[co.key].generate(t, rng)
            for m, a in arrays.items():
                _, lo, hi = METRIC_INFO[m]
                np.clip(a, lo, hi, out=a)
            present: np.ndarray | None = None
            faults = self._value_faults.get(co.key)
            if faults:
                mask = np.ones((rows, co.n), dtype=bool)
                for f in faults:
                    f.apply(t, arrays, mask, co.interval)
                present = None if mask.all() else mask
            for m, a in arrays.items():
                np.round(a, DECIMALS.get(m, 3), out=a)
            out[co.key] = (t, arrays, present)
        return out

    def ticks(self) -> Iterator[tuple[float, list[Frame]]]:
        """(tick time, frames delivered at that tick), in event-time order of the ticks.

        A tick's list holds the readings taken at that time, one frame per gateway, followed by
        frames a delivery fault held back from earlier ticks (late, out of order).
        """
        pending: dict[int, list[Frame]] = {}
        tick = 0
        per_chunk = int(self.chunk_s // self.tick_s)
        c = 0
        while self.start + c * self.chunk_s < self.end:
            data = self.chunk(c)
            chunk_t0 = self.start + c * self.chunk_s
            for i in range(per_chunk):
                t = chunk_t0 + i * self.tick_s
                if t >= self.end:
                    break
                frames: list[Frame] = []
                off = i * self.tick_s
                for co in self.cohorts:
                    if off % co.interval:
                        continue
                    r = int(off // co.interval)
                    self._emit(co, data[co.key], r, c, t, tick, frames, pending)
                frames.extend(pending.pop(tick, ()))
                yield t, frames
                tick += 1
            c += 1
        while pending:
            yield self.start + tick * self.tick_s, pending.pop(tick, [])
            tick += 1

    def steps(self) -> Iterator[list[Frame]]:
        """One list of frames per simulation tick (see :meth:`ticks`)."""
        for _, frames in self.ticks():
            yield frames

    def _emit(
        self,
        co: Cohort,
        data: tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None],
        r: int,
        chunk: int,
        t: float,
        tick: int,
        frames: list[Frame],
        pending: dict[int, list[Frame]],
    ) -> None:
        _, arrays, present = data
        n = co.n
        rows_per_chunk = int(self.chunk_s // co.interval)
        slot = int(self.start // co.interval) + chunk * rows_per_chunk + r
        ts = np.full(n, t)
        seq = np.full(n, slot, dtype=np.int64)
        row = {m: a[r] for m, a in arrays.items()}
        keep = present[r] if present is not None else None
        ids, domain, delivery = co.ids, co.domain, self._delivery
        for gid, lo, hi in co.gateways:
            if keep is not None and not keep[lo:hi].all():
                sel = np.flatnonzero(keep[lo:hi]) + lo
                if not len(sel):
                    continue
                frame = Frame(
                    gid, domain, ts[sel], ids[sel], seq[sel], {m: v[sel] for m, v in row.items()}
                )
            else:
                frame = Frame(
                    gid,
                    domain,
                    ts[lo:hi],
                    ids[lo:hi],
                    seq[lo:hi],
                    {m: v[lo:hi] for m, v in row.items()},
                )
            faults = delivery.get(gid)
            if faults is None:
                frames.append(frame)
                continue
            held = False
            for f in faults:
                if not f.start <= t <= f.end:
                    continue
                if f.type == "duplicate":
                    frames.append(frame)
                elif f.type == "late":
                    pending.setdefault(
                        tick + max(1, math.ceil(f.delay_s / self.tick_s)), []
                    ).append(frame)
                    held = True
                elif f.type == "out_of_order" and slot % 2 == 0:
                    pending.setdefault(tick + int(co.interval // self.tick_s), []).append(frame)
                    held = True
                if held:
                    break
            if not held:
                frames.append(frame)
