"""``citybrain bench warehouse`` with a small workload (one day, a twentieth of the reading rate):
recorded by the simulator, loaded by backfill, asked on raw and rollup (no timing assertions)."""

from __future__ import annotations

import pytest

NAMES = ("record_readings_per_s", "backfill_readings_per_s", "raw_query_s", "rollup_query_s",
         "raw_rows_read", "rollup_rows_read", "rollup_speedup")


@pytest.mark.services
def test_warehouse_bench_backfills_a_recording(clickhouse_hostport: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import warehouse
    from store.server import ServerStore

    monkeypatch.setenv("CITYBRAIN_TEST_CLICKHOUSE", clickhouse_hostport)
    lines = list(warehouse.run(runs=1, days=1, divisor=20))
    got = {line["name"]: line for line in lines}
    assert set(NAMES) <= got.keys(), got.keys()
    for name in NAMES:
        assert got[name]["value"] > 0, got[name]
    traffic = got["raw_rows_read"]["traffic_readings"]
    assert got["raw_rows_read"]["value"] >= traffic > 0  # the raw query scans every reading
    assert got["rollup_rows_read"]["value"] < traffic / 10  # ... the rollup a few rows a day
    assert got["rollup_speedup"]["same_reading_counts"] is True
    assert got["rollup_speedup"]["max_abs_diff_kmh"] < 1e-6
    assert "backfill" in got["raw_query_s"]["source"]
    host, _, port = clickhouse_hostport.rpartition(":")
    s = ServerStore(host=host, port=int(port), database="default")
    try:  # the bench database is gone
        left = s.query("SELECT name FROM system.databases WHERE name LIKE 'bench_wh_%'")
    finally:
        s.close()
    assert not left["name"].tolist()


def test_services_helper_rejects_unknown_service() -> None:
    from bench._services import running

    with pytest.raises(ValueError, match="unknown service"), running("postgres"):
        pass
