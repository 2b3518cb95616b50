"""Deterministic frames for the pipeline tests, and the reference results they must produce."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from config.city import City
from config.domains import KINDS
from models.frame import Frame


def traffic_frames(city: City, *, steps: int, start: float, interval_s: float = 30.0,
                   seed: int = 0) -> list[Frame]:
    """``steps`` ticks of every traffic gateway of ``city``, one reading per sensor per tick."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(steps):
        t = start + k * interval_s
        for g in city.gateways:
            if g.domain != "traffic":
                continue
            n = len(g.sensors)
            flow = np.round(rng.uniform(100, 1800, n), 3)
            speed = np.round(rng.uniform(10, 80, n), 3)
            occ = np.round(rng.uniform(1, 60, n), 3)
            frames.append(Frame(
                gateway=g.id, domain="traffic", ts=np.full(n, t),
                sensor_id=np.array([s.id for s in g.sensors], dtype=object),
                seq=np.full(n, k + 1, dtype=np.int64),
                metrics={"flow_vph": flow, "speed_kmh": speed, "occupancy_pct": occ},
            ))
    return frames


def expected_rolling_means(frames: list[Frame], *, window_s: int, step_s: int,
                           lateness_s: int) -> dict[tuple[str, str, int], float]:
    """Plain-Python reference of the worker's hopping-window means.

    Key: (sensor_id, indicator name, window end). Only windows the watermark has closed: per
    gateway, ends <= floor((max ts - lateness) / step) * step, after the gateway's first step.
    """
    readings: dict[str, list[tuple[float, str, dict[str, float]]]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for f in frames:
        for i, sid in enumerate(f.sensor_id):
            key = (str(sid), int(f.seq[i]))
            if key in seen:
                continue
            seen.add(key)
            readings[f.gateway].append(
                (float(f.ts[i]), str(sid), {m: float(v[i]) for m, v in f.metrics.items()})
            )
    out: dict[tuple[str, str, int], float] = {}
    for _gw, rows in readings.items():
        first = min(r[0] for r in rows)
        lo = int(np.floor(first / step_s) * step_s)
        hi = int(np.floor((max(r[0] for r in rows) - lateness_s) / step_s) * step_s)
        for end in range(lo + step_s, hi + 1, step_s):
            acc: dict[tuple[str, str], list[float]] = defaultdict(list)
            for ts, sid, metrics in rows:
                if end - window_s <= ts < end:
                    for m, v in metrics.items():
                        acc[(sid, m)].append(v)
            for (sid, m), vals in acc.items():
                out[(sid, f"{m}_mean", end)] = sum(vals) / len(vals)
    return out


__all__ = ["KINDS", "expected_rolling_means", "traffic_frames"]
