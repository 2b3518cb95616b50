"""Warehouse: the same month-long question on the raw table and on the hourly rollup, over a
month of *backfilled* data.

The month goes through the path an analyst would use: the simulator records a month of the
default city (``normal_day``, seed 1) with ``citybrain sim record``'s engine, and ``citybrain
backfill``'s engine loads the recording into a fresh database on the local ClickHouse server
(started with ``scripts/services.py`` if it is not running, and stopped again; see
:mod:`bench._services`). The city is the default one (its 5,000 sensors, gateways, roads and
districts) with every reporting interval multiplied by ``RATE_DIVISOR`` (10: a loop reports
every 5 minutes instead of 30 s), so the month holds about 42 M readings instead of ~417 M: a
full-rate month takes about half an hour to record and, with models, about an hour of two free
cores to load (``docs/analysts.md``, "Loading history" and "Speed"). The backfill stores readings only
(``--no-models``: the question reads the raw and rollup tables; derived outputs would multiply
the load time) unless ``models=True``.

Then it asks "daily mean speed per district for the month" of ``readings_traffic`` (joined to
``dim_sensors``) and of ``rollup_traffic_district_1h``, and prints ``raw_query_s``,
``rollup_query_s``, ``raw_rows_read``, ``rollup_rows_read`` (median of ``runs``), the speed-up
and the largest difference between the two answers, plus the recording and backfill rates.
``--quick``: 3 days.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench._services import running

RATE_DIVISOR = 10
SCENARIO = "normal_day"
SEED = 1
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


def reduced_rate_city(path: Path, divisor: int = RATE_DIVISOR) -> Path:
    """The default city with every reporting interval multiplied by ``divisor``."""
    import yaml

    from config.settings import DEFAULT_CITY

    doc = yaml.safe_load(DEFAULT_CITY.read_text())
    intervals = doc["generate"]["intervals"]
    doc["generate"]["intervals"] = {k: v * divisor for k, v in intervals.items()}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _timed(client: Any, sql: str) -> tuple[float, int, list]:
    t = time.perf_counter()
    rows = client.execute(sql)
    elapsed = time.perf_counter() - t
    return elapsed, int(client.last_query.progress.rows), rows


def run(runs: int = 3, quick: bool = False, *, models: bool = False,
        divisor: int = RATE_DIVISOR, days: int | None = None) -> Iterable[dict]:
    from clickhouse_driver import Client

    from citybrain.commands.backfill import backfill
    from config.city import load_city
    from config.settings import load_settings
    from sensors_sim.engine import Simulator
    from sensors_sim.progress import Progress
    from sensors_sim.recording import record
    from sensors_sim.scenario import load_scenario

    days = days or (3 if quick else 30)
    with running("clickhouse") as addr, tempfile.TemporaryDirectory(prefix="bench_wh_") as tmp:
        host, _, port = addr["clickhouse"].rpartition(":")
        db = "bench_wh_" + uuid.uuid4().hex[:8]
        city_file = reduced_rate_city(Path(tmp) / "city.yaml", divisor)
        rec = Path(tmp) / "month.cbr"
        city = load_city(city_file)
        sim = Simulator(city, load_scenario(SCENARIO), seed=SEED, duration=days * 86400,
                        start=START)
        t0 = time.perf_counter()
        print(f"[bench warehouse] recording {days} day(s) of {SCENARIO} (intervals x{divisor})",
              file=sys.stderr)
        stats = record(sim, rec, progress=Progress(total=(sim.end - sim.start) / sim.tick_s,
                                                   what="ticks"))
        record_s = time.perf_counter() - t0
        settings = load_settings(store="clickhouse", city_file=city_file,
                                 clickhouse_url=f"clickhouse://{host}:{port}/{db}")
        print(f"[bench warehouse] backfilling {stats.readings} readings "
              f"({'with' if models else 'without'} models)", file=sys.stderr)
        client = Client(host=host, port=int(port), database=db)
        try:
            summary = backfill(settings, rec, models=models, progress=True)
            load_s = float(summary["load_seconds"])  # type: ignore[arg-type]
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
            version = client.execute("SELECT version()")[0][0]
            rows = summary["rows"]
            assert isinstance(rows, dict)
            common = {"runs": runs, "days": days, "readings": summary["readings"],
                      "traffic_readings": rows.get("readings_traffic", 0),
                      "source": f"sim record {SCENARIO} seed {SEED}, intervals x{divisor}, "
                                f"then backfill{'' if models else ' --no-models'}",
                      "server": f"ClickHouse {version}"}
            yield {"name": "record_readings_per_s", "value": round(stats.readings / record_s),
                   "unit": "readings/s", "seconds": round(record_s, 1), **common}
            yield {"name": "backfill_readings_per_s",
                   "value": round(int(summary["readings"]) / load_s),  # type: ignore[call-overload]
                   "unit": "readings/s", "seconds": load_s, "models": models,
                   "workers": summary["workers"],
                   "repair_seconds": round(float(summary["seconds"]) - load_s, 1),  # type: ignore[arg-type]
                   **common}
            yield {"name": "raw_query_s", "value": round(statistics.median(raw_t), 4),
                   "unit": "s", "min": round(min(raw_t), 4), "max": round(max(raw_t), 4),
                   **common}
            yield {"name": "rollup_query_s", "value": round(statistics.median(rol_t), 4),
                   "unit": "s", "min": round(min(rol_t), 4), "max": round(max(rol_t), 4),
                   **common}
            yield {"name": "raw_rows_read", "value": raw_rows, "unit": "rows", **common}
            yield {"name": "rollup_rows_read", "value": rol_rows, "unit": "rows", **common}
            yield {"name": "rollup_speedup",
                   "value": round(statistics.median(raw_t) / statistics.median(rol_t), 1),
                   "unit": "x", "max_abs_diff_kmh": diff, "same_reading_counts": same_counts,
                   **common}
        finally:
            client.execute(f"DROP DATABASE IF EXISTS {db}")
            client.disconnect()


def main(argv: list[str] | None = None) -> int:
    import argparse

    import orjson

    p = argparse.ArgumentParser(prog="python -m bench.warehouse", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="3 days")
    p.add_argument("--days", type=int, default=None, help="days to record and load (default 30)")
    p.add_argument("--divisor", type=int, default=RATE_DIVISOR,
                   help=f"reporting intervals x this (default {RATE_DIVISOR}; 1: full rate)")
    p.add_argument("--models", action="store_true", help="backfill the derived outputs too")
    args = p.parse_args(argv)
    for line in run(args.runs, args.quick, models=args.models, divisor=args.divisor,
                    days=args.days):
        print(orjson.dumps(line).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
