"""Operator actions reach a real worker (Apache Kafka, a ``citybrain worker`` process, no mocks).

The worker runs with eager model parameters (low thresholds, alerts open at once and escalate
every two simulated minutes), so the small city's three traffic districts each open an alert
early in the stream and keep escalating. On the ``actions`` topic the test acknowledges D01's
alert and resolves D02's, then streams on: D01 never escalates again (D03, untouched, keeps
escalating: the control), D02's alert gets no more events and the persisting condition opens a
new alert with a new id. The worker is then SIGKILLed and restarted from its checkpoint: D01 is
still acknowledged, and the actions' offsets came back with the alert state. A malformed action
goes to the dead-letter topic. The worker never emits an ``acknowledged``/``resolved`` event itself (the
dashboard's ``alert_events`` row is the record).

The worker's lifecycle events are read from ``<prefix>.alerts``, the topic the sink copies
one-to-one into ``alert_events``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer

from config.city import load_city
from config.settings import load_settings
from models.frame import Frame, encode
from streams.actions import Action, encode_action
from streams.codecs import decode_deadletter, decode_table
from streams.topics import ensure_topics
from tests.conftest import ROOT, SMALL_CITY, Proc, wait_until
from tests.streams.e2e import env as e2e_env

START = 1767571200.0  # 2026-01-05 00:00:00 UTC
STEP_S = 30.0
EAGER = {
    "health": {"stuck_readings": 3, "spike_k": 3.0, "dropout_intervals": 2.0},
    "seasonal": {"min_count": 2},
    "thresholds": {"traffic": 0.5, "environment": 0.5, "utility": 0.5},
    "alerts": {"warmup_s": 60.0, "open_after_s": 0.0, "aqi_level": 0.0,
               "escalate_after_s": 120.0, "resolve_after_s": 3600.0},
}
LAUNCHER = """\
import sys
from pathlib import Path

import models.params

models.params.DEFAULT_PATH = Path(sys.argv[1])  # the eager parameters (read at worker start)
sys.argv = ["citybrain", "worker"]
from citybrain.cli import main

sys.exit(main(["worker"]))
"""


class Worker(Proc):
    """A ``citybrain worker`` process whose models read ``params`` (config/models.yaml with
    EAGER on top): conftest's Proc, started through a launcher that points the parameters'
    default path there."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, params: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115
        launcher = log_dir / "launch_worker.py"
        launcher.write_text(LAUNCHER)
        full = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
        full.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, str(launcher), str(params)], env=full, cwd=ROOT,
            stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
        )


class AlertTail(threading.Thread):
    """Collects the worker's alert lifecycle events from the alerts topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                                      auto_offset_reset="earliest", consumer_timeout_ms=500)
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for m in self.consumer:
                _, cols = decode_table(m.value)
                rows = [
                    {"event": str(e), "alert_id": str(a), "state": str(s), "actor": str(w),
                     "ts": float(t.astype("datetime64[s]").astype(np.int64)) - START}
                    for e, a, s, w, t in zip(cols["event"], cols["alert_id"], cols["state"],
                                             cols["actor"], cols["ts"], strict=True)
                ]
                with self.lock:
                    self.events.extend(rows)
        self.consumer.close()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def has(self, district: str, event: str, *, after: float = -1.0) -> bool:
        return any(e["alert_id"].startswith(district + ":") and e["event"] == event
                   and e["ts"] > after for e in self.snapshot())


def _frames(city: Any, k: int) -> list[Frame]:
    """Step ``k`` of a steady, noisy traffic stream (one reading per sensor)."""
    rng = np.random.default_rng(1000 + k)
    out = []
    for g in city.gateways:
        n = len(g.sensors)
        out.append(Frame(
            gateway=g.id, domain="traffic", ts=np.full(n, START + STEP_S * k),
            sensor_id=np.array([s.id for s in g.sensors], dtype=object),
            seq=np.full(n, k + 1, dtype=np.int64),
            metrics={"flow_vph": rng.normal(900, 30, n).round(3),
                     "speed_kmh": rng.normal(50, 2, n).round(3),
                     "occupancy_pct": rng.normal(20, 1, n).round(3)},
        ))
    return out


def ready(worker: Worker) -> None:
    """Wait until the worker placed its partitions: readings sent before would reach it as
    one batch, and a worker ticks (risk, alerts) at most once per batch."""
    wait_until(lambda: "new partitions start at" in worker.tail(10**6), timeout=120,
               what=f"{worker.name} ready", procs=[worker])


@pytest.mark.services
def test_actions_stop_escalation_resolve_and_survive_a_restart(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    import models.params as params

    doc = yaml.safe_load(params.DEFAULT_PATH.read_text())
    for section, values in EAGER.items():
        doc[section].update(values)
    eager = tmp_path / "models.yaml"
    eager.write_text(yaml.safe_dump(doc))

    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique)
    ensure_topics(settings)
    city = load_city(SMALL_CITY)
    # batches of about one step (12 gateways): the worker ticks at most once per batch
    env = e2e_env(unique, kafka_bootstrap, CITYBRAIN_WORKER_MULTIVARIATE="false",
                  CITYBRAIN_WORKER_BATCH="12", CITYBRAIN_WORKER_DATA_DIR=str(tmp_path / "faust"))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5, acks="all")
    readings = settings.topic("readings.traffic")

    def produce(steps: range) -> None:
        for k in steps:
            for f in _frames(city, k):
                producer.send(readings, key=f.gateway.encode(), value=encode(f))
            producer.flush()
            time.sleep(0.7)  # a batch per step (CITYBRAIN_WORKER_BATCH, 0.5 s batch timeout)

    sent: dict[int, int] = {}  # actions partition -> next offset after the test's actions

    def act(alert_id: str, action: str, at: float) -> None:
        raw = encode_action(Action(alert_id, action, "ops", START + at))
        meta = producer.send(settings.topic("actions"), key=alert_id.encode(), value=raw).get(30)
        sent[meta.partition] = max(sent.get(meta.partition, 0), meta.offset + 1)

    tail = AlertTail(kafka_bootstrap, settings.topic("alerts"))
    tail.start()
    worker = Worker("worker", env, tmp_path, eager)
    try:
        ready(worker)
        # phase A, 0..5.5 min: three alerts open, then escalate every 2 min (a tick skipped
        # when a batch spans two minute boundaries shifts them: no exact times below)
        produce(range(0, 12))
        wait_until(lambda: all(tail.has(d, "escalated") for d in ("D01", "D02", "D03")),
                   timeout=240, what="the three alerts escalated", procs=[worker])
        ids = {e["alert_id"].split(":")[0]: e["alert_id"] for e in tail.snapshot()
               if e["event"] == "opened"}
        assert set(ids) == {"D01", "D02", "D03"}, ids
        act(ids["D01"], "acknowledged", 301)
        act(ids["D02"], "resolved", 301)
        act(ids["D02"], "acknowledged", 302)  # an action on a closed alert: harmless
        meta = producer.send(settings.topic("actions"), key=b"x", value=b"{not json").get(30)
        sent[meta.partition] = max(sent.get(meta.partition, 0), meta.offset + 1)
        wait_until(lambda: f"alert {ids['D01']} acknowledged by ops" in worker.tail(10**6)
                   and f"alert {ids['D02']} resolved by ops" in worker.tail(10**6),
                   timeout=60, what="the worker applying the actions", procs=[worker])

        # phase B, 6..15.5 min (event time >= 6 min needs these readings, sent after the
        # worker applied the actions): D03 keeps escalating, D01 never again
        produce(range(12, 32))
        wait_until(lambda: tail.has("D03", "escalated", after=780), timeout=240,
                   what="D03 escalated after 13 min", procs=[worker])
        after = [e for e in tail.snapshot() if e["ts"] >= 360]
        of = {d: [e for e in after if e["alert_id"] == ids[d]] for d in ids}
        assert len([e for e in of["D03"] if e["event"] == "escalated"]) >= 3, of["D03"]
        assert not [e for e in of["D01"] if e["event"] == "escalated"], of["D01"]
        assert all(e["state"] == "acknowledged" for e in of["D01"]), of["D01"]
        assert of["D02"] == [], "an alert the operator resolved got events from the worker"
        reopened = [e for e in after if e["alert_id"].startswith("D02:") and
                    e["event"] == "opened"]
        assert reopened and reopened[0]["alert_id"] != ids["D02"]  # a new alert, a new id
        # the worker wrote no event of its own for the operators' actions
        assert not [e for e in tail.snapshot() if e["event"] in ("acknowledged", "resolved")]

        # restart from the checkpoint (written every second): SIGKILL, then a new worker
        time.sleep(4)
        worker.kill()
        seen = len(tail.snapshot())
        worker = Worker("worker2", env, tmp_path, eager)
        ready(worker)
        produce(range(32, 52))  # to 25.5 min: D03 escalates at 17 .. 25 min
        wait_until(lambda: tail.has("D03", "escalated", after=1380), timeout=300,
                   what="D03 escalated after 23 min, after the restart", procs=[worker])
        later = tail.snapshot()[seen:]
        d03 = [e["ts"] for e in later if e["alert_id"] == ids["D03"] and
               e["event"] == "escalated" and e["ts"] > 930]
        assert len(d03) >= 3, d03
        d01 = [e for e in later if e["alert_id"] == ids["D01"]]
        assert not [e for e in d01 if e["event"] == "escalated"], d01
        assert all(e["state"] == "acknowledged" for e in d01), d01
        assert not [e for e in later if e["alert_id"] == ids["D02"]]
        assert not [e for e in later if e["event"] in ("acknowledged", "resolved")]
        # the actions' offsets came back with the alert state (nothing replayed from the start)
        placed = next(line for line in worker.tail(10**6).splitlines()
                      if "reading operator actions from" in line)
        for partition, offset in sent.items():
            assert f"{partition}@{offset}" in placed, (sent, placed)
        assert worker.stop() == 0, worker.tail()
        # the bad action went to the dead-letter topic (once: its offset was checkpointed)
        dead = KafkaConsumer(settings.topic("deadletter"), bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
        letters = [decode_deadletter(m.value) for m in dead]
        dead.close()
        bad = [d for d in letters if d["reason"] == "bad_action"]
        assert len(bad) == 1 and bad[0]["raw"] == b"{not json", letters
        assert bad[0]["topic"] == settings.topic("actions")
    finally:
        worker.kill()
        tail.stopped.set()
        tail.join(10)
        producer.close()


def test_action_feed_follows_the_alert_state_it_serves(kafka_bootstrap, unique):
    """The feed reads only while its worker serves an alert state (the city tick's owner), and
    when that state changes hands (a new token: restored by a new owner) it reads the topic
    again from the *new* state's positions: no action skipped, none applied twice."""
    import asyncio

    from models.alerts import AlertManager
    from streams.actions import ActionFeed

    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique)
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    ids = [f"D0{i}:traffic:{int(START)}" for i in range(1, 5)]
    for i, alert_id in enumerate(ids):  # one partition: the positions are plain offsets
        producer.send(settings.topic("actions"), key=alert_id.encode(), partition=0,
                      value=encode_action(Action(alert_id, "acknowledged", "op", START + i)))
    producer.flush()
    producer.close()

    def manager() -> AlertManager:
        return AlertManager(thresholds={"traffic": 0.5})

    first = manager()
    second = manager()
    second.action_positions = {"0": 2}  # a state restored from a checkpoint after 2 actions
    serving: dict[str, Any] = {"state": first, "token": None}
    feed = ActionFeed(settings, lambda: serving["state"], ready=lambda: serving["token"],
                      poll_ms=100)

    async def scenario() -> None:
        task = asyncio.ensure_future(feed.run())
        await asyncio.sleep(2.0)
        assert feed.seen == 0, "the feed read before its worker served an alert state"
        serving["token"] = 1
        for _ in range(100):
            if first.action_positions.get("0") == 4:
                break
            await asyncio.sleep(0.1)
        serving["state"], serving["token"] = second, 2  # the ownership moved and came back
        for _ in range(100):
            if second.action_positions.get("0") == 4:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert first.action_positions == {"0": 4} and sorted(first.deferred) == sorted(ids)
    # the second state read on from its own position: the two actions after its checkpoint
    assert second.action_positions == {"0": 4} and sorted(second.deferred) == sorted(ids[2:])
