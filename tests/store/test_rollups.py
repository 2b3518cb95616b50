"""Rollups on both backends: equal to the raw data, duplicates counted until repaired, and the
migration fills them from data stored before it."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from store.base import Store
from store.rollups import ROLLUPS, SCREEN_TABLES, check, repair, rollup
from store.schema import DDL_DIR, apply_schema, migrations
from store.synth import reading_chunks

START = 1767830400  # 2026-01-08 00:00 UTC


def _load(store: Store, city, *, days: float = 0.25, step_s: int = 600, start: int = START  # type: ignore[no-untyped-def]
          ) -> dict[str, int]:
    rows: dict[str, int] = {}
    for table, cols in reading_chunks(city, start=start, days=days, step_s=step_s):
        rows[table] = rows.get(table, 0) + store.insert(table, cols)
    return rows


def _compare(store: Store) -> None:
    """Every rollup (and the screen's minute tables) equals the same aggregate over raw FINAL
    (counts and means)."""
    for r in (*ROLLUPS, *SCREEN_TABLES):
        m = r.metrics[0]
        exact = store.query(
            f"SELECT {r.key} AS k, ts, readings, {m}_sum AS s, {m}_count AS c "
            f"FROM ({r.aggregate_select(final=True)}) ORDER BY k, ts"
        )
        got = store.query(
            f"SELECT {r.key} AS k, ts, sum(readings) AS readings, sum({m}_sum) AS s, "
            f"sum({m}_count) AS c FROM {r.table} GROUP BY k, ts ORDER BY k, ts"
        )
        assert len(got) == len(exact) > 0, r.table
        assert (got["readings"].to_numpy() == exact["readings"].to_numpy()).all(), r.table
        assert (got["c"].to_numpy() == exact["c"].to_numpy()).all(), r.table
        np.testing.assert_allclose(got["s"].to_numpy(), exact["s"].to_numpy(), rtol=1e-9)


def test_rollups_match_raw(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    _load(store, default_city)
    _compare(store)
    assert all(s.ok for s in check(store))
    # districts come from dim_sensors
    d = store.query("SELECT DISTINCT district FROM rollup_traffic_district_1h ORDER BY district")
    assert list(d["district"]) == sorted({x.id for x in default_city.districts})


def test_duplicates_are_counted_until_repaired(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    _load(store, default_city)
    # redeliver one frame's worth of traffic readings (same sensor_id, ts, seq)
    table, cols = next(reading_chunks(default_city, start=START, days=0.25, step_s=600))
    dup = {k: v[:500] for k, v in cols.items()}
    store.insert(table, dup)
    bad = [s for s in check(store) if not s.ok]
    assert [(s.domain, s.day, s.rollup - s.raw) for s in bad] == [
        ("traffic", dt.date(2026, 1, 8), 500)
    ]
    screen = store.query("SELECT sum(readings) AS n FROM dash_traffic_sensor_1m")
    raw = store.query("SELECT count() AS n FROM readings_traffic FINAL")
    assert int(screen["n"].iloc[0]) - int(raw["n"].iloc[0]) == 500  # counted twice there too
    assert repair(store) == 1
    assert all(s.ok for s in check(store))
    _compare(store)
    # a second repair finds nothing to do and writes nothing
    before = store.query(f"SELECT count() AS n FROM {rollup('traffic', 'sensor', '1m').table}")
    assert repair(store, [dt.date(2026, 1, 8)]) == 3  # every domain of that day
    assert repair(store, [dt.date(2026, 1, 9)]) == 0  # no raw data: left alone
    after = store.query(f"SELECT count() AS n FROM {rollup('traffic', 'sensor', '1m').table}")
    assert int(after["n"].iloc[0]) == int(before["n"].iloc[0])


def test_migration_fills_rollups_from_existing_data(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str, default_city  # type: ignore[no-untyped-def]
) -> None:
    """Upgrade path: data stored under migrations 001-003, then 004 creates the rollups."""
    from store.dimensions import load_dimensions
    from tests.store.conftest import _drop, _open

    old = tmp_path / "ddl"
    old.mkdir()
    for m in migrations():
        if m.version < 4:
            shutil.copy(m.path, old / m.path.name)
    for backend in ("server", "chdb"):
        s = _open(backend, request, unique + backend[0])
        try:
            assert apply_schema(s, ddl_dir=old) == [1, 2, 3]
            load_dimensions(s, default_city)
            _load(s, default_city)
            applied = apply_schema(s, ddl_dir=DDL_DIR)
            assert 4 in applied
            _compare(s)
            # later inserts go through the views, counted once (a row stored in the same second
            # as the view's creation may count twice until repaired: wait that second out)
            time.sleep(1.1)
            _load(s, default_city, days=0.1, step_s=300, start=START + 86400)
            assert all(x.ok for x in check(s)), backend
        finally:
            _drop(s)


def test_apply_schema_is_idempotent(store: Store) -> None:
    assert apply_schema(store) == []


def test_maintain_repairs_and_drops(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    from citybrain.commands.maintain import maintain_once
    from config.settings import load_settings

    _load(store, default_city)
    table, cols = next(reading_chunks(default_city, start=START, days=0.25, step_s=600))
    store.insert(table, {k: v[:100] for k, v in cols.items()})  # a redelivery
    settings = load_settings(retention_raw_days=1, retention_rollup_1m_days=2)
    msg = maintain_once(store, settings, days=3, now=dt.datetime(2026, 1, 10, 1, 0))
    # 2026-01-08 of the three raw tables and of the screen's three minute tables
    assert "dropped 6 partition(s)" in msg
    assert "repaired rollups of 0 day(s)" in msg  # its raw rows are gone: nothing to compare
    assert all(s.ok or s.raw == 0 for s in check(store))
    store2_msg = maintain_once(store, load_settings(), days=3, now=dt.datetime(2026, 1, 10))
    assert "dropped 0 partition(s)" in store2_msg
