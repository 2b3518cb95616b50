"""Incidents: crash, pollution episode, water-main burst, heat wave, large event.

An incident is resolved once against the city (which segment, which DMA, which districts) and
then acts as a *field* the generators read: a demand factor on segments, a temperature delta per
district, a burst flow in a DMA, and so on. Every field has compact support in time, so an
incident changes readings only inside its labelled window, and only at its labelled sensors.

The crash is the one with dynamics: a bottleneck of capacity ``(1 - severity) × C`` on a
segment; the queue tail moves upstream at the shock speed ``(d - μ) / (k_q - k_a)`` (first-order
kinematic wave theory on the fundamental diagram of :mod:`sensors_sim.fd`), spilling back over
the straight-ahead upstream segments; after clearance a recovery wave runs upstream from the
crash site at ``(C - μ) / (k_q - k_c)`` until it meets the tail.
"""

from __future__ import annotations

import numpy as np

from sensors_sim import fd
from sensors_sim.errors import ScenarioError
from sensors_sim.labels import Label
from sensors_sim.scenario import IncidentSpec
from sensors_sim.world import STREAM_INCIDENT, World, envelope, trapezoid


class Incident:
    """Base: every field is absent. Subclasses override the fields they drive."""

    type = "incident"

    def __init__(self, spec: IncidentSpec, world: World, number: int) -> None:
        self.spec = spec
        self.world = world
        self.id = f"{spec.type}-{number}"
        self.start = spec.at.resolve(world.start, world.day0)
        self.end = self.start
        self.labels: list[Label] = []

    def fail(self, key: str, value: object, why: str) -> ScenarioError:
        return self.world.scenario.fail(f"{self.spec.path}.{key}", value, why)

    def active(self, t: np.ndarray) -> bool:
        return bool(len(t)) and float(t[-1]) >= self.start and float(t[0]) <= self.end

    # --- fields -----------------------------------------------------------------------------
    def demand_factor(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(segment indices, factor (T,)) multiplying their demand."""
        return None

    def traffic_override(
        self, t: np.ndarray, gidx: np.ndarray, q: np.ndarray, v: np.ndarray, k: np.ndarray
    ) -> None:
        """Change the true traffic state of loops ``gidx`` in place."""

    def temp_delta(self, t: np.ndarray) -> np.ndarray | None:
        """(T, n_districts) °C added to the air temperature."""
        return None

    def episode(self, t: np.ndarray) -> np.ndarray | None:
        """(T, n_districts) pollution episode intensity (PM multiplier minus one)."""
        return None

    def crowd(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(global sensor indices, traffic factor (T,), crowd (T,)) near a venue."""
        return None

    def burst(self, t: np.ndarray) -> tuple[str, np.ndarray, float, float] | None:
        """(DMA zone, extra inflow as a share of the DMA's mean (T,), x, y)."""
        return None

    # --- helpers ----------------------------------------------------------------------------
    def _label(
        self,
        suffix: str,
        start: float,
        end: float,
        sensors: np.ndarray,
        district: str,
        **detail: object,
    ) -> None:
        ids = tuple(self.world.city.sensors[i].id for i in sorted(set(sensors.tolist())))
        self.labels.append(
            Label(f"{self.id}{suffix}", self.spec.type, start, end, ids, district, dict(detail))
        )

    def _kinds_in(self, districts: list[int], kinds: tuple[str, ...]) -> np.ndarray:
        w = self.world
        mask = np.isin(w.sensor_district, districts) & np.isin(w.sensor_kind, kinds)
        return np.flatnonzero(mask)

    def _reading_times(self, gidx: np.ndarray, t0: float, t1: float) -> dict[float, np.ndarray]:
        """Reading times in [t0, t1] per reporting interval of the sensors ``gidx``."""
        out: dict[float, np.ndarray] = {}
        for iv in np.unique(self.world.sensor_interval[gidx]).tolist():
            k0 = np.ceil((t0 - self.world.start) / iv)
            k1 = np.floor((t1 - self.world.start) / iv)
            out[iv] = self.world.start + np.arange(k0, k1 + 1) * iv
        return out


class Crash(Incident):
    type = "crash"

    def __init__(self, spec: IncidentSpec, world: World, number: int) -> None:
        super().__init__(spec, world, number)
        p = spec.params
        rng = np.random.default_rng([STREAM_INCIDENT, world.seed, number, 1])
        loops_on = np.bincount(
            world.sensor_segment[world.sensor_segment >= 0], minlength=len(world.seg_len)
        )
        if p["segment"] is not None:
            if p["segment"] not in world.seg_pos:
                raise self.fail("segment", p["segment"], "unknown segment")
            seg = world.seg_pos[p["segment"]]
        else:
            cand = np.flatnonzero((loops_on > 0) & (world.seg_lanes >= 2))
            if p["district"] is not None:
                if p["district"] not in world.district_pos:
                    raise self.fail("district", p["district"], "unknown district")
                cand = cand[world.seg_district[cand] == world.district_pos[p["district"]]]
            # a crash worth simulating has a few upstream segments for the queue to spill into
            deep = [c for c in cand.tolist() if len(world.upstream_chain(int(c), 3.0)) >= 4]
            pool = np.array(deep or cand.tolist(), dtype=np.int64)
            if not len(pool):
                raise self.fail("district", p["district"], "no instrumented segment to crash on")
            seg = int(rng.choice(pool))
        self.seg = seg
        self.severity = float(p["severity"])
        self.clear = self.start + float(p["clear_after"])
        cap, vf, lanes = world.seg_cap[seg], world.seg_free[seg], world.seg_lanes[seg]
        self.cap, self.vf, self.lanes = cap, vf, lanes
        self.mu = cap * (1.0 - self.severity)
        self.crash_frac = 0.85

        # --- upstream distance of every loop on the chain of straight-ahead predecessors --------
        chain = world.upstream_chain(seg)
        sens: list[int] = []
        dist: list[float] = []
        on0: list[bool] = []
        offset = self.crash_frac * world.seg_len[seg]
        for n, s in enumerate(chain):
            members = np.flatnonzero(world.sensor_segment == s)
            for g in members.tolist():
                f = world.sensor_frac[g]
                if n == 0:
                    u = (self.crash_frac - f) * world.seg_len[s]
                else:
                    u = offset + (1.0 - f) * world.seg_len[s]
                sens.append(g)
                dist.append(float(u))
                on0.append(n == 0)
            if n > 0:
                offset += world.seg_len[s]
        self.chain = chain
        self.chain_km = float(offset)

        # --- queue tail L(t) and recovery front R(t) --------------------------------------------
        dt = 15.0
        horizon = 12 * 3600.0
        times = self.start + np.arange(0.0, horizon + dt, dt)
        demand = world.demand(times, np.array([seg]))[:, 0]
        v_a = fd.free_speed(demand, cap, vf)
        k_a = demand / v_a
        k_q = fd.congested(np.array(self.mu), cap, vf, lanes)[0]
        k_c = fd.critical_density(cap, vf, lanes) * lanes
        recover = (cap - self.mu) / max(float(k_q - k_c), 1e-6)  # km/h
        tail = np.zeros_like(times)
        front = np.full_like(times, -1.0)
        length = 0.0
        end_i = len(times) - 1
        for i in range(1, len(times)):
            rate = (demand[i] - self.mu) / max(float(k_q - k_a[i]), 1e-6)
            length = max(0.0, length + rate * dt / 3600.0)
            tail[i] = min(length, self.chain_km)
            if times[i] >= self.clear:
                front[i] = recover * (times[i] - self.clear) / 3600.0
                if front[i] >= length:
                    end_i = i
                    break
        self.times, self.tail, self.front = (
            times[: end_i + 1],
            tail[: end_i + 1],
            front[: end_i + 1],
        )
        self.end = max(float(self.times[-1]), self.clear)
        self.queue_max_km = float(self.tail.max())

        # --- who shows it: evaluate the effect at every loop's reading times --------------------
        sens_a = np.array(sens, dtype=np.int64)
        dist_a = np.array(dist, dtype=np.float64)
        on0_a = np.array(on0, dtype=bool)
        shown = np.zeros(len(sens_a), dtype=bool)
        for iv, ts in self._reading_times(sens_a, self.start, self.end).items():
            cols = world.sensor_interval[sens_a] == iv
            if not len(ts):
                continue
            eff = self._effect_masks(ts, dist_a[cols], on0_a[cols])
            shown[cols] = np.any(eff[0] | eff[1] | eff[2] | eff[3] | eff[4], axis=0)
        self.sens, self.dist, self.on0 = sens_a[shown], dist_a[shown], on0_a[shown]
        self._label(
            "",
            self.start,
            self.end,
            self.sens,
            world.district_ids[world.seg_district[seg]],
            segment=world.city.segments[seg].id,
            severity=self.severity,
            clear=self.clear,
            queue_max_km=round(self.queue_max_km, 3),
        )

    def _effect_masks(
        self, t: np.ndarray, u: np.ndarray, on0: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Boolean (T, m) masks: queue, discharge, approach, capped, downstream discharge."""
        alive = ((t >= self.start) & (t <= self.end))[:, None]
        tail = np.interp(t, self.times, self.tail)[:, None]
        front = np.interp(t, self.times, self.front, left=-1.0, right=-1.0)[:, None]
        before = (t < self.clear)[:, None]
        up = (u >= 0)[None, :]
        uu = u[None, :]
        queue = alive & up & (uu <= tail) & (uu > front) & (tail > 0)
        discharge = alive & up & (uu <= front) & (front < tail)
        approach = alive & up & on0[None, :] & before & ~queue
        down = (~up) & alive
        capped = down & before & (tail > 0)
        down_dis = down & ~before & (front < tail)
        return queue, discharge, approach, capped, down_dis

    def traffic_override(
        self, t: np.ndarray, gidx: np.ndarray, q: np.ndarray, v: np.ndarray, k: np.ndarray
    ) -> None:
        if not self.active(t) or not len(self.sens):
            return
        pos = np.searchsorted(gidx, self.sens)
        pos = np.clip(pos, 0, len(gidx) - 1)
        ok = gidx[pos] == self.sens
        if not ok.any():
            return
        cols = pos[ok]
        queue, discharge, approach, capped, down_dis = self._effect_masks(
            t, self.dist[ok], self.on0[ok]
        )
        cap, vf, lanes = self.cap, self.vf, self.lanes
        qs, vs, ks = q[:, cols], v[:, cols], k[:, cols]
        kq, vq = fd.congested(np.array(self.mu), cap, vf, lanes)
        kc = fd.critical_density(cap, vf, lanes) * lanes
        vc = fd.CRIT_SPEED * vf
        qs = np.where(queue, self.mu, qs)
        vs = np.where(queue, vq, vs)
        ks = np.where(queue, kq, ks)
        qs = np.where(discharge | down_dis, cap * 0.97, qs)
        vs = np.where(discharge, vc, vs)
        ks = np.where(discharge, kc, ks)
        vs = np.where(approach, vs * 0.7, vs)
        ks = np.where(approach, qs / np.maximum(vs, 1e-6), ks)
        qs = np.where(capped, np.minimum(qs, self.mu), qs)
        vdown = fd.free_speed(qs, cap, vf)
        vs = np.where(capped | down_dis, vdown, vs)
        ks = np.where(capped | down_dis, qs / np.maximum(vs, 1e-6), ks)
        q[:, cols], v[:, cols], k[:, cols] = qs, vs, ks


class Pollution(Incident):
    type = "pollution"

    def __init__(self, spec: IncidentSpec, world: World, number: int) -> None:
        super().__init__(spec, world, number)
        p = spec.params
        rng = np.random.default_rng([STREAM_INCIDENT, world.seed, number, 2])
        if p["district"] is None:
            origin = int(rng.integers(len(world.district_ids)))
        elif p["district"] in world.district_pos:
            origin = world.district_pos[p["district"]]
        else:
            raise self.fail("district", p["district"], "unknown district")
        dist = np.hypot(*(world.district_xy - world.district_xy[origin]).T)
        near = np.argsort(dist)[1:]
        cell = float(np.median(np.sort(dist)[1:3])) if len(dist) > 2 else 1.0
        neighbours = [int(i) for i in near if dist[i] <= 1.5 * cell]
        self.plan: list[tuple[int, float, float, float]] = []  # district, start, end, magnitude
        dur, lag, ramp = float(p["duration"]), float(p["spread_lag"]), float(p["ramp"])
        m = float(p["magnitude"]) - 1.0
        self.plan.append((origin, self.start, self.start + dur, m))
        for d in neighbours:
            self.plan.append((d, self.start + lag, self.start + lag + dur, 0.6 * m))
        self.ramp = ramp
        self.end = max(e for _, _, e, _ in self.plan)
        for d, s, e, mag in self.plan:
            sensors = self._kinds_in([d], ("air", "weather"))
            self._label(
                f"/{world.district_ids[d]}",
                s,
                e,
                sensors,
                world.district_ids[d],
                origin=world.district_ids[origin],
                pm_multiplier=round(1 + mag, 3),
            )

    def episode(self, t: np.ndarray) -> np.ndarray | None:
        if not self.active(t):
            return None
        out = np.zeros((len(t), len(self.world.district_ids)))
        for d, s, e, mag in self.plan:
            out[:, d] += mag * trapezoid(t, s, e, self.ramp)
        return out


class Burst(Incident):
    type = "burst"

    def __init__(self, spec: IncidentSpec, world: World, number: int) -> None:
        super().__init__(spec, world, number)
        p = spec.params
        rng = np.random.default_rng([STREAM_INCIDENT, world.seed, number, 3])
        meters = world.sensor_kind == "water_flow"
        zones = sorted({str(z) for z in world.sensor_zone[meters] if z})
        if p["zone"] is not None:
            if p["zone"] not in zones:
                raise self.fail(
                    "zone", p["zone"], f"unknown DMA zone (known: {', '.join(zones[:8])}, ...)"
                )
            zone = p["zone"]
        else:
            pool = zones
            if p["district"] is not None:
                if p["district"] not in world.district_pos:
                    raise self.fail("district", p["district"], "unknown district")
                pool = [z for z in zones if world.zone_district.get(z) == p["district"]]
            if not pool:
                raise self.fail("district", p["district"], "no metered DMA to burst in")
            zone = str(rng.choice(pool))
        self.zone = zone
        self.frac = float(p["flow_frac"])
        self.end = self.start + float(p["duration"])
        members = np.flatnonzero(world.sensor_zone == zone)
        pres = members[world.sensor_kind[members] == "water_pressure"]
        anchor = pres if len(pres) else members
        pick = int(rng.choice(anchor))
        self.x, self.y = float(world.sensor_xy[pick, 0]), float(world.sensor_xy[pick, 1])
        self._label(
            "",
            self.start,
            self.end,
            members,
            world.zone_district.get(zone, world.district_ids[0]),
            zone=zone,
            flow_frac=self.frac,
            x=round(self.x, 3),
            y=round(self.y, 3),
        )

    def burst(self, t: np.ndarray) -> tuple[str, np.ndarray, float, float] | None:
        if not self.active(t):
            return None
        env = envelope(
            t,
            [
                (self.start, 0.0),
                (self.start + 120.0, 1.0),
                (self.end - 300.0, 1.0),
                (self.end, 0.0),
            ],
        )
        return self.zone, self.frac * env, self.x, self.y


class Heatwave(Incident):
    type = "heatwave"

    def __init__(self, spec: IncidentSpec, world: World, number: int) -> None:
        super().__init__(spec, world, number)
        p = spec.params
        if p["districts"] == "all":
            ds = list(range(len(world.district_ids)))
        else:
            ds = []
            for name in p["districts"]:
                if name not in world.district_pos:
                    raise self.fail("districts", name, "unknown district")
                ds.append(world.district_pos[name])
        self.districts = ds
        self.delta = float(p["delta_c"])
        self.ramp = float(p["ramp"])
        self.end = self.start + float(p["duration"])
        for d in ds:
            sensors = self._kinds_in([d], ("weather", "air", "power"))
            self._label(
                f"/{world.district_ids[d]}",
                self.start,
                self.end,
                sensors,
                world.district_ids[d],
                delta_c=self.delta,
            )

    def temp_delta(self, t: np.ndarray) -> np.ndarray | None:
        if not self.active(t):
            return None
        from sensors_sim.profiles import daylight

        env = trapezoid(t, self.start, self.end, self.ramp) * (
            0.6 + 0.4 * daylight(self.world.hour(t))
        )
        out = np.zeros((len(t), len(self.world.district_ids)))
        out[:, self.districts] = (self.delta * env)[:, None]
        return out


class Event(Incident):
    type = "event"

    def __init__(self, spec: IncidentSpec, world: World, number: int) -> None:
        super().__init__(spec, world, number)
        p = spec.params
        venues = {
            str(v.get("id")): v for v in world.city.extra.get("venues") or [] if isinstance(v, dict)
        }
        x, y, radius = p["x"], p["y"], p["radius_km"]
        name = p["venue"]
        if name is not None:
            if name not in venues:
                raise self.fail(
                    "venue", name, f"unknown venue (known: {', '.join(venues) or 'none'})"
                )
            v = venues[name]
            x = float(v["x"]) if x is None else x
            y = float(v["y"]) if y is None else y
            radius = float(v.get("radius_km", 1.0)) if radius is None else radius
        radius = 1.0 if radius is None else radius
        self.x, self.y, self.radius = float(x), float(y), float(radius)
        self.surge = float(p["surge"])
        dur, arr, dep = float(p["duration"]), float(p["arrival"]), float(p["departure"])
        self.doors, self.close = self.start, self.start + dur
        self.start, self.end = self.doors - arr, self.close + dep
        self.traffic_points = [
            (self.start, 0.0),
            (self.doors - 0.15 * arr, 1.0),
            (self.doors + 900.0, 0.25),
            (self.close, 0.25),
            (self.close + min(900.0, dep / 3), 1.2),
            (self.end, 0.0),
        ]
        self.crowd_points = [
            (self.doors - 0.3 * arr, 0.0),
            (self.doors, 1.0),
            (self.close, 1.0),
            (self.close + 0.5 * dep, 0.0),
        ]
        seg_d = np.hypot(world.seg_mid[:, 0] - self.x, world.seg_mid[:, 1] - self.y)
        self.segs = np.flatnonzero(seg_d <= self.radius)
        loops = np.flatnonzero(np.isin(world.sensor_segment, self.segs))
        sd = np.hypot(world.sensor_xy[:, 0] - self.x, world.sensor_xy[:, 1] - self.y)
        self.env_sensors = np.flatnonzero(
            (sd <= self.radius) & np.isin(world.sensor_kind, ("noise", "air"))
        )
        district = (
            world.district_ids[int(world.sensor_district[int(np.argmin(sd))])] if len(sd) else ""
        )
        self._label(
            "",
            self.start,
            self.end,
            np.concatenate([loops, self.env_sensors]),
            district,
            venue=name,
            x=self.x,
            y=self.y,
            radius_km=self.radius,
            doors=self.doors,
            close=self.close,
        )

    def demand_factor(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.active(t) or not len(self.segs):
            return None
        return self.segs, 1.0 + self.surge * envelope(t, self.traffic_points)

    def crowd(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if not self.active(t) or not len(self.env_sensors):
            return None
        return (
            self.env_sensors,
            1.0 + self.surge * envelope(t, self.traffic_points),
            envelope(t, self.crowd_points),
        )


KINDS: dict[str, type[Incident]] = {
    "crash": Crash,
    "pollution": Pollution,
    "burst": Burst,
    "heatwave": Heatwave,
    "event": Event,
}


def build_incidents(world: World) -> list[Incident]:
    out: list[Incident] = []
    for n, spec in enumerate(world.scenario.incidents, start=1):
        out.append(KINDS[spec.type](spec, world, n))
    return out
