"""Rollups: 1-minute and 1-hour sums per sensor and per district, kept by materialized views.

Twelve tables, ``rollup_<domain>_<sensor|district>_<1m|1h>`` (and the screen's three
``dash_<domain>_sensor_1m``, :data:`SCREEN_TABLES`, repaired with them), each a SummingMergeTree with
``readings`` and, per metric, ``<metric>_sum`` and ``<metric>_count`` (NULLs skipped). A mean is
``sum(<metric>_sum) / sum(<metric>_count)``; always aggregate with ``sum()`` because rows of one
key are only combined when ClickHouse merges parts. Plain sums work in every client (no
``-Merge`` combinators) and on ClickHouse 18.16 and 26.x alike.

**Cascade** (migration 011). Only ``mv_rollup_<domain>_sensor_1m`` reads the raw insert block;
the per-sensor hourly rollup, the district 1-minute rollup (district looked up in ``dim_sensors``)
and the screen's minute table are views over the 1-minute rows it writes, and the district
hourly rollup a view over the district 1-minute rows (:data:`UPSTREAM`), so the server
aggregates each reading once. On ClickHouse 18.16 those views select FROM the view
``mv_rollup_<domain>_sensor_1m`` (18.16 passes a view's output to the views of the view), on
current servers and chDB FROM its TO table (``store.schema.cascade_feature``). Either way an
INSERT into a raw table reaches all five tables; a direct INSERT into a rollup table reaches the
tables below it on current servers and none on 18.16, which :func:`repair` allows for.

**Duplicates.** A view sees every insert, so a redelivered frame is counted twice in a rollup
until :func:`repair` runs, while the raw ReplacingMergeTree keeps it once. :func:`repair`
recomputes a day from ``readings_* FINAL`` (de-duplicated) and inserts the *difference* as
correction rows (counts are Int64 and may be negative in a correction row), so the sums become
exact without rewriting or locking partitions, and views keep writing meanwhile. ``citybrain
maintain`` runs it for the recent closed days; ``citybrain backfill`` runs it for what it loaded.
:func:`check` reports days whose rollup counts differ from the de-duplicated raw counts.

>>> [r.table for r in ROLLUPS][:2]
['rollup_traffic_sensor_1m', 'rollup_traffic_sensor_1h']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from config.domains import DOMAIN_METRICS, DOMAINS
from store.base import Store, StoreError


@dataclass(frozen=True)
class Rollup:
    domain: str
    entity: str  # "sensor" | "district"
    grain: str  # "1m" | "1h"
    prefix: str = "rollup"  # "dash": the screen's time-first copy (config/ddl/005)

    @property
    def table(self) -> str:
        return f"{self.prefix}_{self.domain}_{self.entity}_{self.grain}"

    @property
    def view(self) -> str:
        return f"mv_{self.table}"

    @property
    def raw(self) -> str:
        return f"readings_{self.domain}"

    @property
    def metrics(self) -> tuple[str, ...]:
        return DOMAIN_METRICS[self.domain]

    @property
    def key(self) -> str:
        return "sensor_id" if self.entity == "sensor" else "district"

    @property
    def bucket(self) -> str:
        return "toStartOfMinute" if self.grain == "1m" else "toStartOfHour"

    @property
    def partition(self) -> str:
        return "toYYYYMMDD(ts)" if self.grain == "1m" else "toYYYYMM(ts)"

    def columns(self) -> list[str]:
        out = ["ts", self.key, "readings"]
        for m in self.metrics:
            out += [f"{m}_sum", f"{m}_count"]
        return out

    def aggregate_select(self, *, final: bool = False, where: str = "") -> str:
        """``SELECT`` of this rollup's rows from the raw table (the view's query)."""
        aggs = ["toInt64(count()) AS readings"]
        for m in self.metrics:
            aggs.append(f"sum(ifNull({m}, 0)) AS {m}_sum")
            aggs.append(f"toInt64(count({m})) AS {m}_count")
        src = f"{self.raw}{' FINAL' if final else ''}"
        if self.entity == "district":
            src += (
                " ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors "
                f"WHERE domain = '{self.domain}' GROUP BY sensor_id) AS d USING sensor_id"
            )
        return (
            f"SELECT {self.bucket}(ts) AS ts, {self.key}, {', '.join(aggs)} FROM {src}"
            f"{' WHERE ' + where if where else ''} GROUP BY {self.key}, ts"
        )


#: table -> the table whose inserted rows its view aggregates (migration 011); the others read
#: the raw table. Tables are listed after their upstream in ROLLUPS + SCREEN_TABLES.
UPSTREAM: dict[str, str] = {
    **{f"rollup_{d}_sensor_1h": f"rollup_{d}_sensor_1m" for d in DOMAINS},
    **{f"rollup_{d}_district_1m": f"rollup_{d}_sensor_1m" for d in DOMAINS},
    **{f"rollup_{d}_district_1h": f"rollup_{d}_district_1m" for d in DOMAINS},
    **{f"dash_{d}_sensor_1m": f"rollup_{d}_sensor_1m" for d in DOMAINS},
}

ROLLUPS: tuple[Rollup, ...] = tuple(
    Rollup(d, e, g) for d in DOMAINS for e in ("sensor", "district") for g in ("1m", "1h")
)
#: the operations screen's minute tables ``dash_<domain>_sensor_1m``: the same sums as the
#: per-sensor 1-minute rollups, ordered by time first; repaired with them
SCREEN_TABLES: tuple[Rollup, ...] = tuple(Rollup(d, "sensor", "1m", "dash") for d in DOMAINS)


def rollup(domain: str, entity: str, grain: str) -> Rollup:
    for r in ROLLUPS:
        if (r.domain, r.entity, r.grain) == (domain, entity, grain):
            return r
    raise StoreError(f"no rollup for domain={domain!r} entity={entity!r} grain={grain!r}")


def _exists(store: Store, table: str) -> bool:
    """Whether ``table`` is in the current database (a store older than migration 005)."""
    df = store.query("SELECT count() AS n FROM system.tables "
                     f"WHERE database = currentDatabase() AND name = '{table}'")
    return int(df["n"].iloc[0]) > 0


def _day_where(day: dt.date) -> str:
    return f"toYYYYMMDD(ts) = {day:%Y%m%d}"


def correction_sql(r: Rollup, day: dt.date) -> str:
    """``INSERT`` of the rows that make ``r`` equal to the de-duplicated raw data of ``day``.

    The exact aggregate (from ``raw FINAL``) minus the current rollup sums, per key; only keys
    whose counts differ are written.
    """
    m_cols = [c for c in r.columns() if c not in ("ts", r.key)]
    exact = r.aggregate_select(final=True, where=_day_where(day))
    current = (
        f"SELECT ts, {r.key}, "
        + ", ".join(f"-sum({c}) AS {c}" for c in m_cols)
        + f" FROM {r.table} WHERE {_day_where(day)} GROUP BY {r.key}, ts"
    )
    outer = ", ".join(f"sum({c}) AS {c}" for c in m_cols)
    # counts must match exactly; sums within float noise (a replaced reading may keep its count)
    having = " OR ".join(
        f"abs({c}) > 1e-6" if c.endswith("_sum") else f"{c} != 0" for c in m_cols
    )
    return (
        f"INSERT INTO {r.table} ({', '.join(r.columns())}) "
        f"SELECT ts, {r.key}, {outer} FROM ({exact} UNION ALL {current}) "
        f"GROUP BY ts, {r.key} HAVING {having}"
    )


@dataclass(frozen=True)
class DayStatus:
    domain: str
    day: dt.date
    raw: int  # de-duplicated raw readings
    rollup: int  # readings counted by the per-sensor 1-minute rollup

    @property
    def ok(self) -> bool:
        return self.raw == self.rollup


def _days(store: Store, sql: str) -> dict[dt.date, int]:
    df = store.query(sql)
    return {
        dt.date(int(d) // 10000, int(d) // 100 % 100, int(d) % 100): int(n)
        for d, n in zip(df["d"], df["n"], strict=True)
    }


def _days_where(since: dt.date | None, until: dt.date | None) -> str:
    """`` WHERE`` clause for days ``since``..``until`` (inclusive; either may be None)."""
    cond = []
    if since:
        cond.append(f"toYYYYMMDD(ts) >= {since:%Y%m%d}")
    if until:
        cond.append(f"toYYYYMMDD(ts) <= {until:%Y%m%d}")
    return f" WHERE {' AND '.join(cond)}" if cond else ""


def check(
    store: Store, *, since: dt.date | None = None, until: dt.date | None = None
) -> list[DayStatus]:
    """Per domain and day: de-duplicated raw readings vs readings in the 1-minute sensor rollup
    (days present in either; ``since``/``until`` inclusive)."""
    where = _days_where(since, until)
    out = []
    for d in DOMAINS:
        r = rollup(d, "sensor", "1m")
        raw = _days(store, f"SELECT toYYYYMMDD(ts) AS d, count() AS n FROM {r.raw} FINAL{where} "
                    "GROUP BY d")
        rol = _days(store, f"SELECT toYYYYMMDD(ts) AS d, sum(readings) AS n FROM {r.table}{where} "
                    "GROUP BY d")
        for day in sorted(set(raw) | set(rol)):
            out.append(DayStatus(d, day, raw.get(day, 0), rol.get(day, 0)))
    return out


@dataclass(frozen=True)
class CascadeStatus:
    table: str
    day: dt.date
    readings: int  # readings counted by ``table``
    upstream: int  # readings counted by the table its view reads (UPSTREAM)

    @property
    def ok(self) -> bool:
        return self.readings == self.upstream


def check_cascade(
    store: Store, *, since: dt.date | None = None, until: dt.date | None = None
) -> list[CascadeStatus]:
    """Per cascaded table (:data:`UPSTREAM`) and day: its readings against those of the table its
    view reads. They differ when the cascade stopped (an 18.16 server upgraded to a version that
    passes a view's rows on by its TO table: re-create the views, see docs/analysts.md) or when
    only the 1-minute rollup was corrected by hand; :func:`repair` of the day fixes the sums."""
    where = _days_where(since, until)
    counts: dict[str, dict[dt.date, int]] = {}

    def day_counts(table: str) -> dict[dt.date, int]:
        if table not in counts:
            counts[table] = _days(store, f"SELECT toYYYYMMDD(ts) AS d, sum(readings) AS n "
                                         f"FROM {table}{where} GROUP BY d")
        return counts[table]

    out = []
    for r in (*ROLLUPS, *SCREEN_TABLES):
        up = UPSTREAM.get(r.table)
        if up is None or not _exists(store, r.table):
            continue
        mine, theirs = day_counts(r.table), day_counts(up)
        for day in sorted(set(mine) | set(theirs)):
            out.append(CascadeStatus(r.table, day, mine.get(day, 0), theirs.get(day, 0)))
    return out


def repair(
    store: Store,
    days: Iterable[dt.date] | None = None,
    *,
    domains: Iterable[str] = DOMAINS,
    progress: Callable[[str], None] | None = None,
    only_mismatched: bool = False,
) -> int:
    """Make the rollups of ``days`` (default: every day whose counts differ, per :func:`check`)
    exact; returns the number of (domain, day) pairs corrected. ``only_mismatched``: of
    ``days``, only those whose counts differ (a day that received no duplicate has exact
    rollups already, since each view saw each reading once).

    Tables are corrected upstream first (:data:`UPSTREAM`), each against the raw data after
    the corrections above it were stored: where the server passes a correction on to the
    views below (current servers) the later differences are then zero and nothing more is
    written; where it does not (18.16), the tables below get their own correction. So no
    correction is counted twice on either.

    Run it on closed days: readings that arrive for a day *while* it is repaired may be
    counted twice (the next repair fixes that too). Days without raw data (dropped by
    retention, or never loaded) are left alone: the rollups are then the only record.
    """
    wanted = set(domains)
    if days is None:
        status = check(store)
        pairs = sorted({(s.domain, s.day) for s in status if not s.ok and s.domain in wanted
                        and s.raw > 0})
    else:
        chosen = sorted(set(days))
        if not chosen:
            return 0
        have_raw = {(s.domain, s.day) for s in check(store, since=chosen[0], until=chosen[-1])
                    if s.raw > 0 and not (only_mismatched and s.ok)}
        pairs = [(d, day) for day in chosen for d in DOMAINS
                 if d in wanted and (d, day) in have_raw]
    for domain, day in pairs:
        if progress:
            progress(f"repairing rollups of {domain} for {day}")
        for r in (*ROLLUPS, *SCREEN_TABLES):
            if r.domain == domain and (r in ROLLUPS or _exists(store, r.table)):
                store.command(correction_sql(r, day))
    return len(pairs)
