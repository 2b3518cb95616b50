"""Apply the numbered DDL migrations in ``config/ddl/NNN_name.sql``, idempotently.

Applied migrations are recorded in ``schema_migrations``; a migration runs once, in order, and
never drops data. Statements are separated by ``;`` at the end of a line. A statement preceded by
a line ``-- @if ttl`` runs only on servers that support TTL (ClickHouse ≥ 19.6); write its
fallback (for 18.16) under ``-- @if no_ttl``. ``-- @if comments`` marks table comments
(``ALTER TABLE … MODIFY COMMENT``), which 18.16 lacks; column comments work everywhere.
``-- @if cascade_table`` / ``-- @if cascade_view`` choose how a materialized view reads another
view's output (see :func:`cascade_feature`); the server is probed only when a pending migration
uses them.

Migrations run while no writer inserts (``citybrain`` applies them when a process opens the
store, before it writes): a migration that replaces a view would otherwise miss the rows stored
in between.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from store.base import Store, StoreError, version_tuple

DDL_DIR = Path(__file__).resolve().parent.parent / "config" / "ddl"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self, features: set[str]) -> list[str]:
        out: list[str] = []
        current: list[str] = []
        condition: str | None = None
        for line in self.path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("-- @if "):
                condition = stripped[len("-- @if ") :].strip()
                continue
            if stripped.startswith("--") or not stripped:
                continue
            current.append(line)
            if stripped.endswith(";"):
                sql = "\n".join(current).rstrip().rstrip(";")
                if condition is None or condition in features:
                    out.append(sql)
                current, condition = [], None
        if current:
            raise StoreError(f"{self.path}: last statement does not end with ';'")
        return out


def migrations(ddl_dir: Path = DDL_DIR) -> list[Migration]:
    found = []
    for p in sorted(ddl_dir.glob("*.sql")):
        m = _NAME.match(p.name)
        if not m:
            raise StoreError(f"{p}: migration files are named NNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), p))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"{ddl_dir}: two migrations share a number: {versions}")
    return found


def features(store: Store) -> set[str]:
    v = version_tuple(store.version())
    out = {"ttl" if v >= (19, 6) else "no_ttl"}
    # column COMMENTs work on 18.16 already; ``comments`` means table comments
    # (ALTER TABLE … MODIFY COMMENT), which 18.16 lacks
    out.add("comments" if v >= (22, 1) else "no_comments")
    return out


_PROBE = "_citybrain_cascade_probe"


def cascade_feature(store: Store) -> str:
    """How this server passes a materialized view's output on to further views, found by trying.

    ``cascade_table``: the rows a view writes to its ``TO`` table trigger the views that select
    from that table (current ClickHouse, chDB 26.x). ``cascade_view``: they trigger the views
    that select from the view itself (ClickHouse 18.16). Uses throw-away Memory tables named
    ``_citybrain_cascade_probe_*`` in the current database, dropped again.
    """
    names = [f"{_PROBE}_{n}" for n in ("mv", "mv_t", "mv_v", "src", "mid", "out_t", "out_v")]
    mv, mv_t, mv_v, src, mid, out_t, out_v = names

    def drop() -> None:
        for n in names:
            store.command(f"DROP TABLE IF EXISTS {n}")

    drop()
    try:
        for t in (src, mid, out_t, out_v):
            store.command(f"CREATE TABLE {t} (x UInt8) ENGINE = Memory")
        store.command(f"CREATE MATERIALIZED VIEW {mv} TO {mid} AS SELECT x FROM {src}")
        store.command(f"CREATE MATERIALIZED VIEW {mv_t} TO {out_t} AS SELECT x FROM {mid}")
        store.command(f"CREATE MATERIALIZED VIEW {mv_v} TO {out_v} AS SELECT x FROM {mv}")
        store.command(f"INSERT INTO {src} (x) SELECT 1")
        got = store.query(f"SELECT (SELECT count() FROM {out_t}) AS t, "
                          f"(SELECT count() FROM {out_v}) AS v")
        by_table, by_view = int(got["t"].iloc[0]), int(got["v"].iloc[0])
    finally:
        drop()
    if by_table == 1:
        return "cascade_table"
    if by_view == 1:
        return "cascade_view"
    raise StoreError(
        f"ClickHouse {store.version()} passes a materialized view's rows to no further view "
        f"(probe: {by_table} via the TO table, {by_view} via the view); cascaded rollups "
        "(migration 011) need one of the two"
    )


def apply_schema(
    store: Store, *, ddl_dir: Path = DDL_DIR, progress: Callable[[str], None] | None = None
) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    store.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime('UTC') DEFAULT now()) ENGINE = MergeTree() ORDER BY version"
    )
    done = set(store.query("SELECT version FROM schema_migrations")["version"].astype(int))
    feats = features(store)
    pending = [m for m in migrations(ddl_dir) if m.version not in done]
    if any("-- @if cascade_" in m.path.read_text() for m in pending):
        feats.add(cascade_feature(store))
    applied = []
    for m in pending:
        if progress:
            progress(f"applying migration {m.version:03d}_{m.name}")
        for sql in m.statements(feats):
            try:
                store.command(sql)
            except StoreError as exc:
                raise StoreError(f"migration {m.path.name}: {exc}\n-- statement:\n{sql}") from None
        store.command(
            f"INSERT INTO schema_migrations (version, name) SELECT {m.version}, '{m.name}'"
        )
        applied.append(m.version)
    return applied
