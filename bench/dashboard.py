"""``citybrain bench dashboard``: the server side of one live refresh of the overview.

Seeds a database on the local ClickHouse server (started with ``scripts/services.py`` when it
is not answering, stopped again afterwards) with a simulated day of the default city (5,000
sensors, ``bad_day``: 13.9 M readings plus derived rows; ``--quick``: two hours), then times
what one browser refresh costs the server: the snapshot's queries, the KPIs, the map and the
sparklines, the alert feed, and the JSON encoding of the callback's response. The shared
snapshot cache is cleared before every refresh (so each one queries the store), and so are
the answers kept by data version (``dashboards.data.ResultCache``: with nothing new, a refresh
would ask nothing); the trend chunks of the past stay cached, as they do in a running screen. With
``CITYBRAIN_TEST_BENCH_ARRIVALS=1``, before every refresh (untimed) a few readings of the newest
second are stored again in each raw table (``_Arrivals``): as live, each refresh then finds new
parts (one sink flush) to read for its freshness and windows, and the server merges them in the
background meanwhile (counted in ``cpu_server_ms``); the kept answers then stay (the
derived tables get no new part, so their queries are not asked again; the readings' minute
tables and rollups do, so theirs are).

Prints ``dashboard_refresh_p50_s`` and ``dashboard_refresh_p95_s`` (seconds), with the median
time of each query as extra fields. A second pair, ``..._merged``, repeats the measurement after
``OPTIMIZE ... FINAL`` has merged the day into one part per table (the raw tables, the 1-minute
rollups and the screen's minute tables): tables ordered by sensor first then read the whole day
for a time window (see docs/dashboard.md).

Baseline, measured in the same run, refresh for refresh alternating with the measurement (the
machine's load changes both alike): the same screen reading the per-sensor rollups
(``rollup_<domain>_sensor_1m``, ordered by sensor first) instead of the time-first minute
tables, its queries one after the other on one connection. Its p50/p95 are the
``baseline_p50_s``/``baseline_p95_s`` fields, and ``speedup_p50`` their ratio. ``cpu_*_ms`` are
the CPU milliseconds per refresh of this process and of the ClickHouse server (when its pid
file is found), which say more than wall times on a loaded machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench._services import running

ROOT = Path(__file__).resolve().parent.parent
DAY_START = 1767830400  # bad_day: 2026-01-08 00:00 UTC


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _server_pid() -> int | None:
    services = os.environ.get("CITYBRAIN_TEST_SERVICES_DIR", str(ROOT / "var" / "services"))
    try:
        return int((Path(services) / "clickhouse" / "clickhouse.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Arrivals:
    """What a live screen sees between two refreshes: the sink stored a little more. Before
    every refresh (untimed), a few readings of the newest second of each domain are stored
    again: one new part per raw table and per minute table, like one sink flush, so the
    refresh reads its new parts (freshness) and its windows' newest minute grows, as live.
    The newest event time does not move (the bench looks at one moment), and the copies are
    duplicates (the rollups count them, as they would a redelivered frame)."""

    def __init__(self, store: Any, rows: int = 60) -> None:
        import numpy as np

        self.store = store
        self.batches: dict[str, dict[str, Any]] = {}
        for d in ("traffic", "environment", "utility"):
            df = store.query(f"SELECT * FROM readings_{d} WHERE ts = "
                             f"(SELECT max(ts) FROM readings_{d}) LIMIT {int(rows)}")
            cols: dict[str, Any] = {}
            for c in df.columns:
                if c == "ingested_at":
                    continue
                col = df[c]
                if col.dtype.kind == "M":
                    cols[c] = col.to_numpy().astype("datetime64[s]")
                elif col.dtype.kind in "iuf":
                    cols[c] = col.to_numpy()
                elif c in ("sensor_id", "gateway"):
                    cols[c] = col.to_numpy(dtype=object)
                else:  # Nullable metrics: None -> NaN
                    cols[c] = np.array([np.nan if v is None else v for v in col], dtype=float)
            if len(df):
                self.batches[d] = cols

    def __call__(self) -> None:
        for d, cols in self.batches.items():
            self.store.insert(f"readings_{d}", cols)


class _Screen:
    """One app and how to refresh it: ``minutes`` is the per-sensor minute table it reads."""

    def __init__(self, app: Any, minutes: str) -> None:
        self.app, self.minutes = app, minutes
        self.times: list[float] = []
        self.parts: dict[str, list[float]] = {}
        self.cpu = [0.0, 0.0]

    def refresh(self, server: int | None, arrive: Any = None) -> None:
        from plotly.io.json import to_json_plotly

        from store import queries

        if arrive is not None:
            arrive()
        cfg = self.app.server.config
        queries.SENSOR_MINUTES = self.minutes
        cfg["CITYBRAIN_CACHE"].clear()
        if arrive is None:
            # nothing arrives between two refreshes at a fixed moment: every answer would be
            # kept (``ResultCache``); cleared, each refresh asks every query, as before
            cfg["CITYBRAIN_RESULTS"].clear()
        c0, s0 = _cpu_s(os.getpid()), _cpu_s(server)
        t0 = time.perf_counter()
        out = cfg["CITYBRAIN_OVERVIEW"]()
        to_json_plotly(out)
        self.times.append(time.perf_counter() - t0)
        self.cpu[0] += _cpu_s(os.getpid()) - c0
        self.cpu[1] += _cpu_s(server) - s0
        # the snapshot this refresh built (asking CITYBRAIN_SNAPSHOT could build another one
        # once the cache's TTL has passed on a loaded machine)
        snap = cfg["CITYBRAIN_CACHE"].peek(("live",))
        for k, v in (snap.timings if snap is not None else {}).items():
            self.parts.setdefault(k, []).append(v)


def _measure(screen: _Screen, baseline: _Screen, refreshes: int,
             arrive: Any = None) -> tuple[list[float], dict[str, float]]:
    server = _server_pid()
    for s in (screen, baseline):
        s.times.clear()
        s.parts.clear()
        s.cpu = [0.0, 0.0]
    with screen.app.server.test_request_context("/"):
        screen.refresh(server)  # warm: imports, trend chunks of the past
        baseline.refresh(server)
        for s in (screen, baseline):
            s.times.clear()
            s.parts.clear()
            s.cpu = [0.0, 0.0]
        kept = screen.app.server.config["CITYBRAIN_RESULTS"]
        hits0, misses0 = kept.hits, kept.misses
        for _ in range(refreshes):
            screen.refresh(server, arrive)
            baseline.refresh(server, arrive)
        kept_hits, kept_misses = kept.hits - hits0, kept.misses - misses0
    from store import queries

    queries.SENSOR_MINUTES = screen.minutes
    extra = {f"{k}_ms": round(1000 * statistics.median(v), 2) for k, v in screen.parts.items()}
    b = baseline.times
    extra.update({
        "baseline_p50_s": round(statistics.median(b), 4), "baseline_p95_s": round(_pct(b, 0.95), 4),
        "speedup_p50": round(statistics.median(b) / statistics.median(screen.times), 2),
        "cpu_client_ms": round(1000 * screen.cpu[0] / refreshes, 1),
        "baseline_cpu_client_ms": round(1000 * baseline.cpu[0] / refreshes, 1),
        # answers kept by data version / queries asked, per refresh (ResultCache)
        "kept_answers": round(kept_hits / refreshes, 1),
        "asked_queries": round(kept_misses / refreshes, 1),
    })
    if server is not None:
        extra["cpu_server_ms"] = round(1000 * screen.cpu[1] / refreshes, 1)
        extra["baseline_cpu_server_ms"] = round(1000 * baseline.cpu[1] / refreshes, 1)
    return screen.times, extra


def run(runs: int, quick: bool) -> Iterable[dict[str, Any]]:
    with running("clickhouse") as addresses:
        yield from _run(addresses["clickhouse"], runs, quick)


def _run(clickhouse: str, runs: int, quick: bool) -> Iterable[dict[str, Any]]:
    from config.city import load_city
    from config.settings import load_settings
    from dashboards.app import create_app
    from dashboards.seed import seed_store
    from store.schema import apply_schema
    from store.server import ServerStore

    host, _, port = clickhouse.rpartition(":")
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
                                 clickhouse_url=f"clickhouse://{clickhouse}/{db}")
        import dashboards.app as dash_app
        from store import queries

        screen = _Screen(create_app(store, settings), queries.SENSOR_MINUTES)
        connections = dash_app.QUERY_CONNECTIONS
        dash_app.QUERY_CONNECTIONS = 1  # the baseline: one connection, queries in turn
        try:
            baseline = _Screen(create_app(store, settings), "rollup_{domain}_sensor_1m")
        finally:
            dash_app.QUERY_CONNECTIONS = connections
        refreshes = max(1, runs) * (10 if quick else 20)
        # live arrivals are opt-in: they add the server's background merges of the new parts
        # to every refresh, so the default stays comparable with earlier measurements
        # (a CITYBRAIN_TEST_ name: the settings refuse other unknown CITYBRAIN_ variables)
        live = os.environ.get("CITYBRAIN_TEST_BENCH_ARRIVALS") == "1"
        arrive = _Arrivals(store) if live else None
        extra = {"runs": refreshes, "city_sensors": 5000, "readings": info.readings,
                 "live_arrivals": arrive is not None,
                 "backend": f"ClickHouse {store.version()}", "seed_s": round(seed_s, 1),
                 "query_connections": connections}
        times, parts = _measure(screen, baseline, refreshes, arrive)
        yield {"name": "dashboard_refresh_p50_s", "value": round(statistics.median(times), 4),
               "unit": "s", **extra, **parts}
        yield {"name": "dashboard_refresh_p95_s", "value": round(_pct(times, 0.95), 4),
               "unit": "s", "min": round(min(times), 4), "max": round(max(times), 4), **extra,
               "baseline_p95_s": parts["baseline_p95_s"]}
        if not quick:
            # the raw tables, the rollups and the minute tables the screen reads, all merged
            tables = [f"readings_{d}" for d in ("traffic", "environment", "utility")]
            tables += [f"{p}_{d}_{e}_1m" for d in ("traffic", "environment", "utility")
                       for p, e in (("rollup", "sensor"), ("rollup", "district"),
                                    ("dash", "sensor"))]
            for table in tables:
                store.command(f"OPTIMIZE TABLE {table} FINAL")
            times, parts = _measure(screen, baseline, max(1, runs) * 10, arrive)
            yield {"name": "dashboard_refresh_p50_s_merged",
                   "value": round(statistics.median(times), 4), "unit": "s",
                   **extra, "runs": len(times), **parts}
            yield {"name": "dashboard_refresh_p95_s_merged", "value": round(_pct(times, 0.95), 4),
                   "unit": "s", **extra, "runs": len(times),
                   "baseline_p95_s": parts["baseline_p95_s"]}
    finally:
        store.command(f"DROP DATABASE IF EXISTS {db}")
        store.close()
