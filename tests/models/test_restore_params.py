"""A checkpoint taken before a parameter change restores everything but the changed model.

Workers restore per-gateway snapshots after a restart; an operator who tunes
``config/models.yaml`` between two runs must not turn that into a crash loop."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest

from models.base import ParamsChanged
from models.params import ModelParams, load_params
from models.sensors import SensorTable
from models.stack import CityModels
from models.synthetic import loop_stream, loop_table


def _fed(params: ModelParams, table: SensorTable, steps: list) -> CityModels:
    city = CityModels(table, params, seed=1, multivariate=False)
    for step in steps:
        for f in step:
            city.update_frame(f)
        city.tick()
    return city


def test_changed_health_params_start_health_cold_and_restore_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = loop_table(40, per_gateway=10)
    params = load_params()
    steps = list(loop_stream(table, start=86400.0 * 3, duration_s=1800.0, seed=4))
    a = _fed(params, table, steps)
    gateway = sorted(set(table.gateway))[0]
    snap = orjson.loads(orjson.dumps(a.snapshot(table.gateway_sensors(gateway))))

    health = replace(params.health, stuck_readings=params.health.stuck_readings + 1)
    changed = replace(params, health=health)
    b = CityModels(table, changed, seed=1, multivariate=False)
    fresh = orjson.loads(orjson.dumps(b.snapshot(table.gateway_sensors(gateway))))
    with caplog.at_level("WARNING", logger="models.stack"):
        cold = b.restore(snap)
    assert cold == ["loop.health"]
    assert "start cold" in caplog.text and "loop.health" in caplog.text
    after = orjson.loads(orjson.dumps(b.snapshot(table.gateway_sensors(gateway))))
    kind = after["kinds"]["loop"]
    # the unchanged models hold the checkpoint, the changed one its fresh state
    assert kind["seasonal"]["state"] == snap["kinds"]["loop"]["seasonal"]["state"]
    assert kind["spatial"]["state"] == snap["kinds"]["loop"]["spatial"]["state"]
    assert kind["health"]["state"] == fresh["kinds"]["loop"]["health"]["state"]
    assert kind["health"]["state"] != snap["kinds"]["loop"]["health"]["state"]


def test_same_params_restore_reports_nothing_cold() -> None:
    table = loop_table(20, per_gateway=10)
    params = load_params()
    a = _fed(params, table, list(loop_stream(table, start=86400.0 * 3, duration_s=600.0, seed=5)))
    snap = orjson.loads(orjson.dumps(a.snapshot(list(table.ids))))
    assert CityModels(table, params, seed=1, multivariate=False).restore(snap) == []


def test_params_changed_is_raised_before_any_state_changes() -> None:
    table = loop_table(20, per_gateway=10)
    params = load_params()
    a = _fed(params, table, list(loop_stream(table, start=86400.0 * 3, duration_s=600.0, seed=6)))
    snap = orjson.loads(orjson.dumps(a.snapshot(list(table.ids))))["kinds"]["loop"]["seasonal"]
    b = CityModels(table, params, seed=1, multivariate=False).kinds["loop"].seasonal
    snap["params"] = {**snap["params"], "bogus": 1}
    before = {k: np.copy(getattr(b, k)) for k in b._state_arrays}
    with pytest.raises(ParamsChanged):
        b.restore(snap)
    for k, v in before.items():
        assert np.array_equal(getattr(b, k), v, equal_nan=True)


def test_array_snapshot_writes_the_same_json_as_the_plain_one() -> None:
    """The worker's checkpoints use ``arrays=True`` (no Python lists built); the JSON must be
    byte-identical to the plain-data snapshot, NaN included, and restore the same state."""
    table = loop_table(40, per_gateway=10)
    params = load_params()
    a = _fed(params, table, list(loop_stream(table, start=86400.0 * 3, duration_s=3600.0, seed=7)))
    sensors = table.gateway_sensors(sorted(set(table.gateway))[1])
    plain = a.snapshot(sensors)
    arrays = a.snapshot(sensors, arrays=True)
    assert any(isinstance(v, np.ndarray)
               for v in arrays["kinds"]["loop"]["seasonal"]["state"].values())
    opt = orjson.OPT_SERIALIZE_NUMPY
    assert orjson.dumps(arrays, option=opt) == orjson.dumps(plain, option=opt)
    b = CityModels(table, params, seed=1, multivariate=False)
    b.restore(orjson.loads(orjson.dumps(arrays, option=opt)))
    assert orjson.dumps(b.snapshot(sensors)) == orjson.dumps(plain)
