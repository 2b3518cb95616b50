"""``citybrain bench dashboard``: the server side of one live refresh of the overview.

Seeds a database on the local ClickHouse server (started with ``scripts/services.py`` when it
is not answering, stopped again afterwards) with a simulated day of the default city (5,000
sensors, ``bad_day``: 13.9 M readings plus derived rows; ``--quick``: two hours), then times
what one browser refresh costs the server: the snapshot's queries, the KPIs, the map and the
sparklines, the alert feed, and the JSON encoding of the callback's response. The shared
snapshot cache is cleared before every refresh (so each one queries the store); the trend
chunks of the past stay cached, as they do in a running screen.

Prints ``dashboard_refresh_p50_s`` and ``dashboard_refresh_p95_s`` (seconds), with the median
time of each query as extra fields. A second pair, ``..._merged``, repeats the measurement after
``OPTIMIZE ... FINAL`` has merged the day into one part per table (the raw tables and the
1-minute rollups the screen reads): tables ordered by sensor first then read the whole day for a
time window (see docs/dashboard.md).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLICKHOUSE = os.environ.get("CITYBRAIN_TEST_CLICKHOUSE", "127.0.0.1:39000")
DAY_START = 1767830400  # bad_day: 2026-01-08 00:00 UTC


def _tcp_open(hostport: str) -> bool:
    import socket

    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _services(action: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "services.py"), action, "clickhouse"],
                   check=True, stdout=sys.stderr)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _measure(app: Any, refreshes: int) -> tuple[list[float], dict[str, float]]:
    from plotly.io.json import to_json_plotly

    cache = app.server.config["CITYBRAIN_CACHE"]
    overview = app.server.config["CITYBRAIN_OVERVIEW"]
    snap_of = app.server.config["CITYBRAIN_SNAPSHOT"]
    times: list[float] = []
    parts: dict[str, list[float]] = {}
    with app.server.test_request_context("/"):
        overview()  # warm: imports, trend chunks of the past
        for _ in range(refreshes):
            cache.clear()
            t0 = time.perf_counter()
            out = overview()
            to_json_plotly(out)
            times.append(time.perf_counter() - t0)
            for k, v in snap_of(None).timings.items():
                parts.setdefault(k, []).append(v)
    return times, {f"{k}_ms": round(1000 * statistics.median(v), 2) for k, v in parts.items()}


def run(runs: int, quick: bool) -> Iterable[dict[str, Any]]:
    from config.city import load_city
    from config.settings import load_settings
    from dashboards.app import create_app
    from dashboards.seed import seed_store
    from store.schema import apply_schema
    from store.server import ServerStore

    started = False
    if not _tcp_open(CLICKHOUSE):
        _services("start")
        started = True
    host, _, port = CLICKHOUSE.rpartition(":")
    db = "bench_dash_" + uuid.uuid4().hex[:8]
    store = ServerStore(host=host, port=int(port), database=db)
    try:
        apply_schema(store)
        span = 2 * 3600 if quick else 86400
        t0 = time.perf_counter()
        info = seed_store(store, load_city(), scenario="bad_day", start=DAY_START,
                          duration_s=span,
                          progress=lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
        seed_s = time.perf_counter() - t0
        settings = load_settings(store="clickhouse",
                                 clickhouse_url=f"clickhouse://{CLICKHOUSE}/{db}")
        app = create_app(store, settings)
        refreshes = max(1, runs) * (10 if quick else 20)
        extra = {"runs": refreshes, "city_sensors": 5000, "readings": info.readings,
                 "backend": f"ClickHouse {store.version()}", "seed_s": round(seed_s, 1)}
        times, parts = _measure(app, refreshes)
        yield {"name": "dashboard_refresh_p50_s", "value": round(statistics.median(times), 4),
               "unit": "s", **extra, **parts}
        yield {"name": "dashboard_refresh_p95_s", "value": round(_pct(times, 0.95), 4),
               "unit": "s", "min": round(min(times), 4), "max": round(max(times), 4), **extra}
        if not quick:
            # the raw tables and the rollups the screen reads, all merged
            tables = [f"readings_{d}" for d in ("traffic", "environment", "utility")]
            tables += [f"rollup_{d}_{e}_1m" for d in ("traffic", "environment", "utility")
                       for e in ("sensor", "district")]
            for table in tables:
                store.command(f"OPTIMIZE TABLE {table} FINAL")
            times, parts = _measure(app, max(1, runs) * 5)
            yield {"name": "dashboard_refresh_p50_s_merged",
                   "value": round(statistics.median(times), 4), "unit": "s",
                   **extra, "runs": len(times), **parts}
            yield {"name": "dashboard_refresh_p95_s_merged", "value": round(_pct(times, 0.95), 4),
                   "unit": "s", **extra, "runs": len(times)}
    finally:
        store.command(f"DROP DATABASE IF EXISTS {db}")
        store.close()
        if started:
            _services("stop")
