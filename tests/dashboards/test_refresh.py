"""The refresh's machinery gives the answers of the plain queries: the chunked trend cache, the
congestion trend weighted in numpy, and the queries run at once on a pool of connections."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from dashboards.data import TrendCache

T0 = 1767830400


def _minutes(lo: int, hi: int) -> pd.DataFrame:
    """A trend query over a fixed series: one row per minute starting in (lo, hi]."""
    first = (lo // 60 + 1) * 60
    m = np.arange(first, hi + 1, 60, dtype=np.int64)
    m = m[(m >= T0) & (m % 420 != 0)]  # some minutes without data
    return pd.DataFrame({"minute": m.astype(np.uint32), "value": np.sin(m / 977.0)})


def test_trend_cache_gives_the_direct_query() -> None:
    calls: list[tuple[int, int]] = []

    def fn(lo: int, hi: int) -> pd.DataFrame:
        calls.append((lo, hi))
        return _minutes(lo, hi)

    cache = TrendCache(chunk_s=60, seal_s=300)
    for newest in (T0 + 7200 + 37, T0 + 7200 + 95, T0 + 9000):
        for t in (newest, newest - 1500):
            lo = t - 3600
            want = _minutes(lo - lo % 60, t)
            want = want[want["minute"] > lo - lo % 60].reset_index(drop=True)
            calls.clear()
            got = cache.get("k", fn, lo, t, newest)
            pd.testing.assert_frame_equal(got, want)
            assert len(calls) <= 3, calls  # the missing minutes in one query, and the head
            calls.clear()
            again = cache.get("k", fn, lo, t, newest)
            pd.testing.assert_frame_equal(again, want)
            assert len(calls) <= 1, calls  # only the head, when there is one
            if t == newest:
                assert calls and calls[0][0] >= newest - 361  # five to six minutes


def test_trend_cache_with_five_minute_buckets() -> None:
    def fn(lo: int, hi: int) -> pd.DataFrame:
        b = np.arange((lo // 300 + 1) * 300, hi + 1, 300, dtype=np.int64)
        return pd.DataFrame({"bucket": b, "v": b % 7})

    cache = TrendCache()
    newest = T0 + 7200 + 42
    got = cache.get("env", fn, newest - 7200, newest, newest, chunk_s=300)
    want = fn(newest - 7200 - (newest - 7200) % 300 - 1, newest)
    want = want[want["bucket"] > newest - 7200 - (newest - 7200) % 60].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_congestion_trend_in_numpy_equals_the_sql(server_store: Any) -> None:
    from config.city import load_city
    from dashboards.data import Geometry, congestion_trend
    from dashboards.seed import seed_store
    from store import queries
    from tests.dashboards.conftest import SEED_START

    city = load_city()
    geo = Geometry.from_city(city)
    seed_store(server_store, city, scenario="bad_day", start=SEED_START, duration_s=1200)
    hi = SEED_START + 1200
    got = congestion_trend(server_store, geo, SEED_START - 1, hi)
    want = queries.congestion_trend(server_store, SEED_START - 1, hi)
    assert len(got) == len(want) >= 19
    assert (got["minute"].to_numpy() == want["minute"].to_numpy()).all()
    np.testing.assert_allclose(got["ci"], want["ci"], rtol=1e-9)
    np.testing.assert_allclose(got["mean_speed_kmh"], want["mean_speed_kmh"], rtol=1e-9)


def test_snapshot_on_a_pool_equals_one_connection(server_store: Any) -> None:
    from config.city import load_city
    from dashboards.data import Geometry, QueryPool, snapshot
    from dashboards.seed import seed_store
    from tests.dashboards.conftest import SEED_START

    city = load_city()
    geo = Geometry.from_city(city)
    seed_store(server_store, city, scenario="bad_day", start=SEED_START, duration_s=1200)
    pool = QueryPool.for_store(server_store, 4)
    try:
        assert len(pool.stores) == 4
        a = snapshot(server_store, geo, now=SEED_START + 1300, pool=pool)
        b = snapshot(server_store, geo, now=SEED_START + 1300, pool=QueryPool([server_store]))
    finally:
        pool.close()
    assert a.t == b.t > 0
    for name in ("ci", "aqi", "water_inflow", "grid_load", "availability", "lag_s"):
        assert math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-12), name
    assert (a.status == b.status).all() and np.array_equal(a.value, b.value, equal_nan=True)
    pd.testing.assert_frame_equal(a.ci_trend, b.ci_trend)
    pd.testing.assert_frame_equal(a.aqi_trend, b.aqi_trend)
    assert {"traffic", "environment", "freshness", "queries"} <= set(a.timings)


def test_window_from_parts_equals_the_window_query(server_store: Any) -> None:
    from config.city import load_city
    from dashboards.data import WindowCache
    from dashboards.seed import seed_store
    from store import queries
    from tests.dashboards.conftest import SEED_START

    seed_store(server_store, load_city(), scenario="bad_day", start=SEED_START, duration_s=1200)
    newest = max(queries.newest_ts(server_store).values())
    cache = WindowCache()
    for t in (newest, newest - 400, newest - 900):
        want = queries.environment_window(server_store, t, hashed=True)
        for _ in range(2):  # asked, then kept
            got = cache.get(server_store, "environment", queries.ENVIRONMENT_WINDOW, t, 3600,
                            newest)
            w = want.sort_values("sensor_hash").reset_index(drop=True)
            g = got.sort_values("sensor_hash").reset_index(drop=True)
            assert len(g) == len(w) > 0
            assert (g["sensor_hash"].to_numpy() == w["sensor_hash"].to_numpy()).all()
            assert (g["n"].to_numpy() == w["n"].to_numpy()).all()
            assert (g["last"].to_numpy() == w["last"].to_numpy()).all()
            for c in queries.ENVIRONMENT_WINDOW:
                np.testing.assert_allclose(g[c].to_numpy(dtype=float), w[c].to_numpy(dtype=float),
                                           rtol=1e-9, err_msg=c)
    assert cache._items  # the sealed minutes were kept


def test_traffic_window_and_ci_trend_from_one_read(server_store: Any) -> None:
    """The live refresh makes the traffic window and the congestion trend's head of one read
    of the loops' minute sums: both equal their own queries, live and in the past."""
    from config.city import load_city
    from dashboards.data import Geometry, TrendCache, congestion_trend, traffic_and_ci_trend
    from dashboards.seed import seed_store
    from store import queries
    from tests.dashboards.conftest import SEED_START

    city = load_city()
    geo = Geometry.from_city(city)
    seed_store(server_store, city, scenario="bad_day", start=SEED_START, duration_s=1500)
    newest = max(queries.newest_ts(server_store).values())
    trends = TrendCache()
    calls: list[str] = []
    real = queries.traffic_minute_sums

    def counted(*a: Any, **k: Any) -> Any:
        calls.append("sums")
        return real(*a, **k)

    queries.traffic_minute_sums = counted  # type: ignore[assignment]
    try:
        for t in (newest, newest - 130, newest - 1000):
            lo = t - 3600
            calls.clear()
            window, ci = traffic_and_ci_trend(server_store, geo, trends, t, lo, newest)
            want = queries.traffic_window(server_store, t, hashed=True)
            w = want.sort_values("sensor_hash").reset_index(drop=True)
            g = window.sort_values("sensor_hash").reset_index(drop=True)
            assert len(g) == len(w) > 1000
            assert (g["sensor_hash"].to_numpy() == w["sensor_hash"].to_numpy()).all()
            assert (g["n"].to_numpy() == w["n"].to_numpy()).all()
            assert (g["last"].to_numpy() == w["last"].to_numpy()).all()
            for c in queries.TRAFFIC_METRICS:
                np.testing.assert_allclose(g[c].to_numpy(dtype=float), w[c].to_numpy(dtype=float),
                                           rtol=1e-9, err_msg=c)
            want_ci = congestion_trend(server_store, geo, lo - lo % 60, t)
            want_ci = want_ci[want_ci["minute"] > lo - lo % 60].reset_index(drop=True)
            assert len(ci) == len(want_ci) > 0
            assert (ci["minute"].to_numpy() == want_ci["minute"].to_numpy()).all()
            np.testing.assert_allclose(ci["ci"], want_ci["ci"], rtol=1e-9)
            if t == newest:
                assert calls == ["sums"]  # one read for both
    finally:
        queries.traffic_minute_sums = real  # type: ignore[assignment]


def test_stale_warning_when_nothing_arrived_for_the_threshold(server_store: Any) -> None:
    """The freshness clock's lag is the wall clock minus the newest arrival (``ingested_at``,
    not event time); past ``stale_s`` the snapshot is stale (the screen's red bar)."""
    from config.city import load_city
    from dashboards.data import Geometry, snapshot
    from dashboards.seed import seed_store
    from tests.dashboards.conftest import SEED_START

    city = load_city()
    geo = Geometry.from_city(city)
    seed_store(server_store, city, scenario="bad_day", start=SEED_START, duration_s=600)
    arrived = int(server_store.query(
        "SELECT toUInt32(max(ingested_at)) AS a FROM readings_traffic")["a"].iloc[0])
    fresh = snapshot(server_store, geo, now=arrived + 30, stale_s=120)
    assert fresh.arrived >= arrived and not fresh.stale
    assert math.isclose(fresh.lag_s, arrived + 30 - fresh.arrived)
    old = snapshot(server_store, geo, now=fresh.arrived + 121, stale_s=120)
    assert old.stale and old.lag_s == 121


def _assert_same_snapshot(a: Any, b: Any) -> None:
    assert a.t == b.t and a.newest == b.newest and a.arrived == b.arrived
    for name in ("ci", "aqi", "water_inflow", "grid_load", "availability"):
        assert math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-12), name
    for name in ("status", "flags"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("value", "score", "seg_ratio"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    for name in ("ci_trend", "aqi_trend", "water_trend", "avail_trend"):
        pd.testing.assert_frame_equal(getattr(a, name).reset_index(drop=True),
                                      getattr(b, name).reset_index(drop=True), obj=name)
    pd.testing.assert_frame_equal(a.alerts.reset_index(drop=True),
                                  b.alerts.reset_index(drop=True), obj="alerts")
    pd.testing.assert_frame_equal(a.risk, b.risk, obj="risk")


def test_answers_kept_by_data_version(server_store: Any) -> None:
    """A refresh whose tables have no new part reuses the last answers (no query asked); a new
    part of a table (readings of the sink, an operator's acknowledgement) makes the queries
    of that table ask again, and the snapshot equals one made without kept answers."""
    from config.city import load_city
    from dashboards.data import Geometry, ResultCache, snapshot
    from dashboards.seed import seed_store
    from tests.dashboards.conftest import SEED_START

    city = load_city()
    geo = Geometry.from_city(city)
    seed_store(server_store, city, scenario="bad_day", start=SEED_START, duration_s=1200)
    results = ResultCache()
    first = snapshot(server_store, geo, now=SEED_START + 1300, results=results)
    assert results.hits == 0 and results.misses == 10
    again = snapshot(server_store, geo, now=SEED_START + 1300, results=results)
    assert results.hits == 10 and results.misses == 10  # nothing new: nothing asked
    _assert_same_snapshot(again, first)

    # the sink stores more traffic readings (a new part: the window and trends change)
    df = server_store.query(
        "SELECT sensor_id, ts, flow_vph, speed_kmh, occupancy_pct FROM readings_traffic "
        "WHERE ts = (SELECT max(ts) FROM readings_traffic) ORDER BY sensor_id LIMIT 200")
    server_store.insert("readings_traffic", {
        "sensor_id": df["sensor_id"].to_numpy(dtype=object),
        "ts": df["ts"].to_numpy().astype("datetime64[s]"),
        "flow_vph": df["flow_vph"].to_numpy(dtype=float) * 0 + 9000.0,
        "speed_kmh": df["speed_kmh"].to_numpy(dtype=float) * 0 + 3.0,
        "occupancy_pct": df["occupancy_pct"].to_numpy(dtype=float),
        "seq": np.full(len(df), 10**9, dtype=np.uint64)})
    # and an operator acknowledges an alert (a new part of alert_events)
    open_ = first.alerts[first.alerts["state"] == "open"]
    assert len(open_)  # bad_day has open alerts 20 minutes in
    a = open_.iloc[0]
    server_store.command(
        "INSERT INTO alert_events (alert_id, ts, event, state, severity, district, type, "
        "peak, sensors, actor) SELECT "
        f"'{a['alert_id']}', toDateTime({int(a['updated_at']) + 1}), 'acknowledged', "
        f"'acknowledged', {int(a['severity'])}, '{a['district']}', '{a['type']}', "
        f"{float(a['peak'])}, splitByChar(',', '{a['sensors']}'), 'tester'")
    hits = results.hits
    cached = snapshot(server_store, geo, now=SEED_START + 1300, results=results)
    plain = snapshot(server_store, geo, now=SEED_START + 1300)
    # asked again: the traffic window with its trend, the readings trend (its district
    # rollup has a new part) and the alerts; the other seven answers are kept
    assert results.hits - hits == 10 - 3
    _assert_same_snapshot(cached, plain)
    assert cached.ci != first.ci  # the new loop readings are in
    st = cached.alerts.set_index("alert_id")["state"]
    assert st[a["alert_id"]] == "acknowledged"


def test_district_max_aqi_equals_the_stations_aqi() -> None:
    """The districts' highest station AQI from their highest concentrations (China) equals
    the highest of the stations' own AQI, NaN, negative and off-scale values included."""
    from dashboards.data import POLLUTANTS, district_max_aqi
    from models.indicators.aqi import aqi

    rng = np.random.default_rng(7)
    n_st, n_d = 4000, 13
    district = rng.integers(0, n_d - 1, n_st)  # the last district has no station
    scale = {"pm25": 600, "pm10": 700, "no2": 3000, "o3": 1500, "so2": 3000, "co": 180}
    conc = {}
    for p in POLLUTANTS:
        level = rng.uniform(0.02, 0.6, n_d) * scale[p]  # districts from clean to off-scale
        c = rng.random(n_st) * level[district]
        c[rng.random(n_st) < 0.1] = np.nan
        c[rng.random(n_st) < 0.02] = -1.0
        conc[p] = c
    conc["so2"][:50] = np.array([799.0, 800.0, 800.5, 801.0, 1700.0] * 10)
    for p in POLLUTANTS:  # district 3: nothing valid at any station
        conc[p][district == 3] = np.nan
    for standard in ("china", "us"):
        per = aqi(conc, standard=standard).aqi
        want = np.full(n_d, -1.0)
        np.maximum.at(want, district, np.where(np.isnan(per), -1.0, per))
        got = district_max_aqi(conc, district, n_d, standard, aqi)
        assert np.array_equal(got, want), standard
        assert got[3] == -1.0 and got[-1] == -1.0
        assert len(set(got.tolist())) >= 6, got  # districts of different levels


def test_sensor_hover_text_formats_only_changed_sensors() -> None:
    """The map's per-sensor value text, kept between maps and formatted again only where a
    value or score changed, equals formatting every sensor (NaN both ways, longer texts)."""
    from dashboards import figures
    from dashboards.figures import SensorText

    rng = np.random.default_rng(3)
    n = 3000
    value = np.round(rng.gamma(2.0, 20.0, n), 3)
    score = rng.random(n)
    value[rng.random(n) < 0.2] = np.nan
    score[rng.random(n) < 0.5] = np.nan
    kept = SensorText()
    calls: list[int] = []
    real = figures._sensor_values

    def counted(v: np.ndarray, s: np.ndarray, lang: str) -> np.ndarray:
        calls.append(len(v))
        return real(v, s, lang)

    figures._sensor_values = counted  # type: ignore[assignment]
    try:
        for step in range(6):
            for lang in ("en", "zh"):
                calls.clear()
                got = kept.get(value, score, lang)
                assert (got == real(value, score, lang)).all(), (step, lang)
                if step:
                    assert calls and calls[0] <= 300, calls  # only the changed sensors
            change = rng.choice(n, 100, replace=False)
            value[change[:40]] = rng.gamma(2.0, 20.0, 40)
            value[change[40:50]] = np.nan  # went silent
            value[change[50:60]] = 1e9 + rng.random(10)  # a longer text than any before
            score[change[60:]] = np.where(rng.random(40) < 0.5, np.nan, rng.random(40))
        kept.get(value, score, "en")
        calls.clear()
        again = kept.get(value, score, "en")
        assert calls == []  # nothing changed: nothing formatted
        assert (again == real(value, score, "en")).all()
    finally:
        figures._sensor_values = real  # type: ignore[assignment]
