"""Nothing lost, nothing counted twice: a SIGKILLed worker, a ClickHouse outage, bad input and
SASL/SCRAM, all on the real Apache Kafka and ClickHouse server.

Every test stores readings through the real sink and derived outputs through the real worker,
then compares with what was produced: a count and a checksum over (sensor_id, seq, values) for
the readings, and the plain-Python reference for the rolling-mean indicators (exactly).
"""

from __future__ import annotations

import signal
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer

from config.city import load_city
from store.schema import apply_schema
from store.server import ServerStore
from streams.codecs import decode_deadletter
from tests.conftest import SMALL_CITY, free_port, wait_until
from tests.framegen import expected_rolling_means, traffic_frames
from tests.streams.badmsgs import MAX_FRAME_BYTES, bad_messages
from tests.streams.e2e import (
    LATENESS,
    WINDOW,
    PacedProducer,
    PrivateClickHouse,
    env,
    frames_checksum,
    metric_value,
    sensor_indicators,
    stored_checksum,
)

START = 1767571200.0
pytestmark = pytest.mark.services


def _store_env(store) -> dict[str, str]:
    kw = store._kw
    return {"CITYBRAIN_STORE": "clickhouse",
            "CITYBRAIN_CLICKHOUSE_URL": f"clickhouse://{kw['host']}:{kw['port']}/{store.database}"}


def _wait_all(store, frames, expected, procs, timeout=240) -> None:
    n = sum(len(f) for f in frames)

    def done() -> bool:
        r = store.query("SELECT count() AS n FROM readings_traffic FINAL")["n"][0]
        i = store.query("SELECT count() AS n FROM indicators FINAL "
                        "WHERE entity_type = 'sensor'")["n"][0]
        print(f"readings {r}/{n}, indicators {i}/{len(expected)}")
        return bool(r == n and i == len(expected))

    wait_until(done, timeout=timeout, what="every reading and indicator", procs=procs)


def _check_exact(store, frames, expected) -> None:
    assert stored_checksum(store) == frames_checksum(frames)
    got = sensor_indicators(store)
    assert got.keys() == expected.keys()
    worst = max(abs(got[k] - v) for k, v in expected.items())
    assert worst < 1e-9, f"indicator differs from the reference by {worst}"


def test_worker_sigkill_mid_stream_resumes_with_its_state(kafka_bootstrap, server_store, unique,
                                                           spawn):
    city = load_city(SMALL_CITY)
    frames = traffic_frames(city, steps=80, start=START, seed=11)
    expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
    producer = PacedProducer(kafka_bootstrap, unique, frames, seconds=20)
    e = env(unique, kafka_bootstrap, **_store_env(server_store))
    worker = spawn("worker", ["worker"], e)
    sink = spawn("sink", ["sink"], e)
    producer.start()
    # kill the worker once it has checkpointed some state and produced indicators
    wait_until(lambda: server_store.query(
        "SELECT count() AS n FROM indicators WHERE entity_type = 'sensor'")["n"][0] > 3000,
        timeout=120, what="first indicators", procs=[worker, sink])
    worker.kill()  # SIGKILL to the process group: no shutdown, no final commit
    killed_at = server_store.query("SELECT max(ts) AS t FROM district_risk")["t"][0]
    time.sleep(1)
    worker2 = spawn("worker2", ["worker"], e)
    producer.finish()
    _wait_all(server_store, frames, expected, [worker2, sink])
    _check_exact(server_store, frames, expected)
    assert "restoring state of gateway" in worker2.tail(200000), "the new worker started cold"
    # derived outputs continue after the restart
    risk = server_store.query("SELECT max(ts) AS t, uniqExact(district) AS d FROM district_risk")
    assert risk["t"][0] > killed_at and risk["d"][0] == len(city.districts)
    assert worker2.stop() == 0, worker2.tail()
    assert sink.stop() == 0, sink.tail()


OUTAGE_S = 45


def test_clickhouse_outage_mid_stream(kafka_bootstrap, unique, spawn, tmp_path):
    """A private ClickHouse server (the shared one stays up) is stopped for OUTAGE_S seconds
    while data flows: the sink pauses with bounded memory, then stores exactly everything."""
    ch = PrivateClickHouse(tmp_path / "svc")
    ch.start()
    try:
        store = ServerStore(host="127.0.0.1", port=ch.port, database=unique)
        apply_schema(store)
        city = load_city(SMALL_CITY)
        frames = traffic_frames(city, steps=120, start=START, seed=12)
        expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
        metrics_port = free_port()
        batch_rows = 1000
        e = env(unique, kafka_bootstrap, **_store_env(store),
                CITYBRAIN_SINK_BATCH_ROWS=str(batch_rows))
        worker = spawn("worker", ["worker"], e)
        sink = spawn("sink", ["sink"], {**e, "CITYBRAIN_METRICS_PORT": str(metrics_port)})
        producer = PacedProducer(kafka_bootstrap, unique, frames, seconds=OUTAGE_S + 20)
        producer.start()
        wait_until(lambda: store.query("SELECT count() AS n FROM readings_traffic")["n"][0] > 2000,
                   timeout=120, what="first readings", procs=[worker, sink])
        ch.stop()
        peak, t_end = 0.0, time.monotonic() + OUTAGE_S
        while time.monotonic() < t_end:
            assert sink.alive(), sink.tail()
            peak = max(peak, metric_value(metrics_port, "citybrain_buffered_rows"))
            time.sleep(0.5)
        failures = metric_value(metrics_port, "citybrain_store_failures_total")
        ch.start()
        producer.finish()
        _wait_all(store, frames, expected, [worker, sink])
        _check_exact(store, frames, expected)
        assert failures >= 1, "the sink never noticed the outage"
        # bounded: one batch plus what one poll returns (frames of 25 readings)
        assert 0 < peak <= batch_rows + 500 * 25, peak
        print(f"peak buffered rows during the outage: {peak:.0f}")
        assert worker.stop() == 0, worker.tail()
        assert sink.stop() == 0, sink.tail()
        store.close()
    finally:
        ch.stop()


N_BAD = 250  # per example; hypothesis cannot draw 2,000 complex values in one example


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.generate])  # a failure is reported as generated: shrinking 2,000 is slow
@given(bad=bad_messages(N_BAD), seed=st.integers(0, 2**31 - 1))
def test_generated_bad_messages_through_kafka(kafka_bootstrap, server_store, spawn, bad, seed):
    """250 generated bad messages of every class mixed into a good stream: each is in
    city.deadletter with its reason, original bytes and source offset; the good data is stored
    exactly."""
    import random
    import uuid

    unique = "t" + uuid.uuid4().hex[:10]
    city = load_city(SMALL_CITY)
    frames = traffic_frames(city, steps=20, start=START, seed=13)
    expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
    rnd = random.Random(seed)
    extra = [(rnd.randrange(len(frames) + 1), raw) for raw, _ in bad]
    producer = PacedProducer(kafka_bootstrap, unique, frames, seconds=0, extra=extra)
    producer.start()
    producer.finish()
    e = env(unique, kafka_bootstrap, **_store_env(server_store),
            CITYBRAIN_MAX_FRAME_BYTES=str(MAX_FRAME_BYTES))
    worker = spawn("worker", ["worker"], e)
    sink = spawn("sink", ["sink"], e)
    _wait_all(server_store, frames, expected, [worker, sink])
    _check_exact(server_store, frames, expected)
    consumer = KafkaConsumer(f"{unique}.deadletter", bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    dead: dict[tuple[int, int], dict] = {}
    for msg in consumer:
        d = decode_deadletter(msg.value)
        dead[(d["partition"], d["offset"])] = d
        if len(dead) >= len(bad):
            break
    consumer.close()
    want: dict[bytes, list[str]] = {}
    for raw, reason in bad:
        want.setdefault(raw, []).append(reason)
    assert len(dead) == len(bad)
    for d in dead.values():
        assert d["topic"] == f"{unique}.readings.traffic"
        assert d["reason"] in want[d["raw"]], (d["reason"], d["raw"][:100])
    assert sorted(d["raw"] for d in dead.values()) == sorted(raw for raw, _ in bad)
    assert worker.stop() == 0, worker.tail()
    assert sink.stop() == 0, sink.tail()
    worker.proc.send_signal(signal.SIGTERM)  # already stopped; harmless
