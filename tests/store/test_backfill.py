"""``citybrain backfill``: a recording into the warehouse on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.store.test_backfill_parallel import EAGER  # every derived output in 15 min


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
    path, n = recording
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
    env.update({"CITYBRAIN_STORE": "chdb", "CITYBRAIN_CHDB_PATH": str(tmp_path / "chdb")})
    out = subprocess.run([sys.executable, "-m", "citybrain", "backfill", str(path)], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ticks" in out.stderr and f"backfilled {n} readings" in out.stderr  # progress, summary
    # checked in a child process: chDB binds one embedded server per process to the first
    # directory it opens, and this process may already hold the session's (chdb_root)
    check = (
        "import sys; from pathlib import Path; from store.embedded import EmbeddedStore; "
        "from tests.store.test_backfill import _check; "
        "s = EmbeddedStore(path=Path(sys.argv[1])); "
        "_check(s, int(sys.argv[2]), int(sys.argv[3])); s.close(); print('checked')"
    )
    out = subprocess.run([sys.executable, "-c", check, str(tmp_path / "chdb"), str(n),
                          str(len(Recording(path).labels))], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "checked" in out.stdout, out.stderr[-4000:]


def test_backfill_missing_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
    env["CITYBRAIN_CHDB_PATH"] = str(tmp_path / "chdb")
    out = subprocess.run([sys.executable, "-m", "citybrain", "backfill", str(tmp_path / "x.cbr")],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no such recording" in out.stderr


# -- the columnar loader against the workers' processor ----------------------------------------



def _mutated_batches(path: Path, batch_readings: int) -> list:  # type: ignore[type-arg]
    """The recording's ticks with what a month of real input holds: frames redelivered,
    delivered a minute late (within the allowed lateness), beyond the lateness (``late``),
    two gateways' frames of two whole minutes delivered together and newest first (their
    windows open an older bucket after a newer one), and invalid frames of every kind
    (malformed JSON, unknown sensor and gateway, booleans, numeric strings, negative or
    fractional seq, a timestamp after 2100)."""
    import orjson

    from citybrain.backfill import Batch
    from sensors_sim.recording import Recording

    ticks = list(Recording(path).ticks())
    held: dict[int, list] = {}  # type: ignore[type-arg]
    gws = {ticks[20].frames[0][1], ticks[20].frames[-1][1]}
    out = []
    for i, tick in enumerate(ticks):
        fr = list(tick.frames)
        extra = held.pop(i, [])[::-1]
        if 20 <= i < 28:
            held.setdefault(29, []).extend(f for f in fr if f[1] in gws)
            fr = [f for f in fr if f[1] not in gws]
        if i % 7 == 3 and len(fr) > 10:
            held.setdefault(i + 4, []).append(fr.pop(5))
            held.setdefault(i + 30, []).append(fr.pop(7))
            held.setdefault(i + 2, []).append(fr[3])
            dom, gw, n, value = fr[0]
            d = orjson.loads(value)
            bad = [value[:-5]]
            for key, first in (("sensor_id", "nope"), ("ts", True), ("seq", -1), ("ts", "1"),
                               ("seq", 0.5), ("ts", 1e300)):
                bad.append(orjson.dumps({**d, key: [first, *d[key][1:]]}))
            bad.append(orjson.dumps({**d, "gateway": "XX"}))
            k = (i // 7) % len(bad)
            fr[2:2] = [(dom, gw, n, b) for b in (bad[k:] + bad[:k])[:3]]
        out.append(extra + fr)
    batches, frames, n = [], [], 0
    for k, fr in enumerate(out, start=1):
        frames += fr
        n += sum(f[2] for f in fr)
        if n >= batch_readings:
            batches.append(Batch(frames, n, k))
            frames, n = [], 0
    if frames:
        batches.append(Batch(frames, n, len(out)))
    return batches


def _canonical(rows: list) -> dict[str, list[tuple[str, ...]]]:  # type: ignore[type-arg]
    """Rows per table as sorted tuples of reprs; a metric column left out is NULL (NaN)."""
    import math

    per: dict[str, list[dict[str, object]]] = {}
    for table, cols in rows:
        n = len(next(iter(cols.values())))
        per.setdefault(table, []).extend({c: v[i] for c, v in cols.items()} for i in range(n))
    out = {}
    for table, recs in per.items():
        names = sorted({c for r in recs for c in r})

        def cell(r: dict[str, object], c: str) -> str:
            v = r.get(c, math.nan)
            v = v.tolist() if hasattr(v, "tolist") else v  # type: ignore[union-attr]
            return "NULL" if isinstance(v, float) and math.isnan(v) else repr(v)

        out[table] = sorted(tuple(cell(r, c) for c in names) for r in recs)
    return out


@pytest.mark.parametrize("models", [True, False])
def test_batch_loader_equals_processor(recording: tuple[Path, int], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, models: bool) -> None:
    """The backfill's columnar loader stores exactly what the workers' per-frame path stores
    (:func:`citybrain.backfill.load_frames`: the processor and the sink's rows): every row of
    every table, the dead-letter reasons and counts, the readings and the days."""
    from collections import Counter

    import yaml

    import models.params as params
    from citybrain.backfill import BatchLoader, load_frames
    from config.city import load_city
    from config.settings import load_settings
    from streams.app import build_processor

    doc = yaml.safe_load(params.DEFAULT_PATH.read_text())
    for section, values in EAGER.items():
        doc[section].update(values)
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(params, "DEFAULT_PATH", tmp_path / "models.yaml")
    settings = load_settings(anomaly_score=0.6, worker_models=models)
    ref, new = build_processor(settings), build_processor(settings)
    loader = BatchLoader(settings, load_city(settings.city_file), new)
    rows_a: list = []  # type: ignore[type-arg]
    rows_b: list = []  # type: ignore[type-arg]
    dead_a: Counter[str] = Counter()
    dead_b: Counter[str] = Counter()
    n_a = n_b = 0
    offset = 0
    for batch in _mutated_batches(recording[0], 10_000):
        a = load_frames(settings, ref.validator, ref, batch.frames,
                        lambda d: settings.topic(f"readings.{d}"), offset)
        offset += len(batch.frames)
        b = loader.load(batch.frames)
        assert a.days == b.days
        rows_a += a.rows
        rows_b += b.rows
        dead_a.update(a.dead)
        dead_b.update(b.dead)
        n_a += a.readings
        n_b += b.readings
    assert n_a == n_b > 0
    assert dead_a == dead_b
    assert {"late", "malformed_json", "unknown_sensor", "unknown_gateway", "wrong_type",
            "bad_timestamp"} <= dead_a.keys()
    ca, cb = _canonical(rows_a), _canonical(rows_b)
    assert ca.keys() == cb.keys()
    expected = {"readings_traffic", "readings_environment", "readings_utility", "indicators"}
    if models:
        expected |= {"anomalies", "sensor_health", "district_risk"}
    assert expected <= ca.keys()
    for table in ca:
        assert ca[table] == cb[table], table


def test_wire_bytes_rows_equal_str_rows(recording: tuple[Path, int], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader's ``wire_bytes`` rows (string columns as UTF-8 numpy byte strings, what the
    backfill sends a ClickHouse server) are its ``str`` rows, value for value, and only the
    loader's own string columns change type."""
    from collections import Counter

    import numpy as np
    import yaml

    import models.params as params
    from citybrain.backfill import BatchLoader
    from config.city import load_city
    from config.settings import load_settings
    from streams.app import build_processor

    doc = yaml.safe_load(params.DEFAULT_PATH.read_text())
    for section, values in EAGER.items():
        doc[section].update(values)
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(params, "DEFAULT_PATH", tmp_path / "models.yaml")
    settings = load_settings(anomaly_score=0.6)
    city = load_city(settings.city_file)
    plain = BatchLoader(settings, city, build_processor(settings))
    wire = BatchLoader(settings, city, build_processor(settings), wire_bytes=True)
    rows_a: list = []  # type: ignore[type-arg]
    rows_b: list = []  # type: ignore[type-arg]
    dead_a: Counter[str] = Counter()
    dead_b: Counter[str] = Counter()
    n_bytes = 0
    for batch in _mutated_batches(recording[0], 10_000):
        a, b = plain.load(batch.frames), wire.load(batch.frames)
        assert (a.readings, a.days) == (b.readings, b.days)
        dead_a.update(a.dead)
        dead_b.update(b.dead)
        rows_a += a.rows
        for table, cols in b.rows:
            decoded = {}
            for c, v in cols.items():
                if v.dtype.kind == "S":
                    n_bytes += 1
                    assert c in ("sensor_id", "gateway", "entity_type", "entity_id", "name")
                    v = np.array([x.decode() for x in v.tolist()], dtype=object)
                decoded[c] = v
            rows_b.append((table, decoded))
    assert n_bytes > 0 and dead_a == dead_b
    ca, cb = _canonical(rows_a), _canonical(rows_b)
    assert ca.keys() == cb.keys() and {"indicators", "readings_traffic"} <= ca.keys()
    for table in ca:
        assert ca[table] == cb[table], table
