"""Analysts' SQL: one read-only query against the configured store, in either mode.

- Server mode (``store=clickhouse``): straight to the server (native protocol).
- Embedded mode (``store=chdb``): the hub owns chDB, so the query goes to its ``POST /api/sql``;
  when no hub answers, chDB is opened directly (only one process may hold it).

Queries run with ``readonly=1`` unless ``write=True``, with a time limit and a row limit
(``result_overflow_mode=break``: the result is cut, and :class:`Result` says so).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from store.base import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from config.settings import Settings


@dataclass
class Result:
    frame: pd.DataFrame
    truncated: bool
    via: str  # "server", "hub" or "chdb"


def limits(*, write: bool, max_seconds: int, max_rows: int) -> dict[str, int | str]:
    # readonly goes last: once it is 1 the server refuses to change further settings
    out: dict[str, int | str] = {
        "max_execution_time": int(max_seconds),
        "max_result_rows": int(max_rows),
        "result_overflow_mode": "break",
    }
    if not write:
        out["readonly"] = 1
    return out


def clean(sql: str) -> str:
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise StoreError("empty query")
    return text


def run_sql(
    settings: Settings,
    sql: str,
    *,
    write: bool = False,
    max_seconds: int = 60,
    max_rows: int = 100_000,
    timeout_s: float | None = None,
) -> Result:
    """Run one statement; ClickHouse errors raise :class:`StoreError` with the server's text."""
    text = clean(sql)
    opts = limits(write=write, max_seconds=max_seconds, max_rows=max_rows)
    if settings.store == "clickhouse":
        from store import open_store

        store = open_store(settings, apply=False)
        try:
            df = store.query(text, settings=opts)
        finally:
            store.close()
        return _result(df, max_rows, "server")
    try:
        df = via_hub(settings.hub_url, text, write=write, max_seconds=max_seconds,
                     max_rows=max_rows, timeout_s=timeout_s or max_seconds + 10)
        return _result(df, max_rows, "hub")
    except StoreUnavailable:
        pass
    from store.embedded import EmbeddedStore

    try:
        store2 = EmbeddedStore(path=settings.chdb_path)
    except StoreError as exc:
        raise StoreUnavailable(
            f"no hub answers at {settings.hub_url} and chDB at {settings.chdb_path} cannot be "
            f"opened ({exc}); start the hub (citybrain up) or point CITYBRAIN_HUB_URL at it"
        ) from None
    try:
        df = store2.query(text, settings=opts)
    finally:
        store2.close()
    return _result(df, max_rows, "chdb")


def _result(df: pd.DataFrame, max_rows: int, via: str) -> Result:
    truncated = len(df) >= max_rows
    return Result(df.iloc[:max_rows] if truncated else df, truncated, via)


def via_hub(
    hub_url: str, sql: str, *, write: bool, max_seconds: int, max_rows: int, timeout_s: float
) -> pd.DataFrame:
    body = json.dumps({
        "sql": sql, "write": write, "max_execution_time": max_seconds,
        "max_result_rows": max_rows,
    }).encode()
    req = urllib.request.Request(
        hub_url.rstrip("/") + "/api/sql", data=body,
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            payload: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read())
        except ValueError:
            raise StoreError(f"hub {hub_url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StoreUnavailable(f"hub {hub_url}: {exc}") from None
    if "error" in payload:
        raise StoreError(str(payload["error"]))
    return pd.DataFrame(payload["rows"], columns=payload["columns"])
