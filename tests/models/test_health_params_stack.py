from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from models.base import Batch
from models.health import DROPOUT, DUPLICATE, OUT_OF_ORDER, OUT_OF_RANGE, SPIKE, STUCK, SensorHealth
from models.params import ParamsError, load_params, parse_params
from models.sensors import SensorTable
from models.stack import CityModels
from models.synthetic import loop_stream, loop_table

M = ("flow_vph", "speed_kmh", "occupancy_pct")


def test_health_flags() -> None:
    h = SensorHealth(["A", "B"], metrics=M, stuck_readings=4, spike_k=8.0, interval_s=30.0)
    rng = np.random.default_rng(0)
    t = np.arange(60) * 30.0
    x = np.column_stack(
        [
            1000 + 20 * rng.standard_normal(60),
            50 + rng.standard_normal(60),
            10 + 0.3 * rng.standard_normal(60),
        ]
    )
    x[30] = [1000, 200, 10]  # spike on speed that reverts at 31
    x[40:46] = x[39]  # stuck
    x[50, 2] = 120.0  # occupancy > 100 %
    f = h.update(Batch.of(np.zeros(60), t, x, seq=np.arange(60)))
    assert f[31] & SPIKE and not (f[:30] & SPIKE).any()
    assert (f[42:46] & STUCK).all() and not (f[:40] & STUCK).any()
    assert f[50] & OUT_OF_RANGE
    # duplicate (same seq) and out of order (older ts)
    f = h.update(Batch.of([0, 0], [59 * 30.0, 57 * 30.0], x[:2], seq=[59, 70]))
    assert f[0] & DUPLICATE and f[1] & OUT_OF_ORDER
    # dropout: B never reported -> not flagged; A silent for long -> flagged
    assert h.dropouts(59 * 30.0 + 1000).tolist() == [True, False]
    assert h.quality(59 * 30.0 + 1000)[0] & DROPOUT


def test_dropout_is_a_sensor_silent_while_its_gateway_reports() -> None:
    # gateway G1: A and B; gateway G2: C and D; E alone on G3
    ids = ["A", "B", "C", "D", "E"]
    h = SensorHealth(ids, metrics=M, interval_s=30.0, gateway=["G1", "G1", "G2", "G2", "G3"])
    x = np.array([[1000.0, 50.0, 10.0]])
    for k in range(20):
        t = k * 30.0
        alive = [0, 1, 2, 3, 4] if k < 10 else [1, 4]  # from k = 10: A silent, C and D silent
        n = len(alive)
        h.update(Batch.of(alive, np.full(n, t), np.repeat(x, n, axis=0), seq=np.full(n, k)))
    # A: silent while B (same gateway) reports -> dropout; C and D: their whole gateway is
    # silent (a link outage, e.g. late delivery) -> not a sensor dropout; E reports
    assert h.dropouts(19 * 30.0).tolist() == [True, False, False, False, False]
    # a sensor alone on its gateway is judged by the watermark alone
    assert h.dropouts(19 * 30.0 + 1000).tolist()[4]
    with pytest.raises(ValueError, match="one gateway per sensor"):
        SensorHealth(ids, metrics=M, gateway=["G1"])


def test_params_errors_name_file_key_value(tmp_path: Path) -> None:
    p = load_params()
    assert p.aqi.standard in ("china", "us") and 0 < p.threshold("traffic") <= 1
    bad = tmp_path / "models.yaml"
    bad.write_text("thresholds:\n  traffic: 1.5\n")
    with pytest.raises(
        ParamsError, match=r"models.yaml: thresholds.traffic=1.5: must be in \[0, 1\]"
    ):
        load_params(bad)
    with pytest.raises(ParamsError, match=r"x.yaml: seasonal.learning_rate=0: must be in \(0, 1\]"):
        parse_params({"seasonal": {"learning_rate": 0}}, source="x.yaml")
    with pytest.raises(ParamsError, match=r"aqi.standard='eu'"):
        parse_params({"aqi": {"standard": "eu"}})
    with pytest.raises(ParamsError, match=r"seasonal.bogus=1: unknown key"):
        parse_params({"seasonal": {"bogus": 1}})
    with pytest.raises(ParamsError, match=r"risk.cutoffs.yellow=10.0"):
        parse_params({"risk": {"cutoffs": {"yellow": 10}}})


def _run(city: CityModels, steps: list) -> list[np.ndarray]:
    out = []
    for step in steps:
        for f in step:
            out.append(city.update_frame(f).score)
        city.tick()
    return out


def test_stack_gateway_snapshots_round_trip() -> None:
    table = loop_table(50, per_gateway=10)
    params = load_params()
    steps = list(loop_stream(table, start=86400.0 * 3, duration_s=3600.0, seed=2))
    k = len(steps) // 2
    whole = _run(CityModels(table, params, seed=1, multivariate=False), steps)
    a = CityModels(table, params, seed=1, multivariate=False)
    _run(a, steps[:k])
    snaps = {
        g: orjson.dumps(a.snapshot(table.gateway_sensors(g))) for g in sorted(set(table.gateway))
    }
    b = CityModels(table, params, seed=1, multivariate=False)
    for raw in snaps.values():
        b.restore(orjson.loads(raw))
    b.watermark = a.watermark
    rest = _run(b, steps[k:])
    n_first = sum(len(s) for s in steps[:k])
    for x, y in zip(whole[n_first:], rest, strict=True):
        assert np.array_equal(x, y, equal_nan=True)


def test_stack_tick_outputs() -> None:
    table = loop_table(30)
    city = CityModels(table, load_params(), multivariate=False)
    for step in loop_stream(table, start=86400.0 * 3, duration_s=1800.0, seed=0):
        for f in step:
            city.update_frame(f)
    t = city.tick()
    assert t.risk.risk.shape == (3,) and ((t.risk.risk >= 0) & (t.risk.risk <= 100)).all()
    assert set(t.risk.colour.tolist()) <= {"none", "blue", "yellow", "orange", "red"}
    assert np.isfinite(t.indicators["congestion_city"])
    rec = t.risk.to_records(t.ts)
    assert orjson.loads(orjson.dumps(rec))[0]["district"] == "D01"


def test_stack_with_forest_is_batch_cut_invariant_and_round_trips() -> None:
    """The full stack (the forest fed from the spatial detector's windows) gives the same
    scores whatever the batch cuts, and a snapshot taken midway restores the same state."""
    table = loop_table(40, per_gateway=10)
    params = load_params()
    params = replace(
        params,
        multivariate=replace(params.multivariate, fit_after=40, min_sensor_windows=2),
    )
    steps = list(loop_stream(table, start=86400.0 * 3, duration_s=3 * 3600.0, seed=4))
    frames = [f for step in steps for f in step]

    def run(city: CityModels, frames: list, per: int) -> tuple[np.ndarray, np.ndarray]:
        sc, mv = [], []
        for a in range(0, len(frames), per):
            chunk = frames[a : a + per]
            sensor = np.concatenate([city.table.lookup(f.sensor_id) for f in chunk])
            ts = np.concatenate([f.ts for f in chunk])
            vals = np.column_stack(
                [np.concatenate([f.metrics[m] for f in chunk]) for m in chunk[0].metrics]
            )
            r = city.update("loop", sensor, ts, vals)
            sc.append(r.score)
            mv.append(r.multivariate)
        return np.concatenate(sc), np.concatenate(mv)

    s1, m1 = run(CityModels(table, params, seed=3), frames, 1)
    s2, m2 = run(CityModels(table, params, seed=3), frames, 7)
    assert np.array_equal(s1, s2, equal_nan=True)
    assert np.array_equal(m1, m2, equal_nan=True)
    assert np.isfinite(m1).sum() > 100  # the forest was fitted and scored readings

    k = len(frames) // 2
    a = CityModels(table, params, seed=3)
    run(a, frames[:k], 5)
    b = CityModels(table, params, seed=3)
    for g in sorted(set(table.gateway)):
        b.restore(orjson.loads(orjson.dumps(a.snapshot(table.gateway_sensors(g)))))
    b.watermark = a.watermark
    s3, m3 = run(b, frames[k:], 5)
    n_first = sum(len(f.ts) for f in frames[:k])
    assert np.array_equal(s3, s1[n_first:], equal_nan=True)
    assert np.array_equal(m3, m1[n_first:], equal_nan=True)


def test_sensors_feed_alerts_only_after_warm_up() -> None:
    table = loop_table(30)
    params = load_params()
    params = replace(params, alerts=replace(params.alerts, warmup_s=600.0))
    city = CityModels(table, params, multivariate=False)
    start = 86400.0 * 3
    for step in loop_stream(table, start=start, duration_s=900.0, seed=0):
        for f in step:
            city.update_frame(f)
        t = city.tick()
        assert city.warmed(t.ts).all() == (t.ts - start >= 600.0)
        if t.ts - start < 600.0:
            assert t.alerts == [] and (t.risk.risk == 0).all()
    snap = orjson.loads(orjson.dumps(city.snapshot(list(table.ids))))
    other = CityModels(table, params, multivariate=False)
    other.restore(snap)
    assert other.warmed(start + 600.0).all()


def test_power_alerts_come_from_feeder_voltage() -> None:
    # 6 feeders in D1, 6 in D2 (15 s); D1's feeders sag below 10.5 kV after 90 minutes
    ids = [f"PW{i}" for i in range(12)]
    table = SensorTable.of(ids, "power", district=["D1"] * 6 + ["D2"] * 6, interval_s=15.0)
    params = load_params()
    assert params.alerts.power_min_kv == 10.5
    city = CityModels(table, params, multivariate=False)
    rng = np.random.default_rng(1)
    opened = []
    for k in range(int(2 * 3600 / 15)):
        t = 86400.0 * 3 + 15.0 * k
        volt = np.full(12, 10.8) + 0.02 * rng.standard_normal(12)
        load = 5.0 + 0.05 * rng.standard_normal(12)
        if t - 86400.0 * 3 >= 5400.0:
            volt[:6] -= 0.5  # an overloaded feeder's voltage sags: 10.3 kV
            load[:6] *= 1.3
        city.update("power", np.arange(12), np.full(12, t), np.column_stack([load, volt]))
        opened += [e for e in city.tick(t).alerts if e["event"] == "opened"]
    # one alert, in D1, about a minute after the sag (the window close plus open_after_s or
    # corroboration by several feeders); D2's normal feeders raise nothing
    assert [(e["district"], e["type"]) for e in opened] == [("D1", "power")]
    assert 5400.0 <= opened[0]["ts"] - 86400.0 * 3 <= 5400.0 + 240.0
    # off: power alerts from the anomaly scores again (no voltage rule)
    off = replace(params, alerts=replace(params.alerts, power_min_kv=0.0))
    assert CityModels(table, off, multivariate=False).signals(0.0, np.zeros(12, np.uint16)) == {}


def test_out_of_range_values_do_not_train_the_detectors() -> None:
    # a loop reads normally, then 10 physically impossible flows (a fault), then normally
    # again: the fault is flagged, and the readings after it score as before it
    table = SensorTable.of(["L0", "L1", "L2", "L3"], "loop", interval_s=30.0)
    city = CityModels(table, load_params(), multivariate=False)
    rng = np.random.default_rng(2)
    after = []
    for k in range(400):
        x = np.column_stack(
            [
                800 + 40 * rng.standard_normal(4),
                50 + rng.standard_normal(4),
                10 + 0.3 * rng.standard_normal(4),
            ]
        )
        if 300 <= k < 310:
            x[0, 0] = 20000.0  # flow far beyond the physical range
        r = city.update("loop", np.arange(4), np.full(4, 86400.0 * 3 + 30.0 * k), x)
        if 300 <= k < 310:
            assert r.flags[0] & OUT_OF_RANGE
        if k >= 312:
            after.append(r.seasonal[0])
    assert np.nanmax(after) < 0.9
