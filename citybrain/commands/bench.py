"""``citybrain bench NAME``: run a benchmark from :mod:`bench` and print JSON lines."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys

import orjson

import bench
from citybrain.errors import CitybrainError


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark; prints one JSON line per measurement",
        description="Run a benchmark (starting the services it needs) and print one JSON line "
        "per measurement: {\"name\": ..., \"value\": ..., \"unit\": ..., ...}. "
        f"Benchmarks: {', '.join(available())}.",
    )
    p.add_argument("name", help="benchmark name")
    p.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    p.add_argument("--quick", action="store_true", help="smaller workload (smoke test)")
    p.set_defaults(func=run)


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def run(args: argparse.Namespace) -> int:
    if args.name not in available():
        raise CitybrainError(f"unknown benchmark {args.name!r} (known: {', '.join(available())})")
    module = importlib.import_module(f"bench.{args.name}")
    for line in module.run(runs=args.runs, quick=args.quick):
        line.setdefault("machine", machine())
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stdout.flush()
    return 0
