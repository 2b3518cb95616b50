"""``citybrain score INPUT.csv -o OUT.csv``: the streaming detector over one series.

Runs the same seasonal robust detector the workers use (:mod:`models.detectors.seasonal`, with
``config/models.yaml``) over the rows in time order and writes
``timestamp,value,anomaly_score``; scores are in [0, 1] at full float precision (``repr``), 0
while the detector is still learning, empty for a missing value. Causal: the scores of a
prefix of the file equal the first scores of the whole file.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

from citybrain.errors import CitybrainError

CHUNK = 4096


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score one time series from a CSV with the streaming anomaly detector",
        description="Read INPUT.csv (a timestamp column: epoch seconds or ISO 8601; a value "
        "column), run the streaming seasonal detector in time order and write "
        "timestamp,value,anomaly_score to OUT.csv (score in [0, 1]).",
    )
    p.add_argument("input", type=Path, help="input CSV with a header row")
    p.add_argument("-o", "--output", type=Path, required=True, help="output CSV ('-' = stdout)")
    p.add_argument(
        "--timestamp-col", default="timestamp", help="timestamp column (default: timestamp)"
    )
    p.add_argument("--value-col", default="value", help="value column (default: value)")
    p.add_argument(
        "--domain",
        default=None,
        choices=["traffic", "environment", "utility"],
        help="domain whose threshold is reported (config/models.yaml thresholds)",
    )
    p.add_argument(
        "--params", type=Path, default=None, help="model parameters (default: config/models.yaml)"
    )
    p.set_defaults(func=run)


def _parse_ts(raw: str, line: int, path: Path) -> float:
    s = raw.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise CitybrainError(
            f"{path}: line {line}: timestamp {raw!r} is neither epoch seconds nor ISO 8601"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_value(raw: str, line: int, path: Path) -> float:
    s = raw.strip()
    if s == "" or s.lower() in ("nan", "null", "na"):
        return math.nan
    try:
        v = float(s)
    except ValueError:
        raise CitybrainError(f"{path}: line {line}: value {raw!r} is not a number") from None
    return v if math.isfinite(v) else math.nan


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from models.base import Batch
    from models.detectors.seasonal import SeasonalDetector
    from models.params import load_params

    params = load_params(args.params)
    path: Path = args.input
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise CitybrainError(f"{path}: cannot read ({exc.strerror})") from exc
    with fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        for c in (args.timestamp_col, args.value_col):
            if c not in cols:
                raise CitybrainError(f"{path}: no column {c!r} (columns: {', '.join(cols)})")
        raw_ts: list[str] = []
        ts: list[float] = []
        vals: list[float] = []
        raw_vals: list[str] = []
        for i, row in enumerate(reader, start=2):
            raw_ts.append(row[args.timestamp_col])
            raw_vals.append(row[args.value_col])
            ts.append(_parse_ts(row[args.timestamp_col], i, path))
            vals.append(_parse_value(row[args.value_col], i, path))
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(vals, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    det = SeasonalDetector.from_params(["series"], params, n_metrics=1)
    scores = np.empty(t.shape[0])
    for a in range(0, t.shape[0], CHUNK):
        idx = order[a : a + CHUNK]
        r = det.update(Batch.of(np.zeros(idx.shape[0]), t[idx], v[idx]))
        scores[idx] = r.score
    out = sys.stdout if str(args.output) == "-" else args.output.open("w", newline="")
    try:
        w = csv.writer(out)
        w.writerow(["timestamp", "value", "anomaly_score"])
        for i in order.tolist():
            sc = (
                "" if math.isnan(v[i]) else repr(0.0 if math.isnan(scores[i]) else float(scores[i]))
            )
            w.writerow([raw_ts[i].strip(), raw_vals[i].strip(), sc])
    finally:
        if out is not sys.stdout:
            out.close()
    if args.domain:
        print(
            f"citybrain score: {int(np.sum(scores >= params.threshold(args.domain)))} of "
            f"{t.shape[0]} rows at or above the {args.domain} threshold "
            f"{params.threshold(args.domain)}",
            file=sys.stderr,
        )
    return 0
