"""Synthetic traffic streams with labelled incidents and faults, for tests and benchmarks.

Not a simulator (that is :mod:`sensors_sim`): just enough realism to exercise the models --
a daily profile, a speed-flow relation, noise, a crash (speed collapses, occupancy jumps on a
few sensors), a stuck sensor -- deterministic by seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.frame import Frame
from models.sensors import SensorTable


@dataclass(frozen=True)
class SynthLabel:
    id: str
    type: str
    start: float
    end: float
    sensors: tuple[str, ...]
    district: str
    detail: dict[str, Any] = field(default_factory=dict)


def loop_table(
    n_sensors: int, *, n_districts: int = 3, per_gateway: int = 25, interval_s: float = 30.0
) -> SensorTable:
    ids = [f"TR-S{i:06d}" for i in range(n_sensors)]
    districts = [f"D{1 + (i * n_districts) // n_sensors:02d}" for i in range(n_sensors)]
    t = SensorTable.of(
        ids,
        "loop",
        district=districts,
        interval_s=interval_s,
        x=[i * 0.1 for i in range(n_sensors)],
        y=[0.0] * n_sensors,
    )
    gw = np.array([f"TR-G{i // per_gateway:04d}" for i in range(n_sensors)], dtype=object)
    object.__setattr__(t, "gateway", gw)
    object.__setattr__(t, "free_speed_kmh", np.full(n_sensors, 60.0))
    object.__setattr__(t, "length_km", np.full(n_sensors, 0.5))
    object.__setattr__(t, "capacity_vph", np.full(n_sensors, 3600.0))
    return t


def daily_profile(ts: np.ndarray) -> np.ndarray:
    """0.1 at night, about 0.9 at the 08:00 and 18:00 peaks (UTC clock)."""
    h = np.mod(ts, 86400.0) / 3600.0
    return 0.1 + 0.8 * (np.exp(-0.5 * ((h - 8) / 1.2) ** 2) + np.exp(-0.5 * ((h - 18) / 1.5) ** 2))


def loop_readings(
    n_sensors: int, ts: float, rng: np.random.Generator, level: np.ndarray
) -> np.ndarray:
    """(n, 3) flow, speed, occupancy at one time; ``level`` = per-sensor demand scale."""
    p = daily_profile(np.array([ts]))[0]
    flow = 3000.0 * p * level * (1 + 0.05 * rng.standard_normal(n_sensors))
    speed = 60.0 * (1 - 0.5 * (p * level) ** 3) * (1 + 0.03 * rng.standard_normal(n_sensors))
    occ = np.clip(flow / np.maximum(speed, 1.0) / 2.0, 0, 100) * (
        1 + 0.03 * rng.standard_normal(n_sensors)
    )
    return np.column_stack([flow, speed, occ])


def loop_stream(
    table: SensorTable,
    *,
    start: float,
    duration_s: float,
    seed: int,
    incidents: list[SynthLabel] = (),  # type: ignore[assignment]
    interval_s: float = 30.0,
) -> Iterator[list[Frame]]:
    """Steps of frames (one per gateway per interval) in event-time order, with the effects of
    ``incidents`` (types ``crash`` and ``stuck``) applied to their sensors."""
    rng = np.random.default_rng(seed)
    n = len(table)
    level = rng.uniform(0.6, 1.0, n)
    gw = table.gateway
    gateways = sorted(set(gw.tolist()))
    members = {g: np.flatnonzero(gw == g) for g in gateways}
    pos = table.index
    seq = 0
    t = start
    stuck_value: dict[str, np.ndarray] = {}
    while t < start + duration_s:
        x = loop_readings(n, t, rng, level)
        for lab in incidents:
            if not lab.start <= t <= lab.end:
                continue
            idx = np.array([pos[s] for s in lab.sensors])
            if lab.type == "crash":
                x[idx, 1] *= 0.25
                x[idx, 2] = np.minimum(x[idx, 2] * 4.0, 95.0)
                x[idx, 0] *= 0.5
            elif lab.type == "stuck":
                if lab.id not in stuck_value:
                    stuck_value[lab.id] = x[idx].copy()
                x[idx] = stuck_value[lab.id]
        frames = []
        for g in gateways:
            m = members[g]
            frames.append(
                Frame(
                    gateway=g,
                    domain="traffic",
                    ts=np.full(m.shape[0], t),
                    sensor_id=table.ids[m],
                    seq=np.full(m.shape[0], seq, dtype=np.int64),
                    metrics={"flow_vph": x[m, 0], "speed_kmh": x[m, 1], "occupancy_pct": x[m, 2]},
                )
            )
        yield frames
        seq += 1
        t += interval_s
