"""ClickHouse server CPU per million stored readings: the schema without and with migration 011
(cascaded rollup views), interleaved, on the local ClickHouse server.

The same readings (default city, ``normal_day``, seed 1; ~1 M by default) are built into wide
raw-table blocks the way the sink does (frames buffered to ``sink_batch_rows`` readings, then
:func:`streams.sink.frames_table` per domain) and inserted with the store's columnar insert into
a fresh database, once with the migrations up to 010 (every rollup and screen view reads the raw
block) and once with all of them. The server's CPU time is read from ``/proc/<pid>/stat``
(utime + stime) before the first insert and after the background merges of the database have
settled (no merge running and the active part count unchanged for 2 s; no ``OPTIMIZE``), so the
figure includes the merges the inserts cause. The pid is the one ``scripts/services.py`` wrote
(``$CITYBRAIN_TEST_SERVICES_DIR/clickhouse/clickhouse.pid``) unless ``--pid`` is given; the
server should serve nothing else meanwhile. Derived rows (indicators etc.) are not inserted.

After the runs the last pair's rollup and screen tables are compared (counts exactly, sums to
1e-9 relative), so the figure is for the same contents.

    python -m bench.ch_insert --readings 1000000 --runs 3

prints JSON lines ``ch_cpu_s_per_million`` per variant (``old``, ``new``; median, min, max,
insert-only and user CPU) and ``ch_cpu_ratio_new_vs_old``; with ``--raw`` also a variant
without rollup views and ``ch_view_cpu_s_per_million`` (what the views add, old and new).
``--batch-rows``: 20 000 is the sink's flush (``sink_batch_rows``), 200 000 the backfill's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench._services import clickhouse_hostport

OLD_LAST = 10  # the schema before the cascaded views


def _say(msg: str) -> None:
    print(f"[bench ch_insert] {msg}", file=sys.stderr, flush=True)


def blocks(n: int, batch_rows: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The wide-table blocks of the first ``n`` readings, as the sink's flushes would build them."""
    from config.city import load_city
    from sensors_sim.engine import Simulator
    from sensors_sim.scenario import load_scenario
    from streams.sink import frames_table

    sim = Simulator(load_city(), load_scenario("normal_day"), seed=1, duration=30 * 86400.0)
    out: list[tuple[str, dict[str, np.ndarray]]] = []
    buf: dict[str, list[Any]] = {}
    held = done = 0

    def flush() -> None:
        nonlocal held
        for frames in buf.values():
            out.append(frames_table(frames))
        buf.clear()
        held = 0

    for _, step in sim.ticks():
        for f in step:
            buf.setdefault(f.domain, []).append(f)
            held += len(f)
            done += len(f)
            if held >= batch_rows:
                flush()
        if done >= n:
            break
    if held:
        flush()
    return out


def cpu_s(pid: int) -> float:
    return sum(cpu_user_sys(pid))


def cpu_user_sys(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def settle(store: Any, timeout_s: float = 120.0) -> None:
    """Wait until no merge of the database runs and its active part count holds for 2 s."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        df = store.query(
            "SELECT (SELECT count() FROM system.merges WHERE database = currentDatabase()) AS m, "
            "(SELECT count() FROM system.parts WHERE database = currentDatabase() AND active) AS p")
        merging, parts = int(df["m"].iloc[0]), int(df["p"].iloc[0])
        if merging or parts != last:
            last, since = parts, time.monotonic()
        elif time.monotonic() - since >= 2.0:
            return
        time.sleep(0.25)
    _say(f"merges did not settle within {timeout_s:.0f} s")


def ddl_upto(last: int, into: Path) -> Path:
    """A copy of the migrations up to number ``last`` in ``into``."""
    from store.schema import DDL_DIR

    into.mkdir(parents=True, exist_ok=True)
    for p in sorted(DDL_DIR.glob("*.sql")):
        if int(p.name[:3]) <= last:
            shutil.copy(p, into / p.name)
    return into


def one_run(hostport: str, pid: int, ddl_dir: Path | None,
            data: list[tuple[str, dict[str, np.ndarray]]], *, no_views: bool = False,
            ) -> tuple[float, float, float, str]:
    """(CPU s insert + merges, CPU s of the inserts alone, user CPU s of insert + merges,
    database) of one fresh database."""
    from config.city import load_city
    from store.dimensions import load_dimensions
    from store.schema import DDL_DIR, apply_schema
    from store.server import ServerStore

    host, _, port = hostport.rpartition(":")
    db = "bench_chins_" + uuid.uuid4().hex[:8]
    ServerStore(host=host, port=int(port), database="default").command(f"CREATE DATABASE {db}")
    store = ServerStore(host=host, port=int(port), database=db)
    apply_schema(store, ddl_dir=ddl_dir or DDL_DIR)
    load_dimensions(store, load_city())
    if no_views:  # the floor: the raw tables alone
        from store.rollups import ROLLUPS, SCREEN_TABLES

        for r in (*ROLLUPS, *SCREEN_TABLES):
            store.command(f"DROP TABLE IF EXISTS {r.view}")
    settle(store)
    u0 = cpu_user_sys(pid)[0]
    c0 = cpu_s(pid)
    for table, cols in data:
        store.insert(table, cols)
    c1 = cpu_s(pid)
    settle(store)
    c2 = cpu_s(pid)
    u2 = cpu_user_sys(pid)[0]
    store.close()
    return c2 - c0, c1 - c0, u2 - u0, db


def compare(hostport: str, old_db: str, new_db: str) -> float:
    """Largest relative difference of the rollup/screen sums of two databases (counts must be
    equal); raises if a count differs."""
    from store.rollups import ROLLUPS, SCREEN_TABLES
    from store.server import ServerStore

    host, _, port = hostport.rpartition(":")
    worst = 0.0
    for r in (*ROLLUPS, *SCREEN_TABLES):
        frames = []
        for db in (old_db, new_db):
            s = ServerStore(host=host, port=int(port), database=db)
            cols = [c for c in r.columns() if c not in ("ts", r.key)]
            df = s.query(f"SELECT ts, {r.key}, " + ", ".join(f"sum({c}) AS {c}" for c in cols)
                         + f" FROM {r.table} GROUP BY ts, {r.key} ORDER BY ts, {r.key}")
            s.close()
            frames.append(df)
        a, b = frames
        if len(a) != len(b) or not (a[["ts", r.key]].values == b[["ts", r.key]].values).all():
            raise SystemExit(f"{r.table}: different keys ({len(a)} vs {len(b)} rows)")
        for c in a.columns[2:]:
            x, y = a[c].to_numpy(np.float64), b[c].to_numpy(np.float64)
            if not c.endswith("_sum") and not np.array_equal(x, y):
                raise SystemExit(f"{r.table}.{c}: counts differ")
            rel = np.abs(x - y) / np.maximum(np.abs(x), 1.0)
            worst = max(worst, float(rel.max(initial=0.0)))
    return worst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=20_000)
    ap.add_argument("--pid", type=int, default=None)
    ap.add_argument("--raw", action="store_true",
                    help="also a third variant without any rollup view (the raw tables' floor)")
    a = ap.parse_args(argv)
    hostport = clickhouse_hostport()
    pid = a.pid
    if pid is None:
        pidfile = Path(os.environ.get("CITYBRAIN_TEST_SERVICES_DIR", "var/services"))
        pid = int((pidfile / "clickhouse" / "clickhouse.pid").read_text())
    _say(f"building {a.readings} readings")
    data = blocks(a.readings, a.batch_rows)
    total = sum(len(c["ts"]) for _, c in data)
    _say(f"{total} readings in {len(data)} blocks; server pid {pid}")
    names = ("old", "new", "raw") if a.raw else ("old", "new")
    res: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
    last: dict[str, str] = {}
    from store.server import ServerStore

    host, _, port = hostport.rpartition(":")
    admin = ServerStore(host=host, port=int(port), database="default")
    tmp = Path(tempfile.mkdtemp(prefix="citybrain-ddl-"))
    old_ddl = ddl_upto(OLD_LAST, tmp / "ddl")
    try:
        for i in range(a.runs):
            for variant in (names if i % 2 == 0 else names[::-1]):
                cpu, ins, user, db = one_run(hostport, pid, old_ddl if variant == "old" else None,
                                             data, no_views=variant == "raw")
                res[variant].append((cpu, ins, user))
                _say(f"run {i + 1} {variant}: {cpu:.2f} CPU-s ({ins:.2f} s during the inserts, "
                     f"{user:.2f} s user)")
                if variant in last:
                    admin.command(f"DROP DATABASE IF EXISTS {last[variant]}")
                last[variant] = db
        worst = compare(hostport, last["old"], last["new"])
    finally:
        for db in last.values():
            admin.command(f"DROP DATABASE IF EXISTS {db}")
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    per_m = 1e6 / total
    med = {}
    for variant, runs in res.items():
        tot = [c * per_m for c, _, _ in runs]
        ins_m = [i * per_m for _, i, _ in runs]
        user_m = [u * per_m for _, _, u in runs]
        med[variant] = statistics.median(tot)
        print(json.dumps({"name": "ch_cpu_s_per_million", "variant": variant, "value": med[variant],
                          "unit": "CPU-s per million readings", "runs": len(tot),
                          "min": min(tot), "max": max(tot),
                          "insert_only_median": statistics.median(ins_m),
                          "user_median": statistics.median(user_m), "all": tot, "readings": total,
                          "batch_rows": a.batch_rows, "includes": "inserts and merges, no OPTIMIZE",
                          "machine": os.uname().nodename}))
    print(json.dumps({"name": "ch_cpu_ratio_new_vs_old", "value": med["new"] / med["old"],
                      "unit": "ratio", "max_rel_sum_difference": worst}))
    if "raw" in med:  # what the views add over the raw tables alone
        print(json.dumps({"name": "ch_view_cpu_s_per_million",
                          "old": med["old"] - med["raw"], "new": med["new"] - med["raw"],
                          "value": (med["new"] - med["raw"]) / (med["old"] - med["raw"]),
                          "unit": "ratio new/old of (variant - raw) medians"}))


if __name__ == "__main__":
    main()
