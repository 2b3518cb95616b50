"""Retention (TTL where supported, partition drops everywhere) and the schema's documentation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from store.base import Store
from store.catalog import TABLES, VIEWS
from store.retention import (
    RetentionPolicy,
    apply_ttl,
    current_ttl,
    drop_expired,
    expired_partitions,
    partition_end,
)
from store.synth import reading_chunks

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
DAY0 = 1767830400  # 2026-01-08


def test_policy_validation() -> None:
    RetentionPolicy(raw_days=30, rollup_1m_days=90, rollup_1h_days=0)
    with pytest.raises(ValueError, match="rollup_1m_days=10 is shorter than raw_days=30"):
        RetentionPolicy(raw_days=30, rollup_1m_days=10)
    with pytest.raises(ValueError, match="raw_days must be an integer >= 0"):
        RetentionPolicy(raw_days=-1)


def test_partition_end() -> None:
    assert partition_end("20260108") == dt.datetime(2026, 1, 9)
    assert partition_end("202612") == dt.datetime(2027, 1, 1)


def _load_days(store: Store, city, days: int) -> None:  # type: ignore[no-untyped-def]
    for table, cols in reading_chunks(city, start=DAY0, days=days, step_s=3600):
        store.insert(table, cols)


def test_drop_expired_partitions(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    _load_days(store, default_city, 5)  # 2026-01-08 .. 2026-01-12
    policy = RetentionPolicy(raw_days=2, rollup_1m_days=3, rollup_1h_days=0)
    now = dt.datetime(2026, 1, 13, 12, 0)  # keep raw from 01-11 12:00, 1m from 01-10 12:00
    gone = drop_expired(store, policy, now=now)
    by_table = {(e.table, e.partition) for e in gone}
    assert ("readings_traffic", "20260110") in by_table
    assert ("readings_traffic", "20260111") not in by_table  # partly inside the window
    assert ("dash_traffic_sensor_1m", "20260110") in by_table  # the screen's copy goes with raw
    assert ("dash_traffic_sensor_1m", "20260111") not in by_table
    assert ("rollup_traffic_sensor_1m", "20260109") in by_table
    assert ("rollup_traffic_sensor_1m", "20260110") not in by_table
    assert not any(t.endswith("_1h") for t, _ in by_table)
    days = store.query("SELECT DISTINCT toYYYYMMDD(ts) AS d FROM readings_traffic ORDER BY d")
    assert list(days["d"]) == [20260111, 20260112]
    hours = store.query("SELECT count() AS n FROM (SELECT ts FROM rollup_traffic_district_1h "
                        "GROUP BY ts)")
    assert int(hours["n"].iloc[0]) == 5 * 24  # hourly rollups kept forever
    assert expired_partitions(store, policy, now=now) == []


def test_ttl_where_supported(store: Store) -> None:
    policy = RetentionPolicy(raw_days=30, rollup_1m_days=90)
    changed = apply_ttl(store, policy)
    if store.backend == "clickhouse":  # 18.16: no TTL, partition drops only
        assert changed == []
        return
    assert "readings_traffic" in changed and "rollup_traffic_sensor_1h" not in changed
    assert "toIntervalDay(30)" in (current_ttl(store, "readings_traffic") or "")
    assert "toIntervalDay(90)" in (current_ttl(store, "rollup_utility_district_1m") or "")
    assert apply_ttl(store, policy) == []  # idempotent
    # expired rows go; recent ones stay
    old = np.array(["2020-01-01T00:00:00"], dtype="datetime64[s]")
    new = np.array([np.datetime64("now", "s")])
    for ts in (old, new):
        store.insert("readings_traffic", {
            "ts": ts, "sensor_id": np.array(["TR-S000001"], dtype=object),
            "gateway": np.array(["TR-G0001"], dtype=object), "seq": np.array([1], np.uint64),
            "flow_vph": np.array([1.0]), "speed_kmh": np.array([1.0]),
            "occupancy_pct": np.array([1.0]),
        })
    store.command("OPTIMIZE TABLE readings_traffic FINAL")
    assert int(store.query("SELECT count() AS n FROM readings_traffic")["n"].iloc[0]) == 1
    assert RetentionPolicy() and apply_ttl(store, RetentionPolicy())  # 0 days removes the TTL
    assert current_ttl(store, "readings_traffic") is None


def test_every_column_is_documented(store: Store) -> None:
    df = store.query(
        "SELECT c.table AS table, c.name AS name, c.comment AS comment, t.engine AS engine "
        "FROM system.columns AS c ANY LEFT JOIN (SELECT name AS table, engine FROM system.tables "
        "WHERE database = currentDatabase()) AS t USING table "
        "WHERE c.database = currentDatabase()"
    )
    doc = DOC.read_text()
    for table, name, comment, engine in df.itertuples(index=False):
        if engine in ("View", "MaterializedView"):
            assert table in VIEWS, f"view {table} is not described in store/catalog.py"
            continue
        assert table in TABLES, f"table {table} is not described in store/catalog.py"
        assert comment == TABLES[table].columns.get(name), f"{table}.{name}: {comment!r}"
        assert f"`{name}`" in doc or "<metric>_" in doc, f"{table}.{name} not in analysts.md"
    for table in TABLES:
        if not table.startswith("rollup_"):
            assert table in doc, f"{table} not in docs/analysts.md"
    if store.backend == "chdb":  # table comments need ClickHouse >= 22
        t = store.query("SELECT name, comment FROM system.tables WHERE database = "
                        "currentDatabase() AND engine NOT LIKE '%View'")
        for name, comment in t.itertuples(index=False):
            assert comment == TABLES[name].about, name
