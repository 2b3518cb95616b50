"""Migration 011 (cascaded rollup views) on both backends: the server's cascade form is probed,
a database upgraded from 010 ends with the same rollups as a fresh one, and repair stays exact
whether or not a correction row passes on to the views below."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest

from store.base import Store, version_tuple
from store.rollups import ROLLUPS, SCREEN_TABLES, UPSTREAM, check, check_cascade, repair
from store.schema import DDL_DIR, apply_schema, cascade_feature, migrations
from store.synth import reading_chunks
from tests.store.test_rollups import START, _compare, _load

TABLES = (*ROLLUPS, *SCREEN_TABLES)


def _sums(store: Store) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for r in TABLES:
        cols = [c for c in r.columns() if c not in ("ts", r.key)]
        df = store.query(f"SELECT toUInt32(ts) AS t, {r.key} AS k, "
                         + ", ".join(f"sum({c}) AS {c}" for c in cols)
                         + f" FROM {r.table} GROUP BY t, k ORDER BY t, k")
        out[r.table] = {c: df[c].to_numpy() for c in df.columns}
    return out


def _assert_same(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> None:
    assert a.keys() == b.keys()
    for table, cols in a.items():
        other = b[table]
        assert len(cols["t"]) == len(other["t"]) > 0, table
        for c, x in cols.items():
            if c.endswith("_sum"):
                np.testing.assert_allclose(x, other[c], rtol=1e-9, atol=1e-9, err_msg=table)
            else:  # keys, readings and counts: exactly
                assert (x == other[c]).all(), f"{table}.{c}"


def _redeliver(store: Store, city, n: int, start: int = START) -> None:  # type: ignore[no-untyped-def]
    for table, cols in reading_chunks(city, start=start, days=0.25, step_s=600):
        store.insert(table, {k: v[:n] for k, v in cols.items()})


def test_upstream_tables_come_first() -> None:
    order = [r.table for r in TABLES]
    assert set(UPSTREAM) <= set(order)
    for table, up in UPSTREAM.items():
        assert order.index(up) < order.index(table), table
    # exactly one table per domain reads the raw block
    assert sorted(set(order) - set(UPSTREAM)) == sorted(f"rollup_{d}_sensor_1m"
                                                        for d in ("environment", "traffic",
                                                                  "utility"))


def test_cascade_probe(store: Store) -> None:
    feature = cascade_feature(store)
    v = version_tuple(store.version())
    if v < (19,):
        assert feature == "cascade_view"  # ClickHouse 18.16
    elif v >= (26,):
        assert feature == "cascade_table"  # chDB 26.x
    left = store.query("SELECT count() AS n FROM system.tables WHERE database = currentDatabase() "
                       "AND name LIKE '_citybrain_cascade_probe%'")
    assert int(left["n"].iloc[0]) == 0
    # the five views per domain exist, the downstream ones read no raw table
    views = store.query("SELECT name, create_table_query AS q FROM system.tables "
                        "WHERE database = currentDatabase() AND engine = 'MaterializedView'")
    q = dict(zip(views["name"], views["q"], strict=True))
    for r in TABLES:
        assert r.view in q, r.view
        reads_raw = f"readings_{r.domain}" in q[r.view]
        assert reads_raw == (r.table not in UPSTREAM), r.view


def test_upgrade_from_010_equals_fresh(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str, default_city  # type: ignore[no-untyped-def]
) -> None:
    """The same inserts (with redeliveries, before and after the upgrade) into a database
    upgraded from 010 and into a fresh one: the same rollups, counted duplicates included, and
    the same exact ones after repair."""
    from store.dimensions import load_dimensions
    from tests.store.conftest import _drop, _open

    old = tmp_path / "ddl"
    old.mkdir()
    for m in migrations():
        if m.version <= 10:
            shutil.copy(m.path, old / m.path.name)
    for backend in ("server", "chdb"):
        up = _open(backend, request, unique + backend[0] + "u")
        fresh = _open(backend, request, unique + backend[0] + "f")
        try:
            assert 11 not in apply_schema(up, ddl_dir=old)
            assert 11 in apply_schema(fresh)
            for s in (up, fresh):
                load_dimensions(s, default_city)
                _load(s, default_city)
                _redeliver(s, default_city, 300)
            assert apply_schema(up, ddl_dir=DDL_DIR) == [11]
            for s in (up, fresh):
                _load(s, default_city, days=0.1, step_s=300, start=START + 86400)
                _redeliver(s, default_city, 200, start=START + 86400)
            _assert_same(_sums(up), _sums(fresh))
            for s in (up, fresh):
                assert all(c.ok for c in check_cascade(s))
                assert repair(s) > 0
                _compare(s)
            _assert_same(_sums(up), _sums(fresh))
        finally:
            _drop(up)
            _drop(fresh)


def test_repair_after_a_direct_insert_into_a_rollup(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    """An INSERT straight into the 1-minute rollup passes on to the tables below on current
    servers and not on 18.16; repair makes every table exact on both."""
    _load(store, default_city)
    store.command(
        "INSERT INTO rollup_traffic_sensor_1m (ts, sensor_id, readings, flow_vph_sum, "
        "flow_vph_count) SELECT ts, sensor_id, 7, 70.0, 7 FROM rollup_traffic_sensor_1m "
        "WHERE sensor_id IN (SELECT sensor_id FROM dim_sensors WHERE domain = 'traffic' "
        "ORDER BY sensor_id LIMIT 3) LIMIT 5"
    )
    bad = [(s.domain, s.day, s.rollup - s.raw) for s in check(store) if not s.ok]
    assert bad == [("traffic", dt.date(2026, 1, 8), 35)]
    behind = sorted((c.table, c.upstream - c.readings) for c in check_cascade(store) if not c.ok)
    if cascade_feature(store) == "cascade_view":  # 18.16: the direct insert went no further
        assert behind == [("dash_traffic_sensor_1m", 35), ("rollup_traffic_district_1m", 35),
                          ("rollup_traffic_sensor_1h", 35)]
    else:
        assert behind == []
    assert repair(store) == 1
    _compare(store)
    assert all(s.ok for s in check(store))
    assert all(c.ok for c in check_cascade(store))
    assert len(check_cascade(store)) == 12  # 4 cascaded tables x 3 domains, one day


def test_maintain_repairs_a_cascade_that_disagrees(store: Store, default_city) -> None:  # type: ignore[no-untyped-def]
    """The raw data and the 1-minute rollup agree, but a table below it does not (what a server
    upgraded from 18.16 shows, whose views pass rows on by the other form): ``maintain`` finds it
    with check_cascade, says so, and repairs the day."""
    from citybrain.commands.maintain import maintain_once
    from config.settings import load_settings

    _load(store, default_city)
    store.command(
        "INSERT INTO rollup_traffic_district_1m (ts, district, readings, flow_vph_sum, "
        "flow_vph_count) SELECT ts, district, 4, 40.0, 4 FROM rollup_traffic_district_1m LIMIT 2"
    )
    assert all(s.ok for s in check(store))
    assert ("rollup_traffic_district_1m", dt.date(2026, 1, 8)) in {
        (c.table, c.day) for c in check_cascade(store) if not c.ok}
    msg = maintain_once(store, load_settings(), days=3, now=dt.datetime(2026, 1, 8, 12, 0))
    assert "repaired rollups of 1 day(s)" in msg and "cascaded rollup table(s) disagreed" in msg
    assert all(c.ok for c in check_cascade(store))
    _compare(store)
    again = maintain_once(store, load_settings(), days=3, now=dt.datetime(2026, 1, 8, 12, 0))
    assert "repaired rollups of 0 day(s)" in again and "disagreed" not in again
