"""``citybrain bench sim``: how fast the simulator generates readings (frames included).

Measures the default city (5,000 sensors) over a simulated span, one core, no Kafka: generation
plus cutting frames, and separately generation plus JSON encoding (what publishing costs on top).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from typing import Any


def _measure(
    seconds: float, *, encode_frames: bool, sensors: int | None = None
) -> tuple[float, int]:
    from config.city import load_city
    from models.frame import encode
    from sensors_sim.engine import Simulator
    from sensors_sim.scenario import load_scenario

    sim = Simulator(load_city(sensors=sensors), load_scenario("bad_day"), seed=1, duration=seconds)
    n = 0
    t0 = time.perf_counter()
    for frames in sim.steps():
        for f in frames:
            n += len(f)
            if encode_frames:
                encode(f)
    return n / (time.perf_counter() - t0), n


def _line(name: str, values: list[float], runs: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(statistics.median(values)),
        "unit": "readings/s",
        "runs": runs,
        "min": round(min(values)),
        "max": round(max(values)),
        **extra,
    }


def run(runs: int, quick: bool) -> Iterable[dict[str, Any]]:
    span = 1800.0 if quick else 6 * 3600.0
    rates = [_measure(span, encode_frames=False)[0] for _ in range(runs)]
    yield _line("sim_readings_per_s", rates, runs, city_sensors=5000, simulated_s=span)
    enc = [_measure(span / 4, encode_frames=True)[0] for _ in range(runs)]
    yield _line("sim_encoded_readings_per_s", enc, runs, city_sensors=5000, simulated_s=span / 4)
    if not quick:
        big = [_measure(1800.0, encode_frames=False, sensors=100_000)[0] for _ in range(runs)]
        yield _line("sim_readings_per_s_100k", big, runs, city_sensors=100_000, simulated_s=1800.0)
