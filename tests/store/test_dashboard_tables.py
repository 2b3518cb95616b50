"""The screen's time-first minute tables (``dash_<domain>_sensor_1m``, config/ddl/005) on both
backends: the same sums as the per-sensor 1-minute rollups, kept by their views, filled by the
migration from data stored before it, and cheap to read for a window of minutes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.domains import DOMAINS
from store import queries
from store.base import Store
from store.rollups import rollup
from store.schema import DDL_DIR, apply_schema, migrations
from store.synth import reading_chunks

START = 1767830400  # 2026-01-08 00:00 UTC


def _load(store: Store, city, *, days: float = 0.25, step_s: int = 600, start: int = START  # type: ignore[no-untyped-def]
          ) -> None:
    for table, cols in reading_chunks(city, start=start, days=days, step_s=step_s):
        store.insert(table, cols)


def _sums(store: Store, table: str, cols: list[str]) -> pd.DataFrame:
    aggs = ", ".join(f"sum({c}) AS {c}" for c in cols)
    return store.query(f"SELECT sensor_id, ts, {aggs} FROM {table} GROUP BY sensor_id, ts "
                       "ORDER BY sensor_id, ts")


def _assert_equal_to_rollup(store: Store) -> None:
    for d in DOMAINS:
        r = rollup(d, "sensor", "1m")
        cols = [c for c in r.columns() if c not in ("ts", "sensor_id")]
        want = _sums(store, r.table, cols)
        got = _sums(store, f"dash_{d}_sensor_1m", cols)
        assert len(got) == len(want) > 0, d
        assert (got["sensor_id"].to_numpy() == want["sensor_id"].to_numpy()).all(), d
        assert (got["ts"].to_numpy() == want["ts"].to_numpy()).all(), d
        for c in cols:
            if c.endswith("_sum"):
                np.testing.assert_allclose(got[c].to_numpy(dtype=float),
                                           want[c].to_numpy(dtype=float), rtol=1e-9,
                                           err_msg=f"{d}.{c}")
            else:
                assert (got[c].to_numpy() == want[c].to_numpy()).all(), f"{d}.{c}"


def test_dash_tables_equal_the_rollups(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    _load(store, default_city)
    _assert_equal_to_rollup(store)
    # a redelivered frame counts twice in both, like the rollups until they are repaired
    table, cols = next(reading_chunks(default_city, start=START, days=0.25, step_s=600))
    store.insert(table, {k: v[:300] for k, v in cols.items()})
    _assert_equal_to_rollup(store)


def test_windows_read_the_dash_tables(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    """Window means over the time-first tables equal the same windows over the rollups."""
    _load(store, default_city, days=0.1, step_s=60)
    t = START + 2 * 3600 + 17
    fns = (queries.traffic_window, queries.environment_window, queries.utility_window)
    got = [fn(store, t) for fn in fns] + [queries.congestion_trend(store, t - 3600, t)]
    assert queries.SENSOR_MINUTES.startswith("dash_")
    saved = queries.SENSOR_MINUTES
    queries.SENSOR_MINUTES = "rollup_{domain}_sensor_1m"
    try:
        want = [fn(store, t) for fn in fns] + [queries.congestion_trend(store, t - 3600, t)]
    finally:
        queries.SENSOR_MINUTES = saved
    for g, w in zip(got, want, strict=True):
        key = "sensor_id" if "sensor_id" in g.columns else "minute"
        g = g.sort_values(key).reset_index(drop=True)
        w = w.sort_values(key).reset_index(drop=True)
        assert len(g) == len(w) > 0
        pd.testing.assert_frame_equal(g, w, check_dtype=False, rtol=1e-9)


def _rows_read(store: Store, marker: str) -> int:
    """Rows the last finished query containing ``marker`` read (the server's query log, which
    the test server keeps). The finish row can reach the log just after the client has the
    result, so the log is flushed and asked again for a few seconds before the test fails."""
    for _ in range(20):
        store.command("SYSTEM FLUSH LOGS")
        rows = store.query(f"SELECT read_rows FROM system.query_log WHERE type = 2 AND query "
                           f"LIKE '%{marker}%' AND query NOT LIKE '%query_log%'")
        if len(rows):
            return int(rows["read_rows"].iloc[-1])
        time.sleep(0.5)
    raise AssertionError(f"query {marker} never reached system.query_log")


def test_a_window_reads_only_its_minutes(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    """Ordered by time first, a 5-minute window of one merged day reads a small part of it."""
    if store.backend != "clickhouse":
        pytest.skip("rows read are counted through the server's query log")
    _load(store, default_city, days=1, step_s=300)
    store.command("OPTIMIZE TABLE dash_traffic_sensor_1m FINAL")
    total = int(store.query("SELECT count() AS n FROM dash_traffic_sensor_1m")["n"].iloc[0])
    marker = f"dash_window_probe_{store.database}"
    store.query(f"SELECT /* {marker} */ sensor_id, sum(readings) AS n FROM "
                f"dash_traffic_sensor_1m WHERE ts >= toDateTime({START + 43200}) AND ts <= "
                f"toDateTime({START + 43500}) GROUP BY sensor_id", settings={"log_queries": 1})
    assert 0 < _rows_read(store, marker) < total / 10


def test_migration_fills_dash_tables_from_existing_data(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str, default_city  # type: ignore[no-untyped-def]
) -> None:
    """Upgrade path: data stored under the earlier migrations, then 005 creates and fills the
    tables; later inserts reach them through the views, counted once."""
    from store.dimensions import load_dimensions
    from tests.store.conftest import _drop, _open

    old = tmp_path / "ddl"
    old.mkdir()
    for m in migrations():
        if m.version < 5:  # later migrations (011's views read the dash tables) need 005
            shutil.copy(m.path, old / m.path.name)
    for backend in ("server", "chdb"):
        s = _open(backend, request, unique + backend[0])
        try:
            assert 5 not in apply_schema(s, ddl_dir=old)
            load_dimensions(s, default_city)
            _load(s, default_city)
            assert apply_schema(s, ddl_dir=DDL_DIR)[0] == 5
            _assert_equal_to_rollup(s)
            # a row stored in the second the view was created may count twice: wait it out
            time.sleep(1.1)
            _load(s, default_city, days=0.1, step_s=300, start=START + 86400)
            _assert_equal_to_rollup(s)
        finally:
            _drop(s)


def _fresh_frame(df: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
    return {str(d): (int(a), int(b), int(n)) for d, a, b, n in zip(
        df["domain"], df["newest"], df["arrived"], df["n"], strict=True)}


def test_freshness_from_parts_equals_the_query(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    """The screen's freshness, kept per part (``dashboards.data.FreshnessCache``), equals the
    plain query over the raw tables: as inserted, after more inserts (late and new data with
    their own arrival times), and after the parts are merged."""
    from dashboards.data import FreshnessCache

    _load(store, default_city, days=0.1, step_s=60)
    cache = FreshnessCache()

    def check() -> dict[str, tuple[int, int, int]]:
        parts = queries.readings_parts(store)
        want = _fresh_frame(queries.freshness(store, queries.newest_of_parts(parts)))
        got = _fresh_frame(cache.get(store, parts))
        assert got == want
        return got

    first = check()
    assert all(v[2] > 0 for v in first.values()), first
    # the span of the data, from the parts' index, is the data's
    span = store.query("SELECT toUInt32(min(ts)) AS lo, toUInt32(max(ts)) AS hi "
                       "FROM readings_traffic")
    assert queries.data_span(store) == (int(span["lo"].iloc[0]), int(span["hi"].iloc[0]))
    newest = max(v[0] for v in first.values())
    table, cols = next(reading_chunks(default_city, start=START, days=0.1, step_s=60))
    n = 50
    later = int(time.time()) + 86400  # arrival times after the loaded rows' (now)
    for ts, arrived in ((newest + 30, later + 95), (newest - 700, later + 400),
                        (newest - 200, later + 300)):
        batch = {k: v[:n].copy() for k, v in cols.items()}
        batch["ts"] = np.full(n, ts, dtype="datetime64[s]")
        batch["seq"] = batch["seq"] + 10_000_000 + ts % 1000
        batch["ingested_at"] = np.full(n, arrived, dtype="datetime64[s]")
        store.insert(table, batch)
        got = check()
    domain = table.removeprefix("readings_")
    # the newest data arrived at later + 95; the late batch that arrived at later + 400 is
    # older than the window; the one that arrived at later + 300 is inside it
    assert got[domain][0] == newest + 30 and got[domain][1] == later + 300, got
    read = cache.read_parts
    check()
    assert cache.read_parts == read  # nothing new: nothing read
    for t in queries.READINGS_TABLES:
        store.command(f"OPTIMIZE TABLE {t} FINAL")
    check()
    # each merged part is the sum of the parts it replaced, all kept: nothing read
    assert cache.read_parts == read
    fresh = FreshnessCache()  # a cold cache reads the merged parts
    parts = queries.readings_parts(store)
    assert _fresh_frame(fresh.get(store, parts)) == _fresh_frame(cache.get(store, parts))
    assert 0 < fresh.read_parts <= len(parts)


def test_freshness_of_a_part_reads_only_that_part(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    """``_part IN (...)`` selects parts before reading: asking a small new part of a merged
    day reads that part, not the day."""
    if store.backend != "clickhouse":
        pytest.skip("rows read are counted through the server's query log")
    _load(store, default_city, days=1, step_s=300)
    store.command("OPTIMIZE TABLE readings_traffic FINAL")
    table, cols = next(reading_chunks(default_city, start=START, days=0.1, step_s=60))
    assert table == "readings_traffic"
    store.insert(table, {k: v[:100] for k, v in cols.items()})
    parts = queries.readings_parts(store)
    tr = parts[parts["domain"] == "traffic"]
    total = int(tr["rows"].sum())
    small = tr[tr["rows"] == tr["rows"].min()].iloc[0]
    marker = f"fresh_part_probe_{store.database}"
    sql = queries.freshness_of_parts_sql({"traffic": {str(small["part"]): 0}})
    got = store.query(f"SELECT /* {marker} */ * FROM ({sql})", settings={"log_queries": 1})
    assert int(got["n"].sum()) == int(small["rows"]) == 100
    assert 0 < _rows_read(store, marker) < total / 10


def test_readings_trend_sums_the_three_district_rollups(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    """The availability sparkline's readings per minute (one ``merge()`` read) equal the sum
    of the three district rollups asked one by one."""
    _load(store, default_city, days=0.05, step_s=60)
    lo, hi = START - 1, START + 3000
    got = queries.readings_trend(store, lo, hi)
    want: dict[int, int] = {}
    for d in DOMAINS:
        df = store.query(f"SELECT toUInt32(ts) AS minute, sum(readings) AS r FROM "
                         f"rollup_{d}_district_1m WHERE ts > toDateTime({lo}) AND ts <= "
                         f"toDateTime({hi}) GROUP BY minute")
        for m, r in zip(df["minute"].astype(int), df["r"].astype(int), strict=True):
            want[m] = want.get(m, 0) + r
    assert len(got) == len(want) > 10
    assert dict(zip(got["minute"].astype(int), got["readings"].astype(int), strict=True)) == want
    assert (np.diff(got["minute"].to_numpy(dtype=np.int64)) > 0).all()
