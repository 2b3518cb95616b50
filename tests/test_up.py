"""``citybrain up``: the embedded default starts, shows live data, and stops without leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.conftest import ROOT, embedded_up_env, wait_until


def _sql(url: str, sql: str) -> list:
    req = urllib.request.Request(url + "api/sql", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return list(json.loads(r.read())["rows"])


@pytest.mark.embedded
@pytest.mark.slow
def test_up_runs_live_and_stops_cleanly(tmp_path, spawn):
    env, port = embedded_up_env(tmp_path)
    up = spawn("up", ["up", "--speed", "120"], env)
    url = f"http://127.0.0.1:{port}/"

    def stored() -> int:
        return int(_sql(url, "SELECT count() FROM readings_traffic")[0][0])

    first = wait_until(stored, timeout=150, what="readings from `citybrain up`", procs=[up])
    wait_until(lambda: stored() > first, timeout=60, what="more readings (live data)", procs=[up])
    # the city tick (the worker's own, through the tick-state topic) writes district risk
    wait_until(lambda: int(_sql(url, "SELECT uniqExact(district) FROM district_risk")[0][0]),
               timeout=90, what="district risk from the city tick", procs=[up])
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "citybrain" in page

    # every process of the tree, to check none survives
    tree = psutil.Process(up.proc.pid).children(recursive=True)
    names = {p.pid: " ".join(p.cmdline()[:4]) for p in tree}
    assert len(tree) >= 4, f"expected broker, hub, worker and sim children, got {names}"

    # a second `up` on the same data directory refuses
    second = subprocess.run(
        [sys.executable, "-m", "citybrain", "up"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**{k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")},
                         **env},
    )
    assert second.returncode != 0
    assert "already running" in second.stdout + second.stderr

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(90) == 0, up.tail()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"left running: {[names[p.pid] for p in alive]}\n{up.tail()}"
    assert "stopped." in up.tail()
