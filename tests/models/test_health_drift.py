"""Sensor health: drift (fundamental diagram for loops, gateway median for the rest), and the
spike / out-of-order rules that keep other faults from being reported as these."""

from __future__ import annotations

import numpy as np
import orjson

from models.base import Batch
from models.health import DRIFT, OUT_OF_ORDER, OUT_OF_RANGE, SPIKE, STUCK, SensorHealth

LOOP = ("flow_vph", "speed_kmh", "occupancy_pct")
H = 3600.0


def _profile(t: np.ndarray) -> np.ndarray:
    """A smooth daily shape, 0.3 .. 1.0."""
    return 0.65 + 0.35 * np.sin(2 * np.pi * t / 86400.0 - 1.0)


def _run(h: SensorHealth, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Feed one batch per time step (all sensors); flags (steps, sensors)."""
    n = x.shape[1]
    out = np.zeros((len(t), n), dtype=np.uint16)
    for i, ti in enumerate(t.tolist()):
        out[i] = h.update(
            Batch.of(np.arange(n), np.full(n, ti), x[i], seq=np.full(n, i, dtype=np.int64))
        )
    return out


def _loops(seed: int, hours: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, hours * H, 30.0)
    n = 4
    lanes = np.array([1.0, 2.0, 3.0, 2.0])
    q = 2000.0 * lanes[None, :] * _profile(t)[:, None]
    v = 55.0 - 10.0 * _profile(t)[:, None] + np.zeros((1, n))
    occ = q / v / lanes[None, :] * 0.65  # occupancy proportional to density per lane
    flow = q + np.sqrt(12.0 * q) * rng.standard_normal(q.shape)
    speed = v * (1 + 0.025 * rng.standard_normal(q.shape))
    occ = occ * (1 + 0.03 * rng.standard_normal(q.shape))
    return t, np.stack([flow, speed, occ], axis=2)


def test_loop_drift_breaks_the_fundamental_diagram_and_is_flagged() -> None:
    t, x = _loops(0)
    start, end = 6 * H, 12 * H
    inside = (t >= start) & (t <= end)
    frac = np.clip((t - start) / (end - start), 0, 1)
    x[inside, 0, 0] *= 1.0 + 0.4 * frac[inside]  # sensor 0: flow drifts up to +40 %
    h = SensorHealth([f"L{i}" for i in range(4)], metrics=LOOP, interval_s=30.0)
    f = _run(h, t, x)
    drift = (f & DRIFT) != 0
    assert drift[inside, 0].any()
    first = t[np.argmax(drift[:, 0])]
    assert start + 1 * H < first < end  # a slow ramp takes a while to stand out
    assert not drift[:, 1:].any()  # the others never
    # after the reset the flag decays with the slow average (the detectors' baselines had
    # followed the drift and need about as long to forget it)
    assert drift[(t > end) & (t < end + 600), 0].any()
    assert not drift[t > end + 2 * H, 0].any()
    assert not drift[t < start, 0].any()


def _meters(seed: int, hours: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, hours * H, 60.0)
    n = 6
    level = 50.0 + 15.0 * _profile(t)[:, None] + 3.0 * np.arange(n)[None, :]
    return t, level + 0.5 * rng.standard_normal((len(t), n))


def test_gateway_drift_is_flagged_and_a_step_is_not() -> None:
    t, x = _meters(1)
    start, end = 5 * H, 11 * H
    inside = (t >= start) & (t <= end)
    frac = np.clip((t - start) / (end - start), 0, 1)
    x[inside, 0] *= 1.0 + 0.4 * frac[inside]  # meter 0 drifts
    step = (t >= 7 * H) & (t < 9 * H)
    x[step, 1] *= 1.3  # meter 1: a sudden 30 % step for 2 h (an incident, not a drift)
    ids = [f"N{i}" for i in range(6)]
    h = SensorHealth(ids, metrics=("noise_dba",), interval_s=60.0, gateway=["G"] * 6)
    f = _run(h, t, x)
    drift = (f & DRIFT) != 0
    assert drift[inside, 0].any() and not drift[t < start, 0].any()
    assert not drift[:, 1].any()
    assert not drift[:, 2:].any()


def test_no_drift_without_a_gateway_of_three() -> None:
    t, x = _meters(2, hours=12.0)
    x[t > 4 * H, 0] *= 1.0 + 0.4 * np.clip((t[t > 4 * H] - 4 * H) / (6 * H), 0, 1)
    h = SensorHealth(["A", "B"], metrics=("noise_dba",), interval_s=60.0, gateway=["G", "G"])
    f = _run(h, t, x[:, :2])
    assert not (f & DRIFT).any()  # no reference to judge against: never a guess


def test_drift_state_round_trips_per_gateway() -> None:
    t, x = _meters(3)
    x[t > 5 * H, 0] *= 1.0 + 0.4 * np.clip((t[t > 5 * H] - 5 * H) / (6 * H), 0, 1)
    ids = [f"N{i}" for i in range(6)]
    gw = ["G1"] * 3 + ["G2"] * 3

    def make() -> SensorHealth:
        return SensorHealth(ids, metrics=("noise_dba",), interval_s=60.0, gateway=gw)

    whole = _run(make(), t, x)
    k = len(t) // 2
    a = make()
    _run(a, t[:k], x[:k])
    b = make()
    for g in ("G1", "G2"):
        sensors = [s for s, gg in zip(ids, gw, strict=True) if gg == g]
        b.restore(orjson.loads(orjson.dumps(a.snapshot(sensors))))
    rest = np.zeros((len(t) - k, 6), dtype=np.uint16)
    for i in range(k, len(t)):
        rest[i - k] = b.update(
            Batch.of(np.arange(6), np.full(6, t[i]), x[i], seq=np.full(6, i, dtype=np.int64))
        )
    assert (whole[:, 0] & DRIFT).any()
    assert np.array_equal(whole[k:], rest)


def test_out_of_order_is_a_short_swap_a_late_backlog_is_not() -> None:
    h = SensorHealth(["A"], metrics=LOOP, interval_s=30.0, dropout_intervals=5.0)
    x = np.array([[1000.0, 50.0, 10.0]])
    for i in range(40):
        h.update(Batch.of([0], [i * 30.0], x, seq=[i]))
    # one interval behind (a frame held back): out of order
    f = h.update(Batch.of([0], [38 * 30.0 + 1.0], x, seq=[100]))
    assert f[0] & OUT_OF_ORDER
    # twenty intervals behind (a late gateway's backlog after its on-time frames): not
    f = h.update(Batch.of([0], [19 * 30.0 + 1.0], x, seq=[101]))
    assert not f[0] & OUT_OF_ORDER


def test_spike_rules_out_of_range_and_after_a_stuck_run() -> None:
    rng = np.random.default_rng(4)
    n = 200
    t = np.arange(n) * 30.0
    x = np.column_stack(
        [
            1000 + 20 * rng.standard_normal(n),
            50 + rng.standard_normal(n),
            10 + 0.3 * rng.standard_normal(n),
        ]
    )
    x[40, 2] = 150.0  # occupancy out of range for one reading, back at 41
    x[60:150] = x[59]  # stuck for 45 minutes, then ordinary noise again
    x[180, 0] += 2500.0  # a real spike on flow, reverting at 181
    h = SensorHealth(["A"], metrics=LOOP, interval_s=30.0, spike_k=8.0)
    f = h.update(Batch.of(np.zeros(n), t, x, seq=np.arange(n)))
    assert f[40] & OUT_OF_RANGE
    assert not (f[:180] & SPIKE).any()  # neither the out-of-range return nor post-stuck steps
    assert (f[61:150] & STUCK).any()
    assert f[181] & SPIKE


def test_quality_holds_as_long_as_a_long_fault_lasted() -> None:
    rng = np.random.default_rng(5)
    n = 400
    t = np.arange(n) * 30.0
    x = np.column_stack(
        [1000 + 20 * rng.standard_normal(n), 50 + rng.standard_normal(n), 10 + rng.random(n)]
    )
    x[100:190] = x[99]  # stuck for 45 minutes (ends at t = 5,670 s)
    x[300, 0] += 2500.0  # a one-reading spike at 9,000 s
    h = SensorHealth(["A"], metrics=LOOP, interval_s=30.0, hold_s=600.0)
    h.update(Batch.of(np.zeros(250), t[:250], x[:250], seq=np.arange(250)))
    end = t[189]
    assert h.quality(end + 1800.0)[0] & STUCK  # held ~ as long as it lasted
    assert not h.quality(end + 3000.0)[0] & STUCK
    h.update(Batch.of(np.zeros(150), t[250:], x[250:], seq=np.arange(250, 400)))
    assert h.quality(t[301] + 300.0)[0] & SPIKE
    assert not h.quality(t[301] + 700.0)[0] & SPIKE  # a short fault: hold_s
