"""Loop detectors: flow, speed and occupancy on the fundamental diagram (:mod:`sensors_sim.fd`).

Demand follows the daily/weekly profile of the segment's direction; rain lowers capacity and
free-flow speed; events multiply demand; a crash imposes its queue. The *true* state (q, v, k)
satisfies ``q = k·v`` exactly; the detector then adds count noise to flow, a small bias and
noise to speed, and noise to occupancy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sensors_sim import fd
from sensors_sim.generators.base import Cohort
from sensors_sim.world import trait

if TYPE_CHECKING:
    from sensors_sim.incidents import Incident
    from sensors_sim.world import World


class LoopGenerator:
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None:
        self.world, self.cohort, self.incidents = world, cohort, incidents
        seg = world.sensor_segment[cohort.gidx]
        self.has_seg = seg >= 0
        self.seg = np.where(self.has_seg, seg, 0) if len(world.seg_len) else np.zeros_like(seg)
        if not len(world.seg_len):
            self.has_seg[:] = False
        # detectors without a segment get a typical 2-lane urban road
        self.cap = np.where(
            self.has_seg, world.seg_cap[self.seg] if len(world.seg_len) else 0.0, 3600.0
        )
        self.vf = np.where(
            self.has_seg, world.seg_free[self.seg] if len(world.seg_len) else 0.0, 50.0
        )
        self.lanes = np.where(
            self.has_seg, world.seg_lanes[self.seg] if len(world.seg_len) else 0.0, 2.0
        )
        ids = cohort.ids.tolist()
        self.flow_cal = 1.0 + 0.06 * (trait(ids, "flow-cal") - 0.5)
        self.speed_cal = 1.0 + 0.06 * (trait(ids, "speed-cal") - 0.5)

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        w, n = self.world, self.cohort.n
        eps = rng.standard_normal((3, len(t), n))
        demand = w.demand(t, self.seg) if len(w.seg_len) else np.zeros((len(t), n))
        if not self.has_seg.all():
            from sensors_sim import profiles

            shape = profiles.traffic(w.hour(t), w.weekday(t), inbound=True)
            demand[:, ~self.has_seg] = (shape * 3600.0 * 0.7 * w.scenario.demand)[:, None]
        for inc in self.incidents:
            f = inc.demand_factor(t)
            if f is not None:
                segs, factor = f
                cols = np.isin(self.seg, segs) & self.has_seg
                demand[:, cols] *= factor[:, None]
        rain = np.minimum(w.rain(t) / 5.0, 1.0)[:, None]
        cap = self.cap[None, :] * (1.0 - 0.08 * rain)
        vf = self.vf[None, :] * (1.0 - 0.12 * rain)
        q, v, k = fd.state(demand, cap, vf, self.lanes[None, :])
        for inc in self.incidents:
            inc.traffic_override(t, self.cohort.gidx, q, v, k)
        occ = fd.occupancy(k, self.lanes[None, :])
        flow = q * self.flow_cal + np.sqrt((0.03 * q) ** 2 + 12.0 * q) * eps[0]
        speed = v * self.speed_cal * (1.0 + 0.025 * eps[1])
        occ = occ * (1.0 + 0.03 * eps[2])
        return {"flow_vph": flow, "speed_kmh": speed, "occupancy_pct": occ}
