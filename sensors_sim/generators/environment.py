"""Air quality, noise and weather stations.

Couplings: local traffic drives NO2, CO, PM and noise; low wind and the night-time inversion
(poor mixing) let pollutants build up; rain washes PM out and adds tyre noise; sunshine and
heat make ozone, which NO2 titrates; domestic heating on cold mornings and evenings adds PM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sensors_sim import profiles
from sensors_sim.generators.base import Cohort, district_temperature, episode, local_traffic
from sensors_sim.world import trait

if TYPE_CHECKING:
    from sensors_sim.incidents import Incident
    from sensors_sim.world import World


def _crowds(
    incidents: list[Incident], cohort: Cohort, t: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(columns, traffic factor (T,), crowd (T,)) of the events near this cohort's sensors."""
    out = []
    for inc in incidents:
        c = inc.crowd(t)
        if c is None:
            continue
        sensors, factor, crowd = c
        cols = np.flatnonzero(np.isin(cohort.gidx, sensors))
        if len(cols):
            out.append((cols, factor, crowd))
    return out


class AirGenerator:
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None:
        self.world, self.cohort, self.incidents = world, cohort, incidents
        ids = cohort.ids.tolist()
        self.district = world.sensor_district[cohort.gidx]
        self.cal = 1.0 + 0.1 * (trait(ids, "air-cal") - 0.5)
        self.so2_base = 2.0 + 5.0 * trait(ids, "so2") ** 2

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        w = self.world
        eps = rng.standard_normal((6, len(t), self.cohort.n))
        _, lt = local_traffic(w, self.cohort, t)
        h = w.hour(t)
        vent = (np.maximum(w.wind(t), 0.6) / 4.0 * w.mixing(t))[:, None]
        rain = w.rain(t)[:, None]
        temp = district_temperature(w, self.incidents, t)[:, self.district]
        heating = np.log1p(np.exp((14.0 - temp) / 3.0)) / 3.0 * profiles.heating_hours(h)[:, None]
        pm25 = (5.0 + (6.0 * lt + 5.0 * heating) / np.maximum(vent, 0.06) ** 0.7) / (
            1.0 + 0.3 * rain
        )
        pm10 = 1.5 * pm25 + 3.0 + 4.0 * lt
        no2 = 9.0 + 38.0 * lt / np.maximum(vent, 0.25) ** 0.5
        co = 0.2 + 0.7 * lt / np.maximum(vent, 0.25) ** 0.5
        so2 = self.so2_base[None, :] * (1.0 + 0.3 * heating)
        for cols, factor, _crowd in _crowds(self.incidents, self.cohort, t):
            no2[:, cols] *= (1.0 + 0.6 * (factor - 1.0))[:, None]
            co[:, cols] *= (1.0 + 0.6 * (factor - 1.0))[:, None]
        ep = episode(w, self.incidents, t)
        if ep is not None:
            e = ep[:, self.district]
            pm25 = pm25 * (1.0 + e)
            pm10 = pm10 * (1.0 + 0.8 * e)
            no2 = no2 * (1.0 + 0.3 * e)
            co = co * (1.0 + 0.4 * e)
            so2 = so2 * (1.0 + 0.5 * e)
        sun = profiles.daylight(h)[:, None]
        o3_raw = 24.0 + 55.0 * sun * np.log1p(np.exp((temp + 2.0) / 8.0)) / 3.0 - 0.3 * no2
        o3 = 3.0 + 4.0 * np.log1p(np.exp((o3_raw - 3.0) / 4.0))  # titration floors smoothly
        cal = self.cal[None, :]
        return {
            "pm25": pm25 * cal * (1.0 + 0.08 * eps[0]),
            "pm10": pm10 * cal * (1.0 + 0.08 * eps[1]),
            "no2": no2 * cal * (1.0 + 0.06 * eps[2]),
            "o3": o3 * cal * (1.0 + 0.06 * eps[3]),
            "so2": so2 * (1.0 + 0.1 * eps[4]),
            "co": co * (1.0 + 0.08 * eps[5]),
        }


class NoiseGenerator:
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None:
        self.world, self.cohort, self.incidents = world, cohort, incidents
        self.offset = 6.0 * (trait(cohort.ids.tolist(), "noise-offset") - 0.5)

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        w = self.world
        eps = rng.standard_normal((1, len(t), self.cohort.n))
        vph, _ = local_traffic(w, self.cohort, t)
        rain = np.minimum(w.rain(t), 3.0)[:, None] / 3.0
        db = 33.0 + 10.0 * np.log10(vph + 15.0) + self.offset[None, :] + 1.5 * rain
        for cols, factor, crowd in _crowds(self.incidents, self.cohort, t):
            db[:, cols] += (10.0 * np.log10(factor) + 7.0 * crowd)[:, None]
        return {"noise_dba": db + 1.0 * eps[0]}


class WeatherGenerator:
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None:
        self.world, self.cohort, self.incidents = world, cohort, incidents
        ids = cohort.ids.tolist()
        self.district = world.sensor_district[cohort.gidx]
        self.t_off = 0.8 * (trait(ids, "temp-off") - 0.5)
        self.exposure = 0.75 + 0.45 * trait(ids, "wind-exposure")
        self.gauge = 0.8 + 0.4 * trait(ids, "rain-gauge")

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        w = self.world
        eps = rng.standard_normal((5, len(t), self.cohort.n))
        wx = w.scenario.weather
        temp_d = district_temperature(w, self.incidents, t)[:, self.district]
        rain = w.rain(t)[:, None]
        temp = temp_d + self.t_off[None, :] + 0.15 * eps[0]
        humidity = (
            wx.humidity_pct - 2.5 * (temp_d - wx.temp_mean_c) + 12.0 * np.minimum(rain, 2.0) / 2.0
        )
        humidity = np.clip(humidity + 1.5 * eps[1], 5.0, 100.0)
        wind = w.wind(t)[:, None] * self.exposure[None, :]
        ep = episode(w, self.incidents, t)
        if ep is not None:
            wind = wind / (1.0 + 0.5 * ep[:, self.district])
        wind = np.maximum(wind * (1.0 + 0.12 * eps[2]), 0.0)
        wind_dir = (w.wind_dir(t)[:, None] + 8.0 * eps[3]) % 360.0
        rain_m = np.where(
            rain > 0, np.maximum(rain * self.gauge[None, :] + 0.05 * eps[4], 0.0), 0.0
        )
        return {
            "temp_c": temp,
            "humidity_pct": humidity,
            "wind_ms": wind,
            "wind_dir_deg": wind_dir,
            "rain_mmh": rain_m,
        }
