"""The static world a simulation runs in: the city as arrays, per-sensor traits and the weather.

Everything here is computed once per :class:`~sensors_sim.engine.Simulator` and is a pure
function of (city, scenario, seed), so chunks of readings can be generated in any order.
Per-sensor traits (a feeder's rating, a DMA's size, a detector's bias) come from a hash of the
sensor id: they are properties of the city, the same for every seed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from config.city import City
from sensors_sim import profiles
from sensors_sim.scenario import Scenario
from sensors_sim.timeutil import DAY, local_hour, local_midnight, local_weekday

# keys of independent random streams (the first word of every SeedSequence)
STREAM_NOISE = 1
STREAM_WEATHER = 2
STREAM_RAIN = 3
STREAM_INCIDENT = 4
STREAM_FAULT = 5


def trait(ids: list[str] | np.ndarray, salt: str) -> np.ndarray:
    """A stable uniform [0, 1) number per id (crc32 of salt + id): a property of the city."""
    pre = salt.encode() + b"/"
    return (
        np.fromiter(
            (zlib.crc32(pre + str(i).encode()) for i in ids), dtype=np.float64, count=len(ids)
        )
        / 2.0**32
    )


def envelope(t: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """Piecewise-linear envelope through ``(time, value)`` points, exactly 0 outside them."""
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    out = np.interp(t, xs, ys, left=0.0, right=0.0)
    out[(t < xs[0]) | (t > xs[-1])] = 0.0
    return out


def trapezoid(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """0 before ``start``, ramps to 1, plateau, ramps down to 0 at ``end`` (compact support)."""
    ramp = min(ramp, (end - start) / 2.0)
    return envelope(t, [(start, 0.0), (start + ramp, 1.0), (end - ramp, 1.0), (end, 0.0)])


@dataclass(frozen=True)
class Shower:
    start: float
    end: float
    mmh: float


class World:
    """The city as numpy arrays plus the scenario's weather, for one seed."""

    def __init__(self, city: City, scenario: Scenario, *, seed: int, start: float) -> None:
        self.city = city
        self.scenario = scenario
        self.seed = seed
        self.start = start
        self.utc = city.utc_offset_s
        self.day0 = local_midnight(start, self.utc)

        self.district_ids = [d.id for d in city.districts]
        self.district_pos = {d: i for i, d in enumerate(self.district_ids)}
        cx = np.array(
            [np.mean([p[0] for p in d.polygon[:-1] or d.polygon]) for d in city.districts]
        )
        cy = np.array(
            [np.mean([p[1] for p in d.polygon[:-1] or d.polygon]) for d in city.districts]
        )
        self.district_xy = np.stack([cx, cy], axis=1)
        centre = self.district_xy.mean(axis=0)
        dist = np.hypot(cx - centre[0], cy - centre[1])
        # urban heat island: the centre is up to ~1.2 °C warmer
        self.uhi = 1.2 * (1.0 - dist / max(float(dist.max()), 1e-9))

        # --- segments ---------------------------------------------------------------------------
        segs = city.segments
        self.seg_pos = {s.id: i for i, s in enumerate(segs)}
        n = len(segs)
        self.seg_len = np.array([s.length_km for s in segs], dtype=np.float64)
        self.seg_lanes = np.array([s.lanes for s in segs], dtype=np.float64)
        self.seg_free = np.array([s.free_speed_kmh for s in segs], dtype=np.float64)
        self.seg_cap = np.array([s.capacity_vph for s in segs], dtype=np.float64)
        self.seg_district = np.array([self.district_pos[s.district] for s in segs], dtype=np.int64)
        a = np.array([s.coords[0] for s in segs], dtype=np.float64).reshape(n, 2)
        b = np.array([s.coords[-1] for s in segs], dtype=np.float64).reshape(n, 2)
        self.seg_a, self.seg_b = a, b
        self.seg_mid = (a + b) / 2.0
        d = b - a
        self.seg_dir = d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
        to_centre = centre[None, :] - self.seg_mid
        self.seg_inbound = (self.seg_dir * to_centre).sum(axis=1) > 0
        # planned peak volume/capacity: arterials run fuller; always below capacity on a normal
        # day so that congestion means an incident
        base_vc = np.where(self.seg_lanes >= 3, 0.78, np.where(self.seg_lanes >= 2, 0.70, 0.58))
        ids = [s.id for s in segs]
        self.seg_vc = base_vc * (0.88 + 0.2 * trait(ids, "vc"))
        self.seg_pred = self._predecessors()

        # --- sensors ----------------------------------------------------------------------------
        sensors = city.sensors
        self.sensor_pos = {s.id: i for i, s in enumerate(sensors)}
        self.sensor_xy = np.array([(s.x, s.y) for s in sensors], dtype=np.float64).reshape(-1, 2)
        self.sensor_district = np.array(
            [self.district_pos[s.district] for s in sensors], dtype=np.int64
        )
        self.sensor_segment = np.array(
            [self.seg_pos.get(s.segment or "", -1) for s in sensors],
            dtype=np.int64,
        )
        self.sensor_kind = np.array([s.kind for s in sensors], dtype=object)
        self.sensor_interval = np.array([s.interval_s for s in sensors], dtype=np.float64)
        self.sensor_zone = np.array([s.zone or "" for s in sensors], dtype=object)
        self.zone_district = {s.zone: s.district for s in sensors if s.zone}
        # where along its segment a loop sits (0 = start, 1 = end)
        self.sensor_frac = np.full(len(sensors), 0.5)
        on = np.flatnonzero(self.sensor_segment >= 0)
        if len(on):
            sg = self.sensor_segment[on]
            rel = self.sensor_xy[on] - a[sg]
            self.sensor_frac[on] = np.clip(
                (rel * self.seg_dir[sg]).sum(axis=1) / np.maximum(self.seg_len[sg], 1e-9), 0.0, 1.0
            )
        # nearest road node for point sensors: the segments within 0.45 km give local traffic
        self._local_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        # --- weather ---------------------------------------------------------------------------
        wrng = np.random.default_rng([STREAM_WEATHER, seed])
        self.w_phase = wrng.uniform(0, 2 * np.pi, 4)

    # --- roads ----------------------------------------------------------------------------------
    def _predecessors(self) -> np.ndarray:
        """The straight-ahead upstream segment of each segment (-1: none)."""
        segs = self.city.segments
        pred = np.full(len(segs), -1, dtype=np.int64)
        if not segs:
            return pred
        by_end: dict[str, list[int]] = {}
        if all(s.to_node for s in segs):
            for i, s in enumerate(segs):
                by_end.setdefault(str(s.to_node), []).append(i)
            for i, s in enumerate(segs):
                best, best_dot = -1, 0.7
                for j in by_end.get(str(s.from_node), []):
                    if segs[j].from_node == s.to_node:
                        continue  # the opposite direction
                    dot = float(self.seg_dir[i] @ self.seg_dir[j])
                    if dot > best_dot:
                        best, best_dot = j, dot
                pred[i] = best
        else:  # geometry: a segment ending within 60 m of our start, heading the same way
            for i in range(len(segs)):
                gap = np.hypot(*(self.seg_b - self.seg_a[i]).T)
                cand = np.flatnonzero((gap < 0.06) & (self.seg_dir @ self.seg_dir[i] > 0.7))
                cand = cand[cand != i]
                if len(cand):
                    pred[i] = int(cand[np.argmin(gap[cand])])
        return pred

    def upstream_chain(self, seg: int, max_km: float = 20.0) -> list[int]:
        chain, total, seen = [seg], 0.0, {seg}
        while total < max_km:
            p = int(self.seg_pred[chain[-1]])
            if p < 0 or p in seen:
                break
            chain.append(p)
            seen.add(p)
            total += float(self.seg_len[p])
        return chain

    def local_segments(
        self, key: str, sensor_idx: np.ndarray, radius_km: float = 0.45
    ) -> tuple[np.ndarray, np.ndarray]:
        """For point sensors: CSR (offsets, segment indices) of the segments within radius."""
        if key in self._local_cache:
            return self._local_cache[key]
        mids = self.seg_mid
        cell = radius_km
        keys = np.floor(mids / cell).astype(np.int64)
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, (kx, ky) in enumerate(keys.tolist()):
            buckets.setdefault((kx, ky), []).append(i)
        offsets = [0]
        members: list[int] = []
        for sx, sy in self.sensor_xy[sensor_idx].tolist():
            kx, ky = int(np.floor(sx / cell)), int(np.floor(sy / cell))
            near = []
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    for j in buckets.get((kx + dx, ky + dy), ()):
                        if (mids[j, 0] - sx) ** 2 + (mids[j, 1] - sy) ** 2 <= radius_km**2:
                            near.append(j)
            if not near and len(mids):
                near = [int(np.argmin((mids[:, 0] - sx) ** 2 + (mids[:, 1] - sy) ** 2))]
            members.extend(near)
            offsets.append(len(members))
        out = (np.array(offsets, dtype=np.int64), np.array(members, dtype=np.int64))
        self._local_cache[key] = out
        return out

    # --- time -----------------------------------------------------------------------------------
    def hour(self, t: np.ndarray) -> np.ndarray:
        return local_hour(t, self.utc)

    def weekday(self, t: np.ndarray) -> np.ndarray:
        return local_weekday(t, self.utc)

    def demand(self, t: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """Undisturbed traffic demand (veh/h), shape (len(t), len(seg))."""
        h, wd = self.hour(t), self.weekday(t)
        p_in = profiles.traffic(h, wd, inbound=True)
        p_out = profiles.traffic(h, wd, inbound=False)
        shape = np.where(self.seg_inbound[seg][None, :], p_in[:, None], p_out[:, None])
        rain = self.rain(t)
        scale = self.scenario.demand * (1.0 - 0.04 * np.minimum(rain / 5.0, 1.0))
        return shape * (self.seg_cap[seg] * self.seg_vc[seg])[None, :] * scale[:, None]

    # --- weather (city-wide, then per district) -------------------------------------------------
    def showers(self, t0: float, t1: float) -> list[Shower]:
        w = self.scenario.weather
        out: list[Shower] = []
        if w.rain == "list":
            for s in w.showers:
                st = s.at.resolve(self.start, self.day0)
                out.append(Shower(st, st + s.duration_s, s.mmh))
        elif w.rain == "auto":
            first = int(np.floor((t0 - self.day0) / DAY)) - 1
            last = int(np.floor((t1 - self.day0) / DAY))
            for day in range(first, last + 1):
                rng = np.random.default_rng([STREAM_RAIN, self.seed, day + 10_000])
                n = int(rng.choice([0, 0, 1, 1, 2]))
                for _ in range(n):
                    st = self.day0 + day * DAY + float(rng.uniform(0, DAY))
                    dur = float(rng.uniform(1800, 7200))
                    out.append(Shower(st, st + dur, float(rng.uniform(0.5, 6.0))))
        return [s for s in out if s.end >= t0 and s.start <= t1]

    def rain(self, t: np.ndarray) -> np.ndarray:
        out = np.zeros(t.shape, dtype=np.float64)
        if len(t) == 0:
            return out
        for s in self.showers(float(t.min()), float(t.max())):
            out += s.mmh * trapezoid(t, s.start, s.end, 600.0)
        return out

    def temperature(self, t: np.ndarray) -> np.ndarray:
        """City temperature (°C) without incidents, shape (len(t),)."""
        w = self.scenario.weather
        h = self.hour(t)
        ph = self.w_phase
        synoptic = 1.8 * np.sin(2 * np.pi * t / (4.3 * DAY) + ph[0]) + 0.8 * np.sin(
            2 * np.pi * t / (1.7 * DAY) + ph[1]
        )
        return w.temp_mean_c + w.temp_amplitude_c * np.cos(2 * np.pi * (h - 15.0) / 24.0) + synoptic

    def wind(self, t: np.ndarray) -> np.ndarray:
        w = self.scenario.weather
        h = self.hour(t)
        ph = self.w_phase
        base = (
            w.wind_ms
            * (0.7 + 0.55 * profiles.daylight(h))
            * (1.0 + 0.3 * np.sin(2 * np.pi * t / (3.1 * DAY) + ph[2]))
        )
        return np.maximum(base + 0.4 * self.rain(t), 0.0)

    def wind_dir(self, t: np.ndarray) -> np.ndarray:
        w = self.scenario.weather
        return (
            w.wind_dir_deg + 45.0 * np.sin(2 * np.pi * t / (2.1 * DAY) + self.w_phase[3])
        ) % 360.0

    def mixing(self, t: np.ndarray) -> np.ndarray:
        """Atmospheric mixing in (0, 1]: low at night (inversions), high in the afternoon."""
        return 0.3 + 0.7 * profiles.daylight(self.hour(t))
