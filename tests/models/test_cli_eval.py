"""``citybrain score`` end to end, and the evaluation harness on synthetic labelled data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import orjson

from citybrain.cli import main
from models.evaluation import evaluate, format_report
from models.params import load_params
from models.synthetic import SynthLabel, loop_stream, loop_table


def _write_series(path: Path, n: int) -> None:
    rng = np.random.default_rng(5)
    t = 1_700_000_000 + 60 * np.arange(n)
    v = 100 + 10 * np.sin(np.arange(n) / 100) + rng.normal(0, 1, n)
    v[n // 2] = 200.0
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "reading"])
        for i, (a, b) in enumerate(zip(t, v, strict=True)):
            w.writerow([int(a), "" if i == 7 else repr(float(b))])


def _read(path: Path) -> list[list[str]]:
    with path.open() as fh:
        return list(csv.reader(fh))


def test_score_end_to_end_and_causal(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    _write_series(src, 1200)
    out = tmp_path / "out.csv"
    rc = main(
        ["score", str(src), "-o", str(out), "--timestamp-col", "time", "--value-col", "reading"]
    )
    assert rc == 0
    rows = _read(out)
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    body = rows[1:]
    assert len(body) == 1200
    assert body[7][2] == ""  # missing value -> no score
    scores = np.array([float(r[2]) for i, r in enumerate(body) if i != 7])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert float(body[600][2]) > 0.9  # the injected spike
    assert float(body[600][2]) == scores.max()
    # prefix of the file -> identical first scores (text-identical: full precision)
    lines = src.read_text().splitlines()
    pre = tmp_path / "prefix.csv"
    pre.write_text("\n".join(lines[:701]) + "\n")
    out2 = tmp_path / "out2.csv"
    assert (
        main(
            [
                "score",
                str(pre),
                "-o",
                str(out2),
                "--timestamp-col",
                "time",
                "--value-col",
                "reading",
            ]
        )
        == 0
    )
    assert _read(out2) == rows[:701]


def test_score_errors_name_the_culprit(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value\nyesterday,1\n")
    assert main(["score", str(src), "-o", str(tmp_path / "o.csv")]) == 2
    assert "line 2: timestamp 'yesterday'" in capsys.readouterr().err
    assert main(["score", str(src), "-o", str(tmp_path / "o.csv"), "--value-col", "v"]) == 2
    assert "no column 'v'" in capsys.readouterr().err


def test_evaluation_harness_on_synthetic_labels() -> None:
    table = loop_table(90)
    day = 86400.0 * 5
    labels = [
        SynthLabel(
            "c1", "crash", day + 8 * 3600, day + 8.5 * 3600, ("TR-S000010", "TR-S000011"), "D01"
        ),
        SynthLabel("c2", "crash", day + 13 * 3600, day + 13.5 * 3600, ("TR-S000080",), "D03"),
        SynthLabel("f1", "stuck", day + 15 * 3600, day + 16 * 3600, ("TR-S000050",), "D02"),
    ]
    stream = loop_stream(
        table, start=day + 6 * 3600, duration_s=11 * 3600, seed=4, incidents=labels
    )
    rep = evaluate(stream, labels, table, load_params(), seed=0, multivariate=False)
    cb = rep["systems"]["citybrain"]
    assert cb["incidents"]["crash"]["recall"] == 1.0
    assert cb["incidents"]["crash"]["median_delay_s"] <= 120
    assert cb["incidents"]["_all"]["false_alarms"] <= 1
    assert cb["faults"]["stuck"]["recall"] == 1.0
    assert set(rep["systems"]) == {"citybrain", "threshold", "zscore"}
    assert "crash" in format_report(rep)
    orjson.dumps(rep)
