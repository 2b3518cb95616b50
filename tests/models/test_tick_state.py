"""``CityModels.tick_state`` / ``apply_tick_state``: a tick elsewhere equals the tick at home.

The stream workers and the backfill's worker processes score sensors and hand the tick's
inputs to the one process that ticks for the city; that tick must see exactly what a tick of the
scoring process would see, including how long a sensor's fault episode lasted (the quality flag
is held as long as the episode, up to ``HOLD_MAX_S``).
"""

from __future__ import annotations

import numpy as np
import pytest

from models.health import STUCK
from models.params import load_params
from models.sensors import SensorTable
from models.stack import CityModels, ModelsError

N = 8
INTERVAL = 30.0


def _readings(t0: float, t1: float, rng: np.random.Generator, stuck: tuple[float, float]):
    """Loops every 30 s; sensor 0 repeats one value from ``stuck[0]`` to ``stuck[1]``."""
    ts = np.arange(t0, t1, INTERVAL)
    sensor = np.tile(np.arange(N), ts.size)
    t = np.repeat(ts, N)
    values = np.column_stack([
        900 + 50 * rng.standard_normal(t.size),
        45 + 3 * rng.standard_normal(t.size),
        20 + 2 * rng.standard_normal(t.size),
    ])
    hold = (sensor == 0) & (t >= stuck[0]) & (t < stuck[1])
    values[hold] = [900.0, 45.0, 20.0]
    return sensor, t, values


def _models() -> CityModels:
    table = SensorTable.of([f"L{i}" for i in range(N)], "loop",
                           district=["D1"] * (N // 2) + ["D2"] * (N // 2),
                           x=list(range(N)))
    return CityModels(table, load_params(), seed=0, multivariate=False)


def test_a_long_fault_episode_is_held_as_long_after_the_hand_over():
    """Sensor 0 is stuck for an hour: a tick ten minutes after the episode still flags it at
    home (held as long as the episode lasted) and, from the merged tick state, elsewhere too."""
    rng = np.random.default_rng(3)
    home = _models()
    seq = 0
    start, stuck = 0.0, (3600.0, 7200.0)
    for t0 in np.arange(start, 9000.0, 600.0):
        s, t, v = _readings(t0, t0 + 600.0, rng, stuck)
        home.update("loop", s, t, v, np.arange(seq, seq + t.size))
        seq += t.size
    elsewhere = _models()
    half = np.arange(N) < N // 2
    for part in (half, ~half):  # two senders, each with half of the sensors
        elsewhere.apply_tick_state(home.tick_state(np.flatnonzero(part)))
    for now in (7800.0, 8400.0, 8940.0):
        a, b = home.tick(now), elsewhere.tick(now)
        assert a.quality[0] & STUCK, "the hour-long episode is held for an hour after it"
        assert np.array_equal(a.quality, b.quality)
        assert np.array_equal(a.risk.risk, b.risk.risk)


def test_a_tick_state_of_unknown_sensors_is_refused():
    m = _models()
    state = m.tick_state()
    state["idx"] = state["idx"] + N
    with pytest.raises(ModelsError, match="outside"):
        m.apply_tick_state(state)
    state = m.tick_state()
    state["kinds"]["air"] = state["kinds"].pop("loop")
    with pytest.raises(ModelsError, match="kind"):
        m.apply_tick_state(state)
