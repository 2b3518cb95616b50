from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from citybrain.cli import main
from sensors_sim.recording import Recording


def test_scenarios_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "scenarios"]) == 0
    out = capsys.readouterr().out
    for name in ("normal_day", "rush_hour_crash", "bad_day", "sensor_fault_storm"):
        assert name in out


def test_labels_and_bad_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sim", "labels", "--scenario", "bad_day", "--seed", "3", "--sensors", "1500"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {orjson.loads(x)["type"] for x in lines} >= {
        "crash",
        "pollution",
        "burst",
        "event",
        "stuck",
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("incidents:\n  - {type: crash, at: '08:00', severity: 2}\n")
    assert main(["sim", "labels", "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "severity=2.0" in err


def test_record_writes_a_replayable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.cbr"
    rc = main(
        [
            "sim",
            "record",
            "--scenario",
            "rush_hour_crash",
            "--seed",
            "2",
            "--duration",
            "20m",
            "--sensors",
            "1500",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    assert "readings" in capsys.readouterr().err
    rec = Recording(out)
    assert rec.header["seed"] == 2 and sum(1 for _ in rec.ticks()) == 80


def test_city_scaling(tmp_path: Path) -> None:
    out = tmp_path / "big.yaml"
    assert main(["sim", "city", "--sensors", "12000", "--out", str(out)]) == 0
    from config.city import load_city

    assert len(load_city(out).sensors) == 12000
