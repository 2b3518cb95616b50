"""Publishing to a real Apache Kafka broker (``kafka_bootstrap`` comes from tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from models.frame import decode
from sensors_sim.clock import ManualClock
from sensors_sim.engine import Simulator
from sensors_sim.labels import Label
from sensors_sim.publisher import Publisher, run_live
from tests.sensors_sim.helpers import city, scenario

pytestmark = pytest.mark.services


def _consume(bootstrap: str, topics: list[str], expected: int, timeout_s: float = 60.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer:
                out.append(msg)
                if len(out) >= expected:
                    break
    finally:
        consumer.close()
    return out


def _publish_and_consume(bootstrap: str, settings, sim, **publisher: object) -> tuple:
    """Publish the whole run as fast as possible; (stats, every readings message)."""
    pub = Publisher(settings, **publisher)
    try:
        stats = run_live(sim, pub, speed=0, clock=ManualClock())
    finally:
        pub.close()
    topics = [settings.topic(f"readings.{d}") for d in ("traffic", "environment", "utility")]
    msgs = _consume(bootstrap, topics, stats.frames)
    assert len(msgs) == stats.frames
    return stats, msgs


def test_frames_and_labels_reach_kafka(kafka_bootstrap: str) -> None:
    from config.settings import load_settings

    prefix = f"simtest{uuid.uuid4().hex[:8]}"
    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    sim = Simulator(city(), scenario("rush_hour_crash"), seed=4, duration=2 * 3600 + 600)
    sim_labels = sim.labels
    stats, msgs = _publish_and_consume(kafka_bootstrap, settings, sim)
    readings = 0
    for m in msgs:
        frame = decode(m.value)
        assert m.key.decode() == frame.gateway
        assert m.topic == settings.topic(f"readings.{frame.domain}")
        readings += len(frame)
    assert readings == stats.readings
    gt = _consume(kafka_bootstrap, [settings.topic("groundtruth")], len(sim_labels))
    assert [Label.from_json(m.value) for m in gt] == sim_labels


def test_sim_run_stops_cleanly_on_sigterm(kafka_bootstrap: str) -> None:
    prefix = f"simtest{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CITYBRAIN_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CITYBRAIN_TOPIC_PREFIX": prefix,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "citybrain",
            "sim",
            "run",
            "--scenario",
            "normal_day",
            "--seed",
            "1",
            "--speed",
            "60",
            "--duration",
            "forever",
            "--sensors",
            "1000",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(8)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert "(stopped)" in err.decode()
    assert "published" in err.decode()


def test_frames_of_a_kind_share_a_partition(kafka_bootstrap: str) -> None:
    """The simulator's default placement (config/partitioning.py) on a real 4-partition topic:
    every frame of a kind on the partition the rule gives, so a worker holds whole kinds."""
    from config.city import load_city
    from config.partitioning import CityPartitions
    from config.settings import load_settings
    from sensors_sim.scenario import load_scenario
    from streams.topics import ensure_topics

    prefix = f"simtest{uuid.uuid4().hex[:8]}"
    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    assert settings.kafka_partition_by == "kind" and settings.kafka_partitions == 4
    ensure_topics(settings)
    c = load_city()
    sim = Simulator(c, load_scenario("normal_day"), seed=2, duration=300)
    _stats, msgs = _publish_and_consume(kafka_bootstrap, settings, sim, city=c)
    want = CityPartitions(c).kinds(4)
    kind_of = {g.id: g.kind for g in c.gateways}
    placed: dict[str, set[int]] = {}
    for m in msgs:
        placed.setdefault(kind_of[m.key.decode()], set()).add(m.partition)
    assert placed == {k: {p} for k, p in want.items()}
    assert len({m.partition for m in msgs}) == 4
