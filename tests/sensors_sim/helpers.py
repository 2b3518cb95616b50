"""Shared helpers for the simulator tests: small cities, cached runs, readings as columns."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

import numpy as np

from config.city import City, load_city
from sensors_sim.engine import Simulator
from sensors_sim.labels import Label
from sensors_sim.scenario import Scenario, load_scenario, parse_scenario
from sensors_sim.table import to_columns

SMALL = 1500  # sensors in the test city: every kind, 12 districts, fast


@lru_cache(maxsize=4)
def city(sensors: int | None = SMALL) -> City:
    return load_city(sensors=sensors)


def scenario(name: str, **changes: Any) -> Scenario:
    return dataclasses.replace(load_scenario(name), **changes)


def doc_scenario(doc: dict[str, Any]) -> Scenario:
    return parse_scenario(doc, source="<test>")


@dataclasses.dataclass(repr=False)
class Run:
    sim: Simulator
    frames: list[Any]  # Frame, in delivery order
    deliveries: np.ndarray  # tick time of each frame's delivery
    cols: dict[str, dict[str, np.ndarray]]

    def __repr__(self) -> str:  # pytest prints fixtures on failure: keep it short
        return f"Run({self.sim.scenario.name}, seed={self.sim.seed}, {len(self.frames)} frames)"

    @property
    def labels(self) -> list[Label]:
        return self.sim.labels


def run(
    sc: Scenario,
    *,
    seed: int = 1,
    sensors: int | None = SMALL,
    start: float | None = None,
    duration: float | None = None,
) -> Run:
    sim = Simulator(city(sensors), sc, seed=seed, start=start, duration=duration)
    frames, deliveries = [], []
    for t, fs in sim.ticks():
        frames.extend(fs)
        deliveries.extend([t] * len(fs))
    cols = {d: to_columns(frames, d) for d in ("traffic", "environment", "utility")}
    pos = sim.world.sensor_pos
    for _d, c in cols.items():
        c["pos"] = np.fromiter(
            (pos[s] for s in c["sensor_id"]), dtype=np.int64, count=len(c["sensor_id"])
        )
        c["delivered_at"] = (
            np.asarray(deliveries, dtype=np.float64)[c["delivered"]]
            if len(c["delivered"])
            else np.array([])
        )
    return Run(sim, frames, np.asarray(deliveries), cols)


def metric_names(c: dict[str, np.ndarray]) -> list[str]:
    return [
        k
        for k in c
        if k not in ("ts", "sensor_id", "seq", "gateway", "delivered", "delivered_at", "pos")
    ]


def in_labels(c: dict[str, np.ndarray], labels: list[Label], city_: City) -> np.ndarray:
    """Mask of readings of ``c`` covered by any of ``labels`` (sensor listed, start <= ts <= end)."""
    ts = c["ts"]
    out = np.zeros(len(ts), dtype=bool)
    for lab in labels:
        out |= label_mask(c, lab, city_)
    return out


def label_mask(c: dict[str, np.ndarray], lab: Label, city_: City) -> np.ndarray:
    index = {s.id: i for i, s in enumerate(city_.sensors)}
    wanted = np.array([index[s] for s in lab.sensors], dtype=np.int64)
    window = (c["ts"] >= lab.start) & (c["ts"] <= lab.end)
    return window & np.isin(c["pos"], wanted)
