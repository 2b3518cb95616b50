"""The queries the screen and the CLI use. SQL runs on ClickHouse 18.16 and 26.x alike.

Every function takes the moment to look at, ``t`` (epoch seconds, event time): the live screen
passes the newest event time, time travel any past one. Windows end at ``t`` inclusive, so a
view of the past never sees data that arrived for later event times.

The per-sensor windows and the congestion trend read the screen's minute tables
(``dash_<domain>_sensor_1m``, config/ddl/005: the sums of ``rollup_<domain>_sensor_1m`` ordered
by time first, so a window of minutes reads only those minutes' rows, :data:`SENSOR_MINUTES`);
the city trends read ``rollup_<domain>_district_1m`` (ordered by district and time, so a time
range stays cheap once merged), one district's or sensor's trends ``rollup_<domain>_sensor_1m``.
Windows are whole minute buckets (the minute holding ``t`` and those before it,
:func:`minute_window`), so a view of a past moment may include up to 59 s after it. Only
:func:`freshness` (newest arrival) and the one-sensor page read raw readings.

No ``FINAL``: a redelivered frame may count twice (in the raw table until ReplacingMergeTree
merges it away, in the rollups until ``citybrain maintain`` repairs the day), which moves a
window mean by a hair but would cost a screen refresh several times over. The dimension tables are tiny: deduplicated by GROUP BY and joined with ``ALL`` (``ANY INNER``
means different things on 18.16 and on 20+, where each right row joins at most once).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from store.base import Store

#: sensor ids, district ids, alert ids, user names: what may be pasted into SQL literals
_SAFE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


#: the per-sensor minute table the windows and the congestion trend read, by domain; the
#: screen's time-first tables (``rollup_{domain}_sensor_1m`` holds the same sums, ordered by
#: sensor first: ``citybrain bench dashboard`` measures it as the baseline)
SENSOR_MINUTES = "dash_{domain}_sensor_1m"


def sensor_minutes(domain: str) -> str:
    return SENSOR_MINUTES.format(domain=domain)


def lit(value: str) -> str:
    """A quoted SQL string literal for an id (rejects anything that is not an id)."""
    if not _SAFE.match(value):
        raise ValueError(f"not an id: {value!r}")
    return f"'{value}'"


def _t(t: int | float) -> str:
    return f"toDateTime({int(t)})"


# --- freshness ----------------------------------------------------------------------------------
READINGS_TABLES = ("readings_traffic", "readings_environment", "readings_utility")
#: freshness looks at the minutes starting at or after the newest event time minus this
FRESH_WINDOW_S = 600


def readings_parts(store: Store) -> pd.DataFrame:
    """The active parts of the readings tables: ``domain``, ``part`` (name),
    ``partition_id``, ``min_block``/``max_block`` (the insert blocks it holds), ``max_time``
    (newest event time in the part, epoch s) and ``rows``, from ``system.parts``: no data
    read."""
    return store.query(
        "SELECT replaceOne(table, 'readings_', '') AS domain, name AS part, partition_id, "
        "toInt64(min_block_number) AS min_block, toInt64(max_block_number) AS max_block, "
        "toUInt32(max_time) AS max_time, toUInt64(rows) AS rows FROM system.parts "
        "WHERE database = currentDatabase() AND active AND table IN "
        f"({', '.join(repr(t) for t in READINGS_TABLES)})"
    )


def newest_of_parts(parts: pd.DataFrame) -> dict[str, int]:
    """Per domain, the newest event time (epoch s; 0 if empty) of :func:`readings_parts`."""
    out = {d: 0 for d in ("traffic", "environment", "utility")}
    if len(parts):
        dom = parts["domain"].to_numpy(dtype=object)
        mx = parts["max_time"].to_numpy(dtype=np.int64)
        for d in out:
            hit = mx[dom == d]
            if hit.size:
                out[d] = int(hit.max())
    return out


def newest_ts(store: Store) -> dict[str, int]:
    """Per readings table, the newest event time (epoch s; 0 if empty) from the parts'
    min/max index: no data is read."""
    return newest_of_parts(readings_parts(store))


def fresh_from(newest: int) -> int:
    """The first minute (epoch s) :func:`freshness` looks at when the newest event time is
    ``newest``: the minute holding ``newest - FRESH_WINDOW_S``."""
    lo = int(newest) - FRESH_WINDOW_S
    return lo - lo % 60


def freshness(store: Store, newest: dict[str, int] | None = None) -> pd.DataFrame:
    """Per readings table: newest event time and newest arrival (epoch s; 0 if empty).

    Reads only the minutes from :func:`fresh_from` on (the last 10 to 11 minutes of event
    time, located with :func:`newest_ts`), which is what makes it cheap on a month of data
    (the screen asks :func:`freshness_of_parts` instead: see ``dashboards.data.FreshnessCache``).
    """
    newest = newest_ts(store) if newest is None else newest
    parts = []
    for domain, hi in newest.items():
        parts.append(
            f"SELECT '{domain}' AS domain, toUInt32(max(ts)) AS newest, "
            f"toUInt32(max(ingested_at)) AS arrived, count() AS n "
            f"FROM readings_{domain} WHERE ts >= {_t(fresh_from(hi))}"
        )
    return store.query(" UNION ALL ".join(parts))


def freshness_of_parts(store: Store, parts: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Per part and minute: newest event time, newest arrival and readings of the rows of the
    named parts (``{domain: {part name: first minute}}``) in the minutes from the part's first
    minute on. A part never changes (merges make new ones), so a caller can keep the answer
    as long as the part is active. ``_part IN (...)`` selects the parts before reading."""
    sql = freshness_of_parts_sql(parts)
    if not sql:
        return pd.DataFrame({"domain": [], "part": [], "minute": [], "newest": [],
                             "arrived": [], "n": []})
    return store.query(sql)


def freshness_of_parts_sql(parts: Mapping[str, Mapping[str, int]]) -> str:
    """The SQL of :func:`freshness_of_parts` ("" when no part is named)."""
    selects = []
    for domain, names in parts.items():
        if not names or f"readings_{domain}" not in READINGS_TABLES:
            continue
        lo = min(names.values())
        listed = ", ".join(lit(n) for n in names)
        selects.append(
            f"SELECT '{domain}' AS domain, _part AS part, "
            f"toUInt32(toStartOfMinute(ts)) AS minute, toUInt32(max(ts)) AS newest, "
            f"toUInt32(max(ingested_at)) AS arrived, count() AS n "
            f"FROM readings_{domain} WHERE _part IN ({listed}) AND ts >= {_t(lo)} "
            f"GROUP BY part, minute"
        )
    return " UNION ALL ".join(selects)


def data_span(store: Store) -> tuple[int, int]:
    """(oldest, newest) event time of the traffic readings, epoch s; (0, 0) if empty. From
    the parts' min/max index of ``ts`` (exact, no data read: a month is as cheap as a day)."""
    df = store.query(
        "SELECT toUInt32(min(min_time)) AS lo, toUInt32(max(max_time)) AS hi, "
        "sum(rows) AS n FROM system.parts WHERE database = currentDatabase() AND active "
        "AND table = 'readings_traffic'"
    )
    if not int(df["n"].iloc[0]):
        return 0, 0
    return int(df["lo"].iloc[0]), int(df["hi"].iloc[0])


# --- per-sensor windows -------------------------------------------------------------------------
# The windows read the per-sensor minute sums (:func:`sensor_minutes`), not the raw
# readings: a mean is sum(x_sum) / sum(x_count) over whole minutes. A window of ``window_s``
# ending at ``t`` is the minute holding ``t`` and the whole minutes before it
# (``window_s / 60`` minute buckets; see :func:`minute_window`). ``last`` is the end of the
# newest minute with readings (at most ``t``).
def minute_window(t: int, window_s: int) -> tuple[int, int]:
    """The first and last minute bucket (epoch s) of the window of ``window_s`` ending at ``t``."""
    last = int(t) - int(t) % 60
    return last - (int(window_s) // 60 - 1) * 60, last


def _mwhere(t: int, window_s: int) -> str:
    first, _ = minute_window(t, window_s)
    return f"ts >= {_t(first)} AND ts <= {_t(t)}"


def _means(cols: tuple[str, ...]) -> str:
    return ", ".join(f"sum({c}_sum) / sum({c}_count) AS {c}" for c in cols)


# ``hashed=True`` returns ``sensor_hash`` (``cityHash64(sensor_id)``, see :func:`sensor_hashes`)
# instead of ``sensor_id``: thousands of strings cost the client more to decode than the query
# costs the server.
def traffic_window(store: Store, t: int, *, window_s: int = 300,
                   hashed: bool = False) -> pd.DataFrame:
    """Per loop detector over the window ending at ``t``: mean flow, speed, occupancy,
    readings."""
    return _window(store, "traffic", ("flow_vph", "speed_kmh", "occupancy_pct"), t, window_s,
                   hashed)


#: the environment window's metrics (the 1-hour means feed the AQI)
ENVIRONMENT_WINDOW = ("pm25", "pm10", "no2", "o3", "so2", "co", "noise_dba", "temp_c", "wind_ms")


def environment_window(store: Store, t: int, *, window_s: int = 3600,
                       hashed: bool = False) -> pd.DataFrame:
    """Per environment sensor over the window ending at ``t``: mean of every metric (the
    1-hour means feed the AQI), readings and the last reading time."""
    return _window(store, "environment", ENVIRONMENT_WINDOW, t, window_s, hashed)


def utility_window(store: Store, t: int, *, window_s: int = 300,
                   hashed: bool = False) -> pd.DataFrame:
    """Per utility sensor over the window ending at ``t``: mean inflow, pressure, load,
    voltage."""
    return _window(store, "utility", ("inflow_m3h", "pressure_bar", "load_mw", "voltage_kv"),
                   t, window_s, hashed)


def _key(hashed: bool) -> str:
    return "cityHash64(sensor_id) AS sensor_hash" if hashed else "sensor_id"


def _window(store: Store, domain: str, cols: tuple[str, ...], t: int,
            window_s: int, hashed: bool = False) -> pd.DataFrame:
    return store.query(
        f"""
        SELECT {_key(hashed)}, {_means(cols)}, sum(readings) AS n,
               least(toUInt32(max(ts)) + 59, {int(t)}) AS last
        FROM {sensor_minutes(domain)}
        WHERE {_mwhere(t, window_s)}
        GROUP BY sensor_id
        HAVING n > 0
        """
    )


def window_sums(store: Store, domain: str, cols: tuple[str, ...], lo: int,
                hi: int) -> pd.DataFrame:
    """Per sensor over the minutes starting in ``(lo, hi]``: ``sensor_hash``, ``n`` readings,
    ``last_minute`` (start of the newest minute) and ``<metric>_sum``/``<metric>_count``: the
    parts of a window that a caller adds up itself (``dashboards.data.WindowCache``)."""
    sums = ", ".join(f"sum({c}_sum) AS {c}_sum, sum({c}_count) AS {c}_count" for c in cols)
    return store.query(
        f"""
        SELECT cityHash64(sensor_id) AS sensor_hash, sum(readings) AS n,
               toUInt32(max(ts)) AS last_minute, {sums}
        FROM {sensor_minutes(domain)}
        WHERE {_range(lo, hi)}
        GROUP BY sensor_id
        """
    )


def sensor_hashes(store: Store, sensor_ids: list[str]) -> pd.DataFrame:
    """``sensor_id`` and its ``sensor_hash`` (``cityHash64``, as the server computes it)."""
    parts = []
    for i in range(0, len(sensor_ids), 2000):
        ids = ", ".join(lit(s) for s in sensor_ids[i:i + 2000])
        parts.append(store.query(
            f"SELECT sensor_id, cityHash64(sensor_id) AS sensor_hash "
            f"FROM (SELECT arrayJoin([{ids}]) AS sensor_id)"
        ))
    if not parts:
        return pd.DataFrame({"sensor_id": [], "sensor_hash": []})
    return pd.concat(parts, ignore_index=True)


# --- congestion -----------------------------------------------------------------------------
_SEGMENT_DIM = """
    (SELECT sensor_id, district, length_km, free_speed_kmh
     FROM (SELECT sensor_id, any(district) AS district, any(segment) AS segment
           FROM dim_sensors WHERE kind = 'loop' GROUP BY sensor_id) AS sen
     ALL INNER JOIN
          (SELECT segment, any(length_km) AS length_km, any(free_speed_kmh) AS free_speed_kmh
           FROM dim_segments GROUP BY segment) AS seg
     USING segment) AS dim
"""


def _ci_expr() -> str:
    # congestion index = total travel time / free-flow travel time - 1, weights flow x length
    # (models.indicators.traffic.congestion_index); speeds floored at 1 km/h. Over per-sensor
    # means (of a window, or of a minute), as the screen's KPI computes it.
    return (
        "sum(flow_vph * length_km / greatest(speed_kmh, 1.0)) / "
        "sum(flow_vph * length_km / free_speed_kmh) - 1"
    )


def _loop_means(where: str, *, by_minute: bool = False) -> str:
    """Per loop (and minute) means from the minute sums, flowing loops only."""
    minute = "ts, " if by_minute else ""
    return f"""
        (SELECT {minute}sensor_id, sum(flow_vph_sum) / sum(flow_vph_count) AS flow_vph,
                sum(speed_kmh_sum) / sum(speed_kmh_count) AS speed_kmh
         FROM {sensor_minutes("traffic")} WHERE {where}
         GROUP BY {minute}sensor_id
         HAVING sum(speed_kmh_count) > 0 AND flow_vph > 0) AS r
    """


def congestion_city(store: Store, t: int, *, window_s: int = 300) -> float:
    """The city congestion index over the window ending at ``t`` (NaN without data)."""
    df = store.query(
        f"""
        SELECT {_ci_expr()} AS ci, count() AS readings
        FROM {_loop_means(_mwhere(t, window_s))}
        ALL INNER JOIN {_SEGMENT_DIM} USING sensor_id
        """
    )
    if not len(df) or not int(df["readings"].iloc[0]):
        return float("nan")
    return float(df["ci"].iloc[0])


def congestion_by_district(store: Store, t: int, *, window_s: int = 300) -> pd.DataFrame:
    """Per district over the window ending at ``t``: congestion index ``ci`` and its two sums
    (``tt`` travel time, ``ff`` free-flow travel time; the city index is ``sum(tt)/sum(ff)-1``),
    over per-loop window means; ``readings`` counts the loops."""
    return store.query(
        f"""
        SELECT district, {_ci_expr()} AS ci,
               sum(flow_vph * length_km / greatest(speed_kmh, 1.0)) AS tt,
               sum(flow_vph * length_km / free_speed_kmh) AS ff,
               avg(speed_kmh) AS mean_speed_kmh, count() AS readings
        FROM {_loop_means(_mwhere(t, window_s))}
        ALL INNER JOIN {_SEGMENT_DIM} USING sensor_id
        GROUP BY district ORDER BY district
        """
    )


def _range(lo: int, hi: int) -> str:
    # minute buckets starting in (lo, hi]
    return f"ts > {_t(lo)} AND ts <= {_t(hi)}"


def congestion_trend(
    store: Store, lo: int, hi: int, *, district: str | None = None
) -> pd.DataFrame:
    """Per-minute congestion index over minutes starting in ``(lo, hi]`` (city or one
    district), from per-loop minute means."""
    where = f"AND district = {lit(district)}" if district else ""
    return store.query(
        f"""
        SELECT toUInt32(ts) AS minute, {_ci_expr()} AS ci,
               avg(speed_kmh) AS mean_speed_kmh
        FROM {_loop_means(_range(lo, hi), by_minute=True)}
        ALL INNER JOIN {_SEGMENT_DIM} USING sensor_id
        WHERE 1 {where}
        GROUP BY minute ORDER BY minute
        """
    )


def loop_minute_means(store: Store, lo: int, hi: int) -> pd.DataFrame:
    """Per loop and minute starting in ``(lo, hi]``: mean flow and speed (flowing loops with a
    speed only), keyed by ``sensor_hash``; what :func:`congestion_trend` weights with the road
    segments, for a caller that holds the segments itself."""
    return store.query(
        f"""
        SELECT toUInt32(ts) AS minute, cityHash64(sensor_id) AS sensor_hash,
               sum(flow_vph_sum) / sum(flow_vph_count) AS flow_vph,
               sum(speed_kmh_sum) / sum(speed_kmh_count) AS speed_kmh
        FROM {sensor_minutes("traffic")} WHERE {_range(lo, hi)}
        GROUP BY ts, sensor_id
        HAVING sum(speed_kmh_count) > 0 AND flow_vph > 0
        """
    )


#: the traffic minute table's metrics (:func:`traffic_minute_sums`, :func:`traffic_window`)
TRAFFIC_METRICS = ("flow_vph", "speed_kmh", "occupancy_pct")


def traffic_minute_sums(store: Store, lo: int, hi: int) -> pd.DataFrame:
    """Per loop and minute starting in ``(lo, hi]``: ``minute``, ``sensor_hash``, ``n``
    readings and ``<metric>_sum``/``<metric>_count`` of every traffic metric: what both
    :func:`loop_minute_means` and :func:`traffic_window` are made of, for a caller that needs
    both over the same minutes (the live screen: one read of the last minutes, not two)."""
    sums = ", ".join(f"sum({c}_sum) AS {c}_sum, sum({c}_count) AS {c}_count"
                     for c in TRAFFIC_METRICS)
    return store.query(
        f"""
        SELECT toUInt32(ts) AS minute, cityHash64(sensor_id) AS sensor_hash,
               sum(readings) AS n, {sums}
        FROM {sensor_minutes("traffic")} WHERE {_range(lo, hi)}
        GROUP BY ts, sensor_id
        """
    )


# --- city trends --------------------------------------------------------------------------------
def _sensor_in(sensors: list[str]) -> str:
    return f"AND sensor_id IN ({', '.join(lit(s) for s in sensors)})"


def environment_trend(
    store: Store, lo: int, hi: int, *, sensors: list[str] | None = None
) -> pd.DataFrame:
    """Per 5 minutes over ``(lo, hi]``: sums and counts of every pollutant over the air
    stations (or the given sensors), so the caller can form trailing 1-hour means."""
    pol = ("pm25", "pm10", "no2", "o3", "so2", "co")
    agg = ", ".join(f"sum({p}_sum) AS {p}_sum, sum({p}_count) AS {p}_n" for p in pol)
    table = "rollup_environment_sensor_1m" if sensors else "rollup_environment_district_1m"
    where = _sensor_in(sensors) if sensors else ""
    return store.query(
        f"""
        SELECT toUInt32(toStartOfFiveMinute(ts)) AS bucket, {agg}
        FROM {table}
        WHERE {_range(lo, hi)} {where}
        GROUP BY bucket HAVING pm25_n > 0 ORDER BY bucket
        """
    )


def utility_trend(
    store: Store, lo: int, hi: int, *, sensors: list[str] | None = None
) -> pd.DataFrame:
    """Per minute over ``(lo, hi]``: mean inflow, pressure, load and voltage."""
    table = "rollup_utility_sensor_1m" if sensors else "rollup_utility_district_1m"
    where = _sensor_in(sensors) if sensors else ""
    return store.query(
        f"""
        SELECT toUInt32(ts) AS minute,
               {_means(("inflow_m3h", "pressure_bar", "load_mw", "voltage_kv"))}
        FROM {table}
        WHERE {_range(lo, hi)} {where}
        GROUP BY minute HAVING sum(readings) > 0 ORDER BY minute
        """
    )


def readings_trend(store: Store, lo: int, hi: int) -> pd.DataFrame:
    """Per minute over ``(lo, hi]``: readings received, all domains (``readings``). One read
    of the three district rollups through the ``merge()`` table function (their common
    ``ts`` and ``readings`` columns): about half the cost of a UNION of three queries."""
    return store.query(
        f"SELECT toUInt32(ts) AS minute, sum(readings) AS readings "
        f"FROM merge(currentDatabase(), '^rollup_(traffic|environment|utility)_district_1m$') "
        f"WHERE {_range(lo, hi)} GROUP BY minute HAVING readings > 0 ORDER BY minute"
    )


# --- derived tables -----------------------------------------------------------------------------
def anomalies_window(store: Store, t: int, *, window_s: int = 300) -> pd.DataFrame:
    """Per sensor over ``(t - window_s, t]``: the largest anomaly score and the OR of flags."""
    return store.query(
        f"""
        SELECT sensor_id, max(score) AS score, groupBitOr(flags) AS flags
        FROM anomalies
        WHERE ts > {_t(t - window_s)} AND ts <= {_t(t)}
        GROUP BY sensor_id
        """
    )


def sensor_health_at(store: Store, t: int) -> pd.DataFrame:
    """The quality flags of every sensor with a health record, as of ``t`` (latest change)."""
    return store.query(
        f"""
        SELECT sensor_id, argMax(flags, ts) AS flags, argMax(status, ts) AS status
        FROM sensor_health WHERE ts <= {_t(t)}
        GROUP BY sensor_id
        HAVING flags != 0
        """
    )


def district_risk_at(store: Store, t: int, *, max_age_s: int = 900) -> pd.DataFrame:
    """The latest risk of each district as of ``t`` (rows older than ``max_age_s`` ignored)."""
    return store.query(
        f"""
        SELECT district, argMax(risk, ts) AS risk, argMax(colour, ts) AS colour,
               argMax(contrib_traffic, ts) AS contrib_traffic,
               argMax(contrib_environment, ts) AS contrib_environment,
               argMax(contrib_utility, ts) AS contrib_utility,
               argMax(top_sensors, ts) AS top_sensors, toUInt32(max(ts)) AS at
        FROM district_risk
        WHERE ts > {_t(t - max_age_s)} AND ts <= {_t(t)}
        GROUP BY district ORDER BY district
        """
    )


def risk_trend(
    store: Store, lo: int, hi: int, *, district: str | None = None
) -> pd.DataFrame:
    """Per minute: the city's highest district risk, or one district's risk and its
    contributions."""
    if district:
        return store.query(
            f"""
            SELECT toUInt32(toStartOfMinute(ts)) AS minute, max(risk) AS risk,
                   avg(contrib_traffic) AS traffic, avg(contrib_environment) AS environment,
                   avg(contrib_utility) AS utility
            FROM district_risk
            WHERE district = {lit(district)} AND ts > {_t(lo)} AND ts <= {_t(hi)}
            GROUP BY minute ORDER BY minute
            """
        )
    return store.query(
        f"""
        SELECT toUInt32(toStartOfMinute(ts)) AS minute, max(risk) AS risk
        FROM district_risk WHERE ts > {_t(lo)} AND ts <= {_t(hi)}
        GROUP BY minute ORDER BY minute
        """
    )


def alerts_at(
    store: Store, t: int, *, lookback_s: int = 86400, district: str | None = None,
    limit: int = 200,
) -> pd.DataFrame:
    """Alerts as of ``t``: the state of every alert with an event in the ``lookback_s`` before
    ``t``, newest first. ``state`` is the latest event's state, except that an operator's
    ``acknowledged``/``resolved`` event wins over a later worker update of an open alert.
    Times are epoch seconds (0 = never)."""
    where = f"AND district = {lit(district)}" if district else ""
    return store.query(
        f"""
        SELECT alert_id, argMax(district, ts) AS district, argMax(type, ts) AS type,
               argMax(state, ts) AS last_state, argMax(severity, ts) AS severity,
               max(peak) AS peak, toUInt32(min(ts)) AS opened_at,
               toUInt32(max(ts)) AS updated_at,
               toUInt32(minIf(ts, event = 'acknowledged' OR state = 'acknowledged')) AS acked_at,
               toUInt32(minIf(ts, event = 'resolved' OR state = 'resolved')) AS resolved_at,
               argMaxIf(actor, ts, event = 'acknowledged') AS acked_by,
               arrayStringConcat(argMax(sensors, ts), ',') AS sensors
        FROM alert_events
        WHERE ts <= {_t(t)} {where}
          AND alert_id IN (SELECT alert_id FROM alert_events
                           WHERE ts > {_t(t - lookback_s)} AND ts <= {_t(t)})
        GROUP BY alert_id
        ORDER BY updated_at DESC, alert_id
        LIMIT {int(limit)}
        """
    )


def alert_events_of(store: Store, alert_id: str) -> pd.DataFrame:
    return store.query(
        f"SELECT toUInt32(ts) AS ts, event, state, severity, actor FROM alert_events "
        f"WHERE alert_id = {lit(alert_id)} ORDER BY ts, event"
    )


# --- one sensor ---------------------------------------------------------------------------------
def sensor_series(
    store: Store, sensor_id: str, domain: str, metrics: tuple[str, ...], t: int,
    *, minutes: int = 240,
) -> pd.DataFrame:
    """The raw readings of one sensor over the ``minutes`` before ``t``."""
    cols = ", ".join(metrics)
    return store.query(
        f"""
        SELECT toUInt32(ts) AS ts, {cols}
        FROM readings_{domain}
        WHERE sensor_id = {lit(sensor_id)} AND ts > {_t(t - minutes * 60)} AND ts <= {_t(t)}
        ORDER BY ts
        """
    )


def sensor_anomalies(store: Store, sensor_id: str, t: int, *, minutes: int = 240) -> pd.DataFrame:
    return store.query(
        f"""
        SELECT toUInt32(ts) AS ts, score, seasonal, spatial, multivariate, metric, flags
        FROM anomalies
        WHERE sensor_id = {lit(sensor_id)} AND ts > {_t(t - minutes * 60)} AND ts <= {_t(t)}
        ORDER BY ts
        """
    )


def sensor_health_history(
    store: Store, sensor_id: str, t: int, *, minutes: int = 240
) -> pd.DataFrame:
    return store.query(
        f"""
        SELECT toUInt32(ts) AS ts, flags, status FROM sensor_health
        WHERE sensor_id = {lit(sensor_id)} AND ts > {_t(t - minutes * 60)} AND ts <= {_t(t)}
        ORDER BY ts
        """
    )


# --- writes -------------------------------------------------------------------------------------
def last_alert_event(store: Store, alert_id: str) -> pd.DataFrame:
    """The latest event of an alert (empty if unknown)."""
    return store.query(
        f"""
        SELECT toUInt32(ts) AS ts, district, type, state, severity, peak,
               arrayStringConcat(sensors, ',') AS sensors
        FROM alert_events WHERE alert_id = {lit(alert_id)}
        ORDER BY ts DESC LIMIT 1
        """
    )


# --- the skeleton's counters (CLI, tests) ------------------------------------------------------
def overview_counts(store: Store) -> dict[str, float]:
    """Readings stored, sensors reporting and the newest event time (epoch s, 0 if none)."""
    df = store.query(
        "SELECT count() AS readings, uniqExact(sensor_id) AS sensors, "
        "toUInt32(max(ts)) AS newest FROM readings_traffic"
    )
    row = df.iloc[0]
    return {
        "readings": int(row["readings"]),
        "sensors": int(row["sensors"]),
        "newest": int(row["newest"]) if int(row["readings"]) else 0,
    }


def indicator_count(store: Store) -> int:
    return int(store.query("SELECT count() AS n FROM indicators")["n"].iloc[0])


def sql_literal(value: object) -> str:
    """A ClickHouse literal for a str, int, float, numpy datetime64[s] or list of those."""
    if isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, str):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    if isinstance(value, np.datetime64):
        return f"toDateTime({int(value.astype('datetime64[s]').astype(np.int64))})"
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if np.isfinite(value) else "nan"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def insert_rows(store: Store, table: str, columns: Mapping[str, object]) -> int:
    """Insert columns as one ``INSERT ... SELECT`` of literals.

    For the few rows of tables with ``Array`` columns (alert events, ground truth), which the
    stores' columnar inserts do not carry on both backends (chDB's Arrow path rejects lists).
    """
    names = list(columns)
    cols = [list(columns[c]) for c in names]  # type: ignore[call-overload]
    n = len(cols[0]) if cols else 0
    if not n:
        return 0
    # INSERT ... SELECT (not VALUES): inline VALUES data with expressions stalls the native
    # protocol of clickhouse-driver on 18.16
    selects = " UNION ALL ".join(
        "SELECT " + ", ".join(sql_literal(col[i]) for col in cols) for i in range(n)
    )
    store.command(f"INSERT INTO {table} ({', '.join(names)}) {selects}")
    return n
