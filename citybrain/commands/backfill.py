"""``citybrain backfill RECORDING``: load a simulator recording straight into the store.

Readings go to the raw tables (the rollups follow through their views); the derived tables
(indicators, anomalies, sensor health, district risk, alert events) come from the same stream
processor and model stack the workers run (:func:`streams.app.build_processor`), fed the
recording's frames in order without Kafka; the recording's labels go to ``groundtruth``. At the
end the rollups of the loaded days are made exact (:func:`store.rollups.repair`), since a
recording may hold duplicate frames.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


class _Tables:
    """Rows per table, inserted in batches."""

    def __init__(self, store: object, batch_rows: int) -> None:
        self.store = store
        self.batch_rows = batch_rows
        self.parts: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
        self.pending = 0
        self.rows: Counter[str] = Counter()

    def add(self, table: str, cols: dict[str, np.ndarray]) -> None:
        self.parts[table].append(cols)
        self.pending += len(next(iter(cols.values())))
        if self.pending >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        for table, parts in self.parts.items():
            cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
            self.rows[table] += self.store.insert(table, cols)  # type: ignore[attr-defined]
        self.parts.clear()
        self.pending = 0


def backfill(
    settings: Settings, path: Path, *, models: bool = True, batch_rows: int = 200_000,
    progress: bool = True,
) -> dict[str, object]:
    from sensors_sim.progress import Progress
    from sensors_sim.recording import Recording, RecordingError
    from store import open_store
    from store.rollups import repair
    from streams.app import build_processor
    from streams.codecs import decode_table
    from streams.processor import CityValidator, Message
    from streams.sink import frame_rows, indicator_rows, label_rows

    try:
        rec = Recording(path)
    except RecordingError as exc:
        raise CitybrainError(str(exc)) from None
    store = open_store(settings)
    t0 = time.monotonic()
    try:
        from config.city import load_city

        validator = CityValidator(load_city(settings.city_file))
        processor = build_processor(settings) if models else None
        out = _Tables(store, batch_rows)
        for label in rec.labels:
            out.add(*label_rows(label.to_json()))
        bar = Progress(total=rec.total_ticks, what="ticks", enabled=progress)
        days: set[dt.date] = set()
        dead: Counter[str] = Counter()
        readings = 0
        offset = 0
        batch: list[Message] = []
        batch_readings = 0

        def process(msgs: list[Message]) -> None:
            if processor is None:
                return
            res = processor.process(msgs)
            for _, value in res.indicators:
                out.add(*indicator_rows(value))
            for _, value in (*res.anomalies, *res.risk, *res.alerts):
                out.add(*decode_table(value))
            dead.update(res.dead_reasons)

        for i, tick in enumerate(rec.ticks(), start=1):
            for domain, gateway, n, value in tick.frames:
                try:
                    table, cols = frame_rows(value, settings.max_frame_bytes, validator)
                except Exception as exc:  # FrameError: counted like the sink does
                    dead[getattr(exc, "reason", "invalid")] += 1
                    continue
                out.add(table, cols)
                readings += n
                batch.append(Message(settings.topic(f"readings.{domain}"), 0, offset,
                                     gateway.encode(), value))
                offset += 1
                batch_readings += n
            days.add(dt.datetime.fromtimestamp(tick.t, dt.UTC).date())
            if batch_readings >= 50_000:
                process(batch)
                batch, batch_readings = [], 0
            bar.update(i, readings=readings)
        if batch:
            process(batch)
        out.flush()
        bar.close()
        fixed = repair(store, sorted(days))
    finally:
        store.close()
    return {
        "readings": readings, "rows": dict(out.rows), "invalid_or_late": dict(dead),
        "days": len(days), "days_repaired": fixed, "seconds": round(time.monotonic() - t0, 1),
    }


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    summary = backfill(settings, args.recording, models=not args.no_models,
                       batch_rows=args.batch_rows, progress=not args.quiet)
    rows = summary["rows"]
    assert isinstance(rows, dict)
    print(f"backfilled {summary['readings']} readings over {summary['days']} day(s) in "
          f"{summary['seconds']} s: " + ", ".join(f"{t}={n}" for t, n in sorted(rows.items())),
          file=sys.stderr)
    if summary["invalid_or_late"]:
        print(f"not stored as derived input (like the workers' dead letters): "
              f"{summary['invalid_or_late']}", file=sys.stderr)
    return 0
