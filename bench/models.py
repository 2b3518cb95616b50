"""``citybrain bench models``: throughput of the full model stack on one core.

Indicators (windows, AQI/congestion at each tick), the seasonal, spatial and IsolationForest
detectors, sensor health, district risk and the alert state machine, over a synthetic city of
loop detectors, batched the way a Faust agent batches (``BATCH_TICKS`` reporting intervals of
every sensor per call, one ``tick`` per call). Data are generated before the clock starts.
Prints ``models_readings_per_s`` (median of ``runs``, wall clock) and, beside it,
``cpu_readings_per_s``: readings per CPU second of this process (``time.process_time``), the
number that stays comparable when other processes share the cores (wall-clock rates swing by
2x on a loaded machine; the target is "on one core").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

N_SENSORS = 5000
BATCH_TICKS = 4
INTERVAL_S = 30.0


def _data(n: int, ticks: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from models.synthetic import loop_readings

    rng = np.random.default_rng(seed)
    level = rng.uniform(0.6, 1.0, n)
    t0 = 86400.0 * 4 + 6 * 3600.0
    ts = np.repeat(t0 + INTERVAL_S * np.arange(ticks), n)
    vals = np.vstack(
        [loop_readings(n, float(t), rng, level) for t in t0 + INTERVAL_S * np.arange(ticks)]
    )
    sensor = np.tile(np.arange(n, dtype=np.int64), ticks)
    return sensor, ts, vals


def _one_run(n: int, ticks: int, seed: int) -> tuple[float, float, int]:
    from models.params import load_params
    from models.stack import CityModels
    from models.synthetic import loop_table

    table = loop_table(n, n_districts=10)
    city = CityModels(table, load_params(), seed=seed)
    sensor, ts, vals = _data(n, ticks, seed)
    per = n * BATCH_TICKS
    t0 = time.perf_counter()
    c0 = time.process_time()
    for a in range(0, sensor.shape[0], per):
        city.update("loop", sensor[a : a + per], ts[a : a + per], vals[a : a + per])
        city.tick()
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    return dt, dc, int(sensor.shape[0])


def run(runs: int, quick: bool) -> Iterator[dict[str, Any]]:
    import sklearn.ensemble  # noqa: F401  (imported once, outside the timed loop)

    n = 1000 if quick else N_SENSORS
    ticks = 40 if quick else 240
    rates = []
    cpu_rates = []
    for i in range(max(1, runs)):
        dt, dc, count = _one_run(n, ticks, seed=i)
        rates.append(count / dt)
        cpu_rates.append(count / max(dc, 1e-9))
    yield {
        "name": "models_readings_per_s",
        "value": round(statistics.median(rates), 1),
        "unit": "readings/s",
        "runs": len(rates),
        "min": round(min(rates), 1),
        "max": round(max(rates), 1),
        "cpu_readings_per_s": round(statistics.median(cpu_rates), 1),
        "cpu_min": round(min(cpu_rates), 1),
        "cpu_max": round(max(cpu_rates), 1),
        "sensors": n,
        "readings_per_run": n * ticks,
        "batch_readings": n * BATCH_TICKS,
    }
