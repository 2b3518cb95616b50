"""``citybrain maintain``: the warehouse's scheduled upkeep.

- drops partitions older than the retention settings (``CITYBRAIN_RETENTION_*``; on ClickHouse
  18.16, which has no TTL, this is the only mechanism), and
- makes the rollups of recent days exact again after duplicate deliveries
  (:func:`store.rollups.repair`).

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
    from store.rollups import check, repair

    policy = RetentionPolicy.from_settings(settings)  # type: ignore[arg-type]
    dropped = drop_expired(store, policy, now=now)  # type: ignore[arg-type]
    status = check(store)  # type: ignore[arg-type]
    newest = max((s.day for s in status), default=None)
    bad = sorted({s.day for s in status if not s.ok and s.raw > 0
                  and (days == 0 or (newest and s.day > newest - dt.timedelta(days=days)))})
    fixed = repair(store, bad) if bad else 0  # type: ignore[arg-type]
    return (f"dropped {len(dropped)} partition(s) ({sum(e.rows for e in dropped)} rows); "
            f"repaired rollups of {fixed} day(s)")


def run(args: argparse.Namespace) -> int:
    from store import open_store
    from store.rollups import check

    settings = load_settings()
    store = open_store(settings)
    try:
        if args.check:
            bad = [s for s in check(store) if not s.ok]
            for s in bad:
                print(f"{s.domain} {s.day}: raw {s.raw} readings, rollup {s.rollup}")
            if not bad:
                print("rollups agree with the raw data")
            return 1 if bad else 0
        while True:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            print(f"{now:%Y-%m-%d %H:%M:%S} " + maintain_once(store, settings, days=args.days,
                                                             now=now), file=sys.stderr)
            if args.every <= 0:
                return 0
            time.sleep(args.every)
    finally:
        store.close()
