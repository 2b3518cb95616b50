"""``citybrain maintain``: the warehouse's scheduled upkeep.

- drops partitions older than the retention settings (``CITYBRAIN_RETENTION_*``; on ClickHouse
  18.16, which has no TTL, this is the only mechanism), and
- makes the rollups of recent days exact again after duplicate deliveries
  (:func:`store.rollups.repair`), and the cascaded rollups (views that read the 1-minute rollup,
  migration 011) where they disagree with the table they read (:func:`store.rollups.check_cascade`:
  e.g. a server upgraded from 18.16, whose views pass rows on differently; see docs/analysts.md).

Run it from cron, or keep it running with ``--every 3600``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from config.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "maintain",
        help="warehouse upkeep: drop expired partitions, repair recent rollups",
        description="Drop partitions older than the retention settings and make the rollups of "
        "recent days exact (duplicates). Once, or every --every seconds.",
    )
    p.add_argument("--days", type=int, default=3,
                   help="repair rollups of the last N days of data (default 3; 0 = all days)")
    p.add_argument("--check", action="store_true",
                   help="only report days whose rollup counts differ from the raw data")
    p.add_argument("--every", type=float, default=0.0, help="repeat every N seconds")
    p.set_defaults(func=run)


def maintain_once(store: object, settings: object, *, days: int, now: dt.datetime) -> str:
    from store.retention import RetentionPolicy, drop_expired
    from store.rollups import check, check_cascade, repair

    policy = RetentionPolicy.from_settings(settings)  # type: ignore[arg-type]
    dropped = drop_expired(store, policy, now=now)  # type: ignore[arg-type]
    status = check(store)  # type: ignore[arg-type]
    newest = max((s.day for s in status), default=None)
    cascade = [c for c in check_cascade(store) if not c.ok]  # type: ignore[arg-type]
    wrong = {s.day for s in status if not s.ok} | {c.day for c in cascade}
    with_data = {s.day for s in status if s.raw > 0}
    bad = sorted(d for d in wrong & with_data
                 if days == 0 or (newest and d > newest - dt.timedelta(days=days)))
    fixed = repair(store, bad) if bad else 0  # type: ignore[arg-type]
    note = (f"; {len({c.table for c in cascade})} cascaded rollup table(s) disagreed with the "
            "table they read (see `citybrain maintain --check`)") if cascade else ""
    return (f"dropped {len(dropped)} partition(s) ({sum(e.rows for e in dropped)} rows); "
            f"repaired rollups of {len(bad) if fixed else 0} day(s){note}")


def run(args: argparse.Namespace) -> int:
    from store import open_store
    from store.rollups import check, check_cascade

    settings = load_settings()
    store = open_store(settings)
    try:
        if args.check:
            bad = [s for s in check(store) if not s.ok]
            for s in bad:
                print(f"{s.domain} {s.day}: raw {s.raw} readings, rollup {s.rollup}")
            chain = [c for c in check_cascade(store) if not c.ok]
            for c in chain:
                print(f"{c.table} {c.day}: {c.readings} readings, the table it reads "
                      f"{c.upstream}")
            if not bad and not chain:
                print("rollups agree with the raw data")
            return 1 if bad or chain else 0
        while True:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            print(f"{now:%Y-%m-%d %H:%M:%S} " + maintain_once(store, settings, days=args.days,
                                                             now=now), file=sys.stderr)
            if args.every <= 0:
                return 0
            time.sleep(args.every)
    finally:
        store.close()
