"""Apply the numbered DDL migrations in ``config/ddl/NNN_name.sql``, idempotently.

Applied migrations are recorded in ``schema_migrations``; a migration runs once, in order, and
never drops data. Statements are separated by ``;`` at the end of a line. A statement preceded by
a line ``-- @if ttl`` runs only on servers that support TTL (ClickHouse ≥ 19.6); write its
fallback (for 18.16) under ``-- @if no_ttl``. ``-- @if comments`` marks table comments
(``ALTER TABLE … MODIFY COMMENT``), which 18.16 lacks; column comments work everywhere.
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
    applied = []
    for m in migrations(ddl_dir):
        if m.version in done:
            continue
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
