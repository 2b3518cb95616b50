"""Warehouse: the same month-long question on the raw table and on the hourly rollup.

Loads a month of the default city into a fresh database on the local ClickHouse server
(started with ``scripts/services.py`` if it is not running, and stopped again): one reading per
sensor every 5 minutes (``store.synth``; 43 M readings, a tenth of the full rate, which would be
~420 M and take hours to load on this machine), then asks "daily mean speed per district for
the month" of ``readings_traffic`` (joined to ``dim_sensors``) and of
``rollup_traffic_district_1h``. Prints ``raw_query_s``, ``rollup_query_s``, ``raw_rows_read``,
``rollup_rows_read`` (median of ``runs``), the speed-up and the largest difference between the
two answers. ``--quick``: 3 days.
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
START = 1767225600  # 2026-01-01 00:00 UTC

RAW = """
SELECT district, toDate(ts) AS day, avg(speed_kmh) AS speed_kmh, count() AS readings
FROM readings_traffic
ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors
               WHERE domain = 'traffic' GROUP BY sensor_id) AS d USING sensor_id
GROUP BY district, day ORDER BY district, day
"""
ROLLUP = """
SELECT district, toDate(ts) AS day, sum(speed_kmh_sum) / sum(speed_kmh_count) AS speed_kmh,
       sum(readings) AS readings
FROM rollup_traffic_district_1h
GROUP BY district, day ORDER BY district, day
"""


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


def _timed(client: Any, sql: str) -> tuple[float, int, list]:
    t = time.perf_counter()
    rows = client.execute(sql)
    elapsed = time.perf_counter() - t
    return elapsed, int(client.last_query.progress.rows), rows


def run(runs: int = 3, quick: bool = False) -> Iterable[dict]:
    from clickhouse_driver import Client

    from config.city import load_city
    from store.dimensions import load_dimensions
    from store.schema import apply_schema
    from store.server import ServerStore
    from store.synth import synth_store

    started = False
    if not _tcp_open(CLICKHOUSE):
        _services("start")
        started = True
    host, _, port = CLICKHOUSE.rpartition(":")
    db = "bench_wh_" + uuid.uuid4().hex[:8]
    days = 3 if quick else 30
    store = ServerStore(host=host, port=int(port), database=db)
    try:
        city = load_city()
        apply_schema(store)
        load_dimensions(store, city)
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            print(f"\r[bench warehouse] loading {done}/{total} day-domains "
                  f"({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr, flush=True)

        info = synth_store(store, city, start=START, days=days, step_s=300, derived=False,
                           progress=progress)
        load_s = time.perf_counter() - t0
        print(file=sys.stderr)
        client = Client(host=host, port=int(port), database=db)
        raw_t, rol_t, raw_rows, rol_rows = [], [], 0, 0
        raw_res: list = []
        rol_res: list = []
        for _ in range(max(1, runs)):
            t, raw_rows, raw_res = _timed(client, RAW)
            raw_t.append(t)
            t, rol_rows, rol_res = _timed(client, ROLLUP)
            rol_t.append(t)
        diff = max(abs(a[2] - b[2]) for a, b in zip(raw_res, rol_res, strict=True))
        same_counts = all(a[3] == b[3] for a, b in zip(raw_res, rol_res, strict=True))
        common = {"runs": runs, "days": days, "readings": info.readings,
                  "traffic_readings": info.rows.get("readings_traffic", 0), "step_s": 300,
                  "server": f"ClickHouse {store.version()}"}
        yield {"name": "load_readings_per_s", "value": round(info.readings / load_s),
               "unit": "readings/s", "seconds": round(load_s, 1), **common}
        yield {"name": "raw_query_s", "value": round(statistics.median(raw_t), 4), "unit": "s",
               "min": round(min(raw_t), 4), "max": round(max(raw_t), 4), **common}
        yield {"name": "rollup_query_s", "value": round(statistics.median(rol_t), 4),
               "unit": "s", "min": round(min(rol_t), 4), "max": round(max(rol_t), 4), **common}
        yield {"name": "raw_rows_read", "value": raw_rows, "unit": "rows", **common}
        yield {"name": "rollup_rows_read", "value": rol_rows, "unit": "rows", **common}
        yield {"name": "rollup_speedup", "value": round(statistics.median(raw_t)
                                                        / statistics.median(rol_t), 1),
               "unit": "x", "max_abs_diff_kmh": diff, "same_reading_counts": same_counts,
               **common}
    finally:
        store.command(f"DROP DATABASE IF EXISTS {db}")
        store.close()
        if started:
            _services("stop")
