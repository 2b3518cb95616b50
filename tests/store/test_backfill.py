"""``citybrain backfill``: a recording into the warehouse on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    from config.city import load_city
    from sensors_sim.engine import Simulator
    from sensors_sim.recording import record
    from sensors_sim.scenario import load_scenario

    path = tmp_path_factory.mktemp("rec") / "bad.cbr"
    sim = Simulator(load_city(), load_scenario("bad_day"), seed=3, duration=900)
    stats = record(sim, path)
    return path, int(stats.readings)


def _check(store, n_readings: int, n_labels: int) -> None:  # type: ignore[no-untyped-def]
    from store.rollups import check

    raw = sum(int(store.query(f"SELECT count() AS n FROM readings_{d} FINAL")["n"].iloc[0])
              for d in ("traffic", "environment", "utility"))
    assert 0 < raw <= n_readings  # a duplicate fault's copies collapse
    assert all(s.ok for s in check(store))
    for table in ("indicators", "district_risk"):
        assert int(store.query(f"SELECT count() AS n FROM {table}")["n"].iloc[0]) > 0, table
    gt = int(store.query("SELECT count() AS n FROM groundtruth FINAL")["n"].iloc[0])
    assert gt == n_labels


def test_backfill_server(recording: tuple[Path, int], clickhouse_hostport: str, unique: str) -> None:
    from citybrain.commands.backfill import backfill
    from config.settings import load_settings
    from sensors_sim.recording import Recording
    from store.server import ServerStore

    path, n = recording
    settings = load_settings(store="clickhouse",
                             clickhouse_url=f"clickhouse://{clickhouse_hostport}/{unique}")
    summary = backfill(settings, path, progress=False)
    assert summary["readings"] == n
    host, _, port = clickhouse_hostport.rpartition(":")
    s = ServerStore(host=host, port=int(port), database=unique)
    try:
        _check(s, n, len(Recording(path).labels))
    finally:
        s.command(f"DROP DATABASE {unique}")
        s.close()


def test_backfill_cli_chdb(recording: tuple[Path, int], tmp_path: Path) -> None:
    from sensors_sim.recording import Recording
    from store.embedded import EmbeddedStore

    path, n = recording
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
    env.update({"CITYBRAIN_STORE": "chdb", "CITYBRAIN_CHDB_PATH": str(tmp_path / "chdb")})
    out = subprocess.run([sys.executable, "-m", "citybrain", "backfill", str(path)], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ticks" in out.stderr and f"backfilled {n} readings" in out.stderr  # progress, summary
    s = EmbeddedStore(path=tmp_path / "chdb")
    try:
        _check(s, n, len(Recording(path).labels))
    finally:
        s.close()


def test_backfill_missing_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
    env["CITYBRAIN_CHDB_PATH"] = str(tmp_path / "chdb")
    out = subprocess.run([sys.executable, "-m", "citybrain", "backfill", str(tmp_path / "x.cbr")],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no such recording" in out.stderr
