"""Retention: raw data for N days, rollups for longer, by event time.

Two mechanisms, one policy (:class:`RetentionPolicy`, from the ``retention_*`` settings):

- **TTL**, where the server supports it (ClickHouse ≥ 19.6, e.g. chDB 26.x):
  :func:`apply_ttl` sets ``TTL ts + INTERVAL N DAY`` on each table (``ttl_only_drop_parts``, so
  whole expired parts go, as with partition drops), or removes it when N is 0.
- **Partition drops** everywhere (the only way on 18.16): :func:`drop_expired` drops every
  partition whose whole time span is older than N days. ``citybrain maintain`` runs it (once, or
  ``--every`` seconds); it is harmless where TTL already did the work.

Tables are partitioned by day (``toYYYYMMDD(ts)``) or month (``toYYYYMM(ts)``); a partition goes
when its last second is older than ``now - N days``, so nothing younger than N days is lost.

>>> p = RetentionPolicy(raw_days=30, rollup_1m_days=90, rollup_1h_days=0)
>>> p.days_for("readings_traffic"), p.days_for("rollup_traffic_sensor_1h")
(30, 0)
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from store.base import Store, StoreError, version_tuple
from store.rollups import ROLLUPS, SCREEN_TABLES

if TYPE_CHECKING:
    from config.settings import Settings

#: high-volume tables kept as long as the raw readings
RAW_TABLES: tuple[str, ...] = (
    "readings_traffic", "readings_environment", "readings_utility",
    "indicators", "anomalies", "district_risk",
    # the screen's time-first minute tables: it looks back a day, time travel needs no more
    # than the raw data it complements
    *(r.table for r in SCREEN_TABLES),
)
ROLLUP_1M: tuple[str, ...] = tuple(r.table for r in ROLLUPS if r.grain == "1m")
ROLLUP_1H: tuple[str, ...] = tuple(r.table for r in ROLLUPS if r.grain == "1h")


@dataclass(frozen=True)
class RetentionPolicy:
    """Days of event time to keep per table group; 0 keeps forever."""

    raw_days: int = 0
    rollup_1m_days: int = 0
    rollup_1h_days: int = 0

    def __post_init__(self) -> None:
        for name in ("raw_days", "rollup_1m_days", "rollup_1h_days"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        order = [("raw_days", self.raw_days), ("rollup_1m_days", self.rollup_1m_days),
                 ("rollup_1h_days", self.rollup_1h_days)]
        for (a, va), (b, vb) in itertools.pairwise(order):
            # a coarser level must keep at least as long as a finer one (0 = forever)
            if (va == 0 and vb != 0) or (va and vb and vb < va):
                raise ValueError(
                    f"retention {b}={vb} is shorter than {a}={va}: rollups must be kept at "
                    "least as long as the data they summarise (0 = forever)"
                )

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        from config.errors import ConfigError

        try:
            return cls(
                raw_days=settings.retention_raw_days,
                rollup_1m_days=settings.retention_rollup_1m_days,
                rollup_1h_days=settings.retention_rollup_1h_days,
            )
        except ValueError as exc:
            raise ConfigError(f"CITYBRAIN_RETENTION_*: {exc}") from None

    def days_for(self, table: str) -> int:
        if table in RAW_TABLES:
            return self.raw_days
        if table in ROLLUP_1M:
            return self.rollup_1m_days
        if table in ROLLUP_1H:
            return self.rollup_1h_days
        raise StoreError(f"no retention rule for table {table!r}")

    def tables(self) -> dict[str, int]:
        return {t: self.days_for(t) for t in (*RAW_TABLES, *ROLLUP_1M, *ROLLUP_1H)}


def supports_ttl(store: Store) -> bool:
    return version_tuple(store.version()) >= (19, 6)


_TTL = re.compile(r"\bTTL\s+(.*?)(?:\s+SETTINGS\b|$)", re.S)


def current_ttl(store: Store, table: str) -> str | None:
    """The table's TTL expression as the server prints it, or ``None``."""
    df = store.query(
        "SELECT engine_full FROM system.tables "
        f"WHERE database = currentDatabase() AND name = '{table}'"
    )
    if df.empty:
        raise StoreError(f"no table {table!r} in this database")
    m = _TTL.search(str(df["engine_full"].iloc[0]))
    return m.group(1).strip() if m else None


def apply_ttl(store: Store, policy: RetentionPolicy) -> list[str]:
    """Make each table's TTL match ``policy`` (servers with TTL only); returns changed tables."""
    if not supports_ttl(store):
        return []
    changed = []
    for table, days in policy.tables().items():
        ttl = current_ttl(store, table)
        if days == 0:
            if ttl is not None:
                store.command(f"ALTER TABLE {table} REMOVE TTL")
                changed.append(table)
            continue
        if ttl is not None and f"toIntervalDay({days})" in ttl.replace(" ", ""):
            continue
        store.command(f"ALTER TABLE {table} MODIFY SETTING ttl_only_drop_parts = 1")
        store.command(f"ALTER TABLE {table} MODIFY TTL ts + toIntervalDay({days})")
        changed.append(table)
    return changed


def partition_end(partition: str) -> dt.datetime:
    """The first instant after a ``YYYYMMDD`` or ``YYYYMM`` partition (naive UTC)."""
    p = partition.strip("'")
    if re.fullmatch(r"\d{8}", p):
        return dt.datetime.strptime(p, "%Y%m%d") + dt.timedelta(days=1)
    if re.fullmatch(r"\d{6}", p):
        y, m = int(p[:4]), int(p[4:])
        return dt.datetime(y + m // 12, m % 12 + 1, 1)
    raise StoreError(f"partition {partition!r} is not YYYYMMDD or YYYYMM")


@dataclass(frozen=True)
class Expired:
    table: str
    partition: str
    rows: int


def expired_partitions(store: Store, policy: RetentionPolicy, *, now: dt.datetime) -> list[Expired]:
    """Partitions wholly older than their table's retention at ``now`` (naive UTC)."""
    rules = {t: d for t, d in policy.tables().items() if d > 0}
    if not rules:
        return []
    names = ", ".join(f"'{t}'" for t in rules)
    df = store.query(
        "SELECT table, partition, sum(rows) AS rows FROM system.parts "
        f"WHERE database = currentDatabase() AND active AND table IN ({names}) "
        "GROUP BY table, partition ORDER BY table, partition"
    )
    out = []
    for table, partition, rows in df[["table", "partition", "rows"]].itertuples(index=False):
        if partition_end(str(partition)) <= now - dt.timedelta(days=rules[str(table)]):
            out.append(Expired(str(table), str(partition), int(rows)))
    return out


def drop_expired(store: Store, policy: RetentionPolicy, *, now: dt.datetime) -> list[Expired]:
    """Drop the partitions :func:`expired_partitions` lists; returns them."""
    gone = expired_partitions(store, policy, now=now)
    for e in gone:
        store.command(f"ALTER TABLE {e.table} DROP PARTITION {e.partition.strip(chr(39))}")
    return gone
