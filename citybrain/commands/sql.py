"""``citybrain sql``: run a read-only query and print it as a table, CSV or JSON.

    citybrain sql "SELECT district, name FROM dim_districts FINAL ORDER BY district"
    citybrain sql --file query.sql --format csv > out.csv

Works against the ClickHouse server (``CITYBRAIN_STORE=clickhouse``) and in the embedded mode
(through the running hub). ClickHouse errors are printed as they are, with exit code 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import orjson
import pandas as pd

from citybrain.errors import CitybrainError
from config.settings import load_settings
from store.base import StoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sql",
        help="run a SQL query against the warehouse (read-only by default)",
        description="Run one SQL statement against the configured store: the ClickHouse "
        "server, or chDB through the running hub in the embedded mode. Read-only "
        "(readonly=1) unless --write; time and row limits apply. See docs/analysts.md.",
    )
    p.add_argument("query", nargs="?", help="the SQL statement (or use --file)")
    p.add_argument("-f", "--file", help="read the statement from this file ('-' = stdin)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output format (default: table)")
    p.add_argument("--max-rows", type=int, default=100_000, help="row limit (default 100000)")
    p.add_argument("--max-seconds", type=int, default=60, help="time limit (default 60)")
    p.add_argument("--write", action="store_true",
                   help="allow statements that change data (readonly=0)")
    p.set_defaults(func=run)


def _text(args: argparse.Namespace) -> str:
    if bool(args.query) == bool(args.file):
        raise CitybrainError("give the query as an argument or with --file, not both")
    if args.file:
        if args.file == "-":
            return sys.stdin.read()
        try:
            with open(args.file, encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise CitybrainError(f"cannot read {args.file}: {exc.strerror}") from None
    return str(args.query)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NULL"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_cell(x) for x in v) + "]"
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        return _cell(v.tolist())
    return str(v)


def format_table(df: pd.DataFrame) -> str:
    """An aligned text table: numbers right-aligned, text left-aligned."""
    cols = [str(c) for c in df.columns]
    cells = [[_cell(v) for v in row] for row in df.astype(object).itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    width = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(width[i]) if numeric[i] else v.ljust(width[i]) for i, v in enumerate(values)
        ).rstrip()

    out = [line(cols), "  ".join("-" * w for w in width)]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n"


def format_csv(df: pd.DataFrame) -> str:
    shown = df.copy()
    for c in shown.columns:
        if shown[c].dtype == object:
            shown[c] = shown[c].map(lambda v: _cell(v) if v is not None else "")
    return str(shown.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S"))


def format_json(df: pd.DataFrame) -> str:
    def conv(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, pd.Timestamp):
            return v.strftime("%Y-%m-%d %H:%M:%S")
        if hasattr(v, "tolist"):
            return v.tolist()
        return v

    rows = [{str(c): conv(v) for c, v in zip(df.columns, row, strict=True)}
            for row in df.astype(object).itertuples(index=False)]
    if not rows:
        return "[]\n"
    return "[\n" + ",\n".join(orjson.dumps(r).decode() for r in rows) + "\n]\n"


FORMATS = {"table": format_table, "csv": format_csv, "json": format_json}


def run(args: argparse.Namespace) -> int:
    from store.sql import run_sql

    text = _text(args)
    settings = load_settings()
    try:
        res = run_sql(settings, text, write=args.write, max_seconds=args.max_seconds,
                      max_rows=args.max_rows)
    except StoreError as exc:
        print(f"citybrain sql: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(FORMATS[args.format](res.frame))
    if res.truncated:
        print(f"citybrain sql: result cut at {args.max_rows} rows (--max-rows)", file=sys.stderr)
    return 0
