"""Water (DMA inflow meters, pressure nodes) and power (feeder load and voltage).

Water demand follows a diurnal curve with a minimum night flow; pressure falls with the square
of the DMA's flow (head loss), so it is highest at night. A burst adds flow at the DMA's inlet
and drops pressure across the DMA, most near the burst. Feeder load follows the day, plus
cooling above ~22 °C and heating below ~12 °C (smooth, so every degree counts); voltage sags
with load, below 95 % of nominal when a feeder is overloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sensors_sim import profiles
from sensors_sim.generators.base import Cohort, district_temperature
from sensors_sim.world import trait

if TYPE_CHECKING:
    from sensors_sim.incidents import Incident
    from sensors_sim.world import World

NOMINAL_KV = 11.0


def _zone_mean_flow(zones: list[str]) -> np.ndarray:
    """Mean DMA inflow (m³/h), a property of the DMA."""
    return 60.0 + 340.0 * trait(zones, "dma-mean")


def _bursts(incidents: list[Incident], t: np.ndarray) -> list[tuple[str, np.ndarray, float, float]]:
    return [b for inc in incidents if (b := inc.burst(t)) is not None]


class WaterFlowGenerator:
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None:
        self.world, self.cohort, self.incidents = world, cohort, incidents
        zones = [str(z) for z in world.sensor_zone[cohort.gidx]]
        self.zones = np.array(zones, dtype=object)
        all_meters = world.sensor_zone[world.sensor_kind == "water_flow"]
        per_zone = {z: int((all_meters == z).sum()) for z in set(zones)}
        share = np.array([1.0 / max(per_zone[z], 1) for z in zones])
        self.mean = _zone_mean_flow(zones) * share

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        w = self.world
        eps = rng.standard_normal((1, len(t), self.cohort.n))
        shape = profiles.water(w.hour(t), w.weekday(t))[:, None]
        q = self.mean[None, :] * shape
        for zone, extra, _x, _y in _bursts(self.incidents, t):
            cols = self.zones == zone
            q[:, cols] += self.mean[cols][None, :] * extra[:, None]
        return {"inflow_m3h": q * (1.0 + 0.02 * eps[0])}


class WaterPressureGenerator:
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None:
        self.world, self.cohort, self.incidents = world, cohort, incidents
        ids = cohort.ids.tolist()
        self.zones = np.array([str(z) for z in world.sensor_zone[cohort.gidx]], dtype=object)
        self.static = 3.2 + 1.8 * trait(ids, "elevation")  # bar at zero flow
        self.loss = 0.3 + 0.6 * trait(ids, "headloss")  # bar at mean flow
        self.xy = world.sensor_xy[cohort.gidx]

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        w = self.world
        eps = rng.standard_normal((1, len(t), self.cohort.n))
        shape = profiles.water(w.hour(t), w.weekday(t))[:, None]
        p = self.static[None, :] - self.loss[None, :] * shape**2
        for zone, extra, x, y in _bursts(self.incidents, t):
            cols = self.zones == zone
            s = shape[:, 0][:, None]
            e = extra[:, None]
            near = np.exp(-np.hypot(self.xy[cols, 0] - x, self.xy[cols, 1] - y) / 0.6)[None, :]
            p[:, cols] -= self.loss[cols][None, :] * (
                (s + e) ** 2 - s**2
            ) + 0.5 * near * np.minimum(e, 1.0)
        return {"pressure_bar": np.maximum(p, 0.0) + 0.02 * eps[0]}


class PowerGenerator:
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None:
        self.world, self.cohort, self.incidents = world, cohort, incidents
        ids = cohort.ids.tolist()
        self.district = world.sensor_district[cohort.gidx]
        self.rating = 4.0 + 8.0 * trait(ids, "rating")  # MW
        self.base = 0.45 + 0.17 * trait(ids, "base-load")
        self.cool = 0.06 + 0.06 * trait(ids, "cooling")
        self.heat = 0.04 + 0.08 * trait(ids, "heating")

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        w = self.world
        eps = rng.standard_normal((2, len(t), self.cohort.n))
        shape = profiles.power(w.hour(t), w.weekday(t))[:, None]
        temp = district_temperature(w, self.incidents, t)[:, self.district]
        cooling = np.log1p(np.exp((temp - 22.0) / 3.0))
        heating = 0.3 * np.log1p(np.exp((12.0 - temp) / 3.0))
        frac = (
            self.base[None, :] * shape + self.cool[None, :] * cooling + self.heat[None, :] * heating
        )
        load = self.rating[None, :] * frac * (1.0 + 0.015 * eps[0])
        voltage = NOMINAL_KV * (1.035 - 0.075 * frac) + 0.02 * eps[1]
        return {"load_mw": load, "voltage_kv": voltage}
