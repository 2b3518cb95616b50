"""``citybrain backfill``: the parallel path (models split by sensor kind over worker processes,
city-wide ticks in the coordinator) stores exactly the rows of the serial path.

The model parameters are made eager (short warm-up, low thresholds, early forest fits, quick
health checks) so that a quarter-hour recording produces every derived output: anomalies,
sensor health, district risk and alert events; small model batches give many ticks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

EAGER = {
    "health": {"stuck_readings": 3, "spike_k": 3.0, "dropout_intervals": 2.0},
    "seasonal": {"min_count": 2},
    "multivariate": {"fit_after": 16, "refit_every_s": 600.0, "min_sensor_windows": 1,
                     "score_every": 1},
    "thresholds": {"traffic": 0.5, "environment": 0.5, "utility": 0.5},
    "alerts": {"warmup_s": 60.0, "open_after_s": 0.0, "aqi_level": 0.0},
}
SKIP_COLUMNS = ("ingested_at", "loaded_at")  # insert time


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from config.city import load_city
    from sensors_sim.engine import Simulator
    from sensors_sim.recording import record
    from sensors_sim.scenario import load_scenario

    path = tmp_path_factory.mktemp("rec") / "bad.cbr"
    record(Simulator(load_city(), load_scenario("bad_day"), seed=5, duration=900), path)
    return path


@pytest.fixture()
def eager_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config/models.yaml with EAGER on top (the worker processes are forked: they see it)."""
    import models.params as params

    doc = yaml.safe_load(params.DEFAULT_PATH.read_text())
    for section, values in EAGER.items():
        doc[section].update(values)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(params, "DEFAULT_PATH", path)


def _rows(store, table: str) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    df = store.query(f"SELECT * FROM {table} FINAL")
    df = df.drop(columns=[c for c in SKIP_COLUMNS if c in df.columns])
    return sorted(tuple(repr(v) for v in row) for row in df.itertuples(index=False))


def _rollup(store, table: str) -> dict[tuple[str, str], list[float]]:  # type: ignore[no-untyped-def]
    cols = store.query(f"SELECT name FROM system.columns WHERE database = '{store.database}' "
                       f"AND table = '{table}'")["name"].tolist()
    keys = [c for c in cols if c in ("ts", "sensor_id", "district")]
    vals = [c for c in cols if c not in keys]
    df = store.query(f"SELECT {', '.join(keys)}, "
                     f"{', '.join(f'toFloat64(sum({c})) AS {c}' for c in vals)} "
                     f"FROM {table} GROUP BY {', '.join(keys)}")
    return {tuple(str(r[k]) for k in keys): [float(r[v]) for v in vals]  # type: ignore[misc]
            for _, r in df.iterrows()}


@pytest.mark.usefixtures("eager_params")
def test_parallel_equals_serial(recording: Path, clickhouse_hostport: str, unique: str) -> None:
    import numpy as np

    from citybrain.commands.backfill import backfill
    from config.settings import load_settings
    from store.server import ServerStore

    host, _, port = clickhouse_hostport.rpartition(":")
    summaries, stores = {}, {}
    try:
        for name, workers in (("serial", 1), ("parallel", 2)):
            db = f"{unique}_{name}"
            settings = load_settings(store="clickhouse", anomaly_score=0.6,
                                     clickhouse_url=f"clickhouse://{clickhouse_hostport}/{db}")
            summaries[name] = backfill(settings, recording, progress=False, workers=workers,
                                       model_batch=10_000)
            stores[name] = ServerStore(host=host, port=int(port), database=db)
        serial, parallel = stores["serial"], stores["parallel"]
        assert summaries["serial"]["workers"] == ["serial"]
        assert len(summaries["parallel"]["workers"]) == 2  # type: ignore[arg-type]
        assert summaries["serial"]["rows"] == summaries["parallel"]["rows"]
        tables = serial.query(
            f"SELECT name FROM system.tables WHERE database = '{serial.database}' "
            "AND engine IN ('ReplacingMergeTree', 'SummingMergeTree') AND name NOT LIKE 'dim_%' "
            "ORDER BY name")["name"].tolist()
        derived = ("anomalies", "sensor_health", "district_risk", "alert_events", "indicators")
        assert set(derived) <= set(tables)
        for table in tables:
            if table.startswith(("rollup_", "dash_")):
                ra, rb = _rollup(serial, table), _rollup(parallel, table)
                assert ra.keys() == rb.keys(), table
                for k, v in ra.items():  # sums of floats: the insert blocks differ
                    np.testing.assert_allclose(rb[k], v, rtol=1e-9, err_msg=f"{table} {k}")
                continue
            a, b = _rows(serial, table), _rows(parallel, table)
            if table in derived or table.startswith("readings_"):
                assert a, f"{table} is empty: the test data do not exercise it"
            assert a == b, table
    finally:
        for s in stores.values():
            s.command(f"DROP DATABASE IF EXISTS {s.database}")
            s.close()


@pytest.mark.usefixtures("eager_params")
def test_wire_bytes_stores_the_same(recording: Path, clickhouse_hostport: str, unique: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """String columns sent to the server as numpy byte strings (``WIRE_BYTES``, the default,
    here through the parallel path's direct inserts) store exactly the rows that Python ``str``
    columns store (serial, ``WIRE_BYTES`` off): every table, every value."""
    import numpy as np

    import citybrain.backfill as engine
    from citybrain.commands.backfill import backfill
    from config.settings import load_settings
    from store.server import ServerStore

    host, _, port = clickhouse_hostport.rpartition(":")
    stores = {}
    try:
        for name, wire_bytes, workers in (("str", False, 1), ("bytes", True, 2)):
            monkeypatch.setattr(engine, "WIRE_BYTES", wire_bytes)
            db = f"{unique}_{name}"
            settings = load_settings(store="clickhouse", anomaly_score=0.6,
                                     clickhouse_url=f"clickhouse://{clickhouse_hostport}/{db}")
            backfill(settings, recording, progress=False, workers=workers, model_batch=10_000)
            stores[name] = ServerStore(host=host, port=int(port), database=db)
        ref, new = stores["str"], stores["bytes"]
        tables = ref.query(
            f"SELECT name FROM system.tables WHERE database = '{ref.database}' "
            "AND engine IN ('ReplacingMergeTree', 'SummingMergeTree') AND name NOT LIKE 'dim_%' "
            "ORDER BY name")["name"].tolist()
        assert {"readings_traffic", "readings_environment", "readings_utility", "indicators",
                "anomalies", "district_risk"} <= set(tables)
        for table in tables:
            if table.startswith(("rollup_", "dash_")):
                ra, rb = _rollup(ref, table), _rollup(new, table)
                assert ra.keys() == rb.keys(), table
                for k, v in ra.items():  # sums of floats: the insert blocks differ
                    np.testing.assert_allclose(rb[k], v, rtol=1e-9, err_msg=f"{table} {k}")
                continue
            a, b = _rows(ref, table), _rows(new, table)
            assert a == b, table
        ids = new.query("SELECT DISTINCT entity_type, name FROM indicators")
        assert set(ids["entity_type"]) >= {"sensor"}  # read back as str, not b'...'
        assert all(isinstance(v, str) for v in ids["name"])
    finally:
        for s in stores.values():
            s.command(f"DROP DATABASE IF EXISTS {s.database}")
            s.close()
