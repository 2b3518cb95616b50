"""Smoke test of ``citybrain bench pipeline --quick`` with tiny sizes (no timing assertions)."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT

NAMES = ("e2e_readings_per_s", "naive_readings_per_s", "raw_consumer_readings_per_s",
         "ratio_vs_naive", "ratio_vs_raw_consumer", "latency_p50_s", "latency_p95_s",
         "latency_p99_s")


@pytest.mark.services
def test_pipeline_bench_quick_prints_all_lines(kafka_bootstrap: str,
                                               clickhouse_hostport: str) -> None:
    # no CITYBRAIN_ settings from the outside, but the test services' ports and directory, so
    # the bench finds the services this session runs (and never starts or stops them)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CITYBRAIN_") or k.startswith("CITYBRAIN_TEST_")}
    env.update({
        "CITYBRAIN_TEST_KAFKA": kafka_bootstrap,
        "CITYBRAIN_TEST_CLICKHOUSE": clickhouse_hostport,
        "BENCH_PIPELINE_READINGS": "5000",
        "BENCH_PIPELINE_NAIVE": "1000",
        "BENCH_PIPELINE_LATENCY_S": "2",
        "BENCH_PIPELINE_WARMUP_S": "1",
    })
    r = subprocess.run([sys.executable, "-m", "citybrain", "bench", "pipeline", "--quick",
                        "--runs", "1"], env=env, cwd=ROOT, capture_output=True, timeout=170)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-4000:]
    lines = [orjson.loads(x) for x in r.stdout.splitlines() if x.strip()]
    got = {line["name"]: line for line in lines}
    assert set(NAMES) <= got.keys(), got.keys()
    for name in NAMES:
        assert got[name]["value"] > 0, got[name]
