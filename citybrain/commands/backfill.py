"""``citybrain backfill RECORDING``: load a simulator recording straight into the store.

Readings go to the raw tables (the rollups follow through their views); the derived tables
(indicators, anomalies, sensor health, district risk, alert events) come from the same stream
processor and model stack the workers run (:func:`streams.app.build_processor`), fed the
recording's frames in order without Kafka; the recording's labels go to ``groundtruth``. At the
end the rollups of the loaded days whose counts disagree are made exact
(:func:`store.rollups.repair`), since a recording may hold duplicate frames.

The engine is :mod:`citybrain.backfill`: each model batch is decoded, validated and windowed as
whole numpy columns (:class:`citybrain.backfill.BatchLoader`, the same rows as the workers'
per-frame path), inserts run in a background thread, and with models the
sensor kinds are split over worker processes (``--workers``, default 2 on a multi-core machine
with models) while this process runs the city-wide ticks; the stored rows are the same as with
``--workers 1``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections import Counter
from pathlib import Path

from citybrain.errors import CitybrainError
from config.settings import Settings, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backfill",
        help="load a recording into the warehouse (readings, derived outputs, labels)",
        description="Load a recording (citybrain sim record) into the configured store without "
        "Kafka: raw readings, the derived outputs of the workers' models, and the ground-truth "
        "labels; then make the rollups of the loaded days exact.",
    )
    p.add_argument("recording", type=Path, help="the .cbr file")
    p.add_argument("--no-models", action="store_true",
                   help="load readings and labels only (no derived outputs)")
    p.add_argument("--batch-rows", type=int, default=200_000,
                   help="readings per insert (default 200000)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes, split by sensor kind (default with models: 2 on a "
                   "multi-core machine, else 1: everything in this process); the stored rows "
                   "are the same")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def default_workers(models: bool = True) -> int:
    """Worker processes by default: with models 2 on a multi-core machine (loops carry ~60 %
    of the default city's readings and one kind cannot be split, so a third worker would
    hardly shorten the longest share); readings only, 1 (measured no faster in parallel on
    this 2-core machine, where the server's views take the other core)."""
    return min(2, os.cpu_count() or 1) if models else 1


def backfill(
    settings: Settings, path: Path, *, models: bool = True, batch_rows: int = 200_000,
    progress: bool = True, workers: int | None = None, model_batch: int | None = None,
) -> dict[str, object]:
    """Load ``path``; ``workers`` ≥ 2 (default: :func:`default_workers`) decodes and runs the
    models in that many processes, split by sensor kind (:mod:`citybrain.backfill`), 1 runs
    everything in this process."""
    from citybrain.backfill import (
        MODEL_BATCH_READINGS,
        Batch,
        Inserter,
        Loaded,
        run_parallel,
        run_serial,
    )
    from sensors_sim.progress import Progress
    from sensors_sim.recording import Recording, RecordingError
    from store import open_store
    from store.rollups import repair
    from streams.sink import label_rows

    try:
        rec = Recording(path)
    except RecordingError as exc:
        raise CitybrainError(str(exc)) from None
    n_workers = default_workers(models) if workers is None else max(1, int(workers))
    mb = MODEL_BATCH_READINGS if model_batch is None else max(1, int(model_batch))
    store = open_store(settings)
    t0 = time.monotonic()
    try:
        inserter = Inserter(store, batch_rows)
        try:
            bar = Progress(total=rec.total_ticks, what="ticks", enabled=progress)
            days: set[dt.date] = set()
            dead: Counter[str] = Counter()
            readings = 0

            def on_batch(batch: Batch, loaded: Loaded) -> None:
                nonlocal readings
                readings += loaded.readings
                dead.update(loaded.dead)
                days.update(loaded.days)
                bar.update(min(batch.ticks, bar.total) if bar.total else batch.ticks,
                           readings=readings)

            groups: list[list[str]] = []
            if n_workers >= 2:
                groups = run_parallel(settings, rec, inserter, workers=n_workers,
                                      on_batch=on_batch, model_batch=mb, models=models)
            else:
                run_serial(settings, rec, inserter, models=models, on_batch=on_batch,
                           model_batch=mb)
            inserter.put([label_rows(label.to_json()) for label in rec.labels])
        finally:
            inserter.close()
        bar.close()
        load_s = time.monotonic() - t0
        fixed = repair(store, sorted(days), only_mismatched=True)
    finally:
        store.close()
    return {
        "readings": readings, "rows": dict(inserter.rows), "invalid_or_late": dict(dead),
        "days": len(days), "days_repaired": fixed, "seconds": round(time.monotonic() - t0, 1),
        "load_seconds": round(load_s, 1), "insert_seconds": round(inserter.insert_s, 1),
        "workers": [",".join(g) for g in groups] if groups else ["serial"],
    }


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    summary = backfill(settings, args.recording, models=not args.no_models,
                       batch_rows=args.batch_rows, progress=not args.quiet,
                       workers=args.workers)
    rows = summary["rows"]
    assert isinstance(rows, dict)
    load_s = float(summary["load_seconds"])  # type: ignore[arg-type]
    rate = int(summary["readings"]) / load_s if load_s > 0 else 0.0  # type: ignore[call-overload]
    print(f"backfilled {summary['readings']} readings over {summary['days']} day(s) in "
          f"{summary['seconds']} s ({rate:,.0f} readings/s; workers: "
          f"{' | '.join(summary['workers'])}): "  # type: ignore[arg-type]
          + ", ".join(f"{t}={n}" for t, n in sorted(rows.items())), file=sys.stderr)
    if summary["invalid_or_late"]:
        print(f"not stored as derived input (like the workers' dead letters): "
              f"{summary['invalid_or_late']}", file=sys.stderr)
    return 0
