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
from kafka import KafkaConsumer

from config.city import load_city
from store.schema import apply_schema
from store.server import ServerStore
from streams.codecs import decode_deadletter
from tests.conftest import SMALL_CITY, _coordinator_ready, free_port, wait_until
from tests.framegen import expected_rolling_means, traffic_frames
from tests.streams.badmsgs import MAX_FRAME_BYTES, REASONS, draw_bad_messages
from tests.streams.e2e import (
    LATENESS,
    WINDOW,
    PacedProducer,
    PrivateClickHouse,
    PrivateKafka,
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


def _indicators_in_kafka(bootstrap: str, prefix: str,
                         keys: set[tuple[str, str, int]]) -> dict[tuple[str, str, int], list]:
    """Where the given sensor indicator keys are in the indicators topic: (partition, offset,
    value) of every message that holds one. Tells a worker that never sent a window from a sink that
    never stored it."""
    from streams.codecs import decode_indicators

    consumer = KafkaConsumer(f"{prefix}.indicators", bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    found: dict[tuple[str, str, int], list] = {}
    for msg in consumer:
        b = decode_indicators(msg.value)
        for t, et, eid, name, v in zip(b.ts, b.entity_type, b.entity_id, b.name, b.value,
                                       strict=True):
            k = (str(eid), str(name), int(t))
            if et == "sensor" and k in keys:
                found.setdefault(k, []).append((msg.partition, msg.offset, round(float(v), 3)))
    consumer.close()
    return found


def _wait_all(store, frames, expected, procs, timeout=240, kafka=None) -> None:
    n = sum(len(f) for f in frames)

    def done() -> bool:
        r = store.query("SELECT count() AS n FROM readings_traffic FINAL")["n"][0]
        i = store.query("SELECT count() AS n FROM indicators FINAL "
                        "WHERE entity_type = 'sensor'")["n"][0]
        print(f"readings {r}/{n}, indicators {i}/{len(expected)}")
        return bool(r == n and i == len(expected))

    try:
        wait_until(done, timeout=timeout, what="every reading and indicator", procs=procs)
    except AssertionError:
        got = sensor_indicators(store)
        missing = sorted(set(expected) - set(got))
        by_sensor: dict[str, list[int]] = {}
        for sid, _name, end in missing:
            by_sensor.setdefault(sid, []).append(end)
        print(f"{len(missing)} indicators missing, {len(by_sensor)} sensors; first: "
              + "; ".join(f"{k}: {min(v) - START:.0f}..{max(v) - START:.0f} ({len(v)})"
                          for k, v in list(by_sensor.items())[:8]))
        if kafka is not None and missing:
            found = _indicators_in_kafka(*kafka, set(missing))
            print(f"of the missing indicators, {len(found)} are in the indicators topic "
                  f"(so the sink lost them), {len(missing) - len(found)} are not (never sent); "
                  f"messages: {sorted({m for v in found.values() for m in v})[:20]}")
        for p in procs:  # the sink prints its threads' stacks on SIGUSR1 (where is it stuck?)
            if p.name == "sink" and p.alive():
                p.proc.send_signal(signal.SIGUSR1)
                time.sleep(1)
                print(p.tail(20000))
        raise


def _check_exact(store, frames, expected, kafka=None) -> None:
    assert stored_checksum(store) == frames_checksum(frames)
    got = sensor_indicators(store)
    assert got.keys() == expected.keys()
    worst = max(abs(got[k] - v) for k, v in expected.items())
    if worst >= 1e-9:
        wrong = sorted(k for k, v in expected.items() if abs(got[k] - v) >= 1e-9)
        print(f"{len(wrong)} indicators differ; first: "
              + "; ".join(f"{k[0]} {k[1]} {k[2] - START:.0f}: {got[k]} != {expected[k]}"
                          for k in wrong[:8]))
        if kafka is not None:
            found = _indicators_in_kafka(*kafka, set(wrong))
            for k in wrong[:4]:
                print(f"  {k}: sent as {found.get(k)}")
    assert worst < 1e-9, f"indicator differs from the reference by {worst}"


def test_worker_sigkill_mid_stream_resumes_with_its_state(kafka_bootstrap, server_store, unique,
                                                           spawn):
    city = load_city(SMALL_CITY)
    frames = traffic_frames(city, steps=80, start=START, seed=11)
    expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
    producer = PacedProducer(kafka_bootstrap, unique, frames, seconds=25, hold_at=0.75)
    e = env(unique, kafka_bootstrap, **_store_env(server_store))
    port = free_port()
    worker = spawn("worker", ["worker"], {**e, "CITYBRAIN_METRICS_PORT": str(port)})
    sink = spawn("sink", ["sink"], e)
    producer.start()
    # kill the worker once it has produced indicators and checkpointed state (twice: the
    # first checkpoint may cover only the backlog it found at start)
    wait_until(lambda: server_store.query(
        "SELECT count() AS n FROM indicators WHERE entity_type = 'sensor'")["n"][0] > 3000,
        timeout=120, what="first indicators", procs=[worker, sink])
    wait_until(lambda: metric_value(port, "citybrain_checkpoints_total") >= 2, timeout=60,
               what="two checkpoints", procs=[worker, sink])
    assert producer.sent < len(frames), "the stream had ended before the kill"
    worker.kill()  # SIGKILL to the process group: no shutdown, no final commit
    killed_at = server_store.query("SELECT max(ts) AS t FROM district_risk")["t"][0]
    time.sleep(1)
    worker2 = spawn("worker2", ["worker"], e)
    producer.finish()
    _wait_all(server_store, frames, expected, [worker2, sink], kafka=(kafka_bootstrap, unique))
    _check_exact(server_store, frames, expected, kafka=(kafka_bootstrap, unique))
    assert "restoring state of gateway" in worker2.tail(200000), "the new worker started cold"
    # derived outputs continue after the restart
    risk = server_store.query("SELECT max(ts) AS t, uniqExact(district) AS d FROM district_risk")
    assert risk["t"][0] > killed_at and risk["d"][0] == len(city.districts)
    assert worker2.stop() == 0, worker2.tail()
    assert sink.stop() == 0, sink.tail()


def test_kafka_broker_restart_mid_stream(server_store, unique, spawn, tmp_path):
    """A private broker (the shared one stays up) is stopped and started again while frames
    flow: the producer, the worker and the sink ride it out; ClickHouse holds exactly the
    produced readings and indicators, and risk rows continue after the restart."""
    t0 = time.monotonic()
    broker = PrivateKafka(tmp_path / "svc")
    broker.start()
    try:
        _coordinator_ready(broker.bootstrap)
        print(f"{time.monotonic() - t0:.1f}s: private broker ready")
        city = load_city(SMALL_CITY)
        frames = traffic_frames(city, steps=60, start=START, seed=14)
        expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
        producer = PacedProducer(broker.bootstrap, unique, frames, seconds=30)
        e = env(unique, broker.bootstrap, **_store_env(server_store))
        worker = spawn("worker", ["worker"], e)
        sink = spawn("sink", ["sink"], e)
        producer.start()
        wait_until(lambda: server_store.query(
            "SELECT count() AS n FROM indicators WHERE entity_type = 'sensor'")["n"][0] > 2000,
            timeout=120, what="first indicators", procs=[worker, sink])
        sent_before = producer.sent
        print(f"{time.monotonic() - t0:.1f}s: stopping the broker")
        broker.stop()  # SIGTERM: a controlled shutdown, as in a rolling restart
        print(f"{time.monotonic() - t0:.1f}s: broker stopped")
        broker.start()
        print(f"{time.monotonic() - t0:.1f}s: broker started again")
        restarted_at = server_store.query("SELECT max(ts) AS t FROM district_risk")["t"][0]
        producer.finish(timeout=180)
        assert sent_before < len(frames), "the stream had ended before the restart"
        _wait_all(server_store, frames, expected, [worker, sink])
        _check_exact(server_store, frames, expected)
        print(f"{time.monotonic() - t0:.1f}s: everything stored")
        risk = server_store.query("SELECT max(ts) AS t, uniqExact(district) AS d FROM district_risk")
        assert risk["t"][0] > restarted_at and risk["d"][0] == len(city.districts)
        assert worker.stop() == 0, worker.tail()
        assert sink.stop() == 0, sink.tail()
    finally:
        broker.stop()
        print(f"{time.monotonic() - t0:.1f}s: done")


def test_two_workers_one_killed_store_what_one_worker_stores(kafka_bootstrap, server_store,
                                                             unique, spawn):
    """Two workers in one consumer group share the 4 readings partitions; the one that runs
    the city tick is SIGKILLed mid-stream and the other takes its partitions and the city tick
    over (restoring their state from the changelog). Stored readings and sensor indicators
    equal the single-worker result exactly (the plain-Python reference, which the one-worker
    tests match); the city tick ran in one worker at a time, over the sensors of both."""
    city = load_city(SMALL_CITY)
    frames = traffic_frames(city, steps=80, start=START, seed=15)
    sensors = {s for f in frames for s in f.sensor_id.tolist()}
    expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
    producer = PacedProducer(kafka_bootstrap, unique, frames, seconds=30, hold_at=0.75)
    e = env(unique, kafka_bootstrap, **_store_env(server_store))
    ports = [free_port(), free_port()]
    w1 = spawn("worker1", ["worker"], {**e, "CITYBRAIN_METRICS_PORT": str(ports[0])})
    w2 = spawn("worker2", ["worker"], {**e, "CITYBRAIN_METRICS_PORT": str(ports[1])})
    workers = [w1, w2]
    sink = spawn("sink", ["sink"], e)
    wait_until(lambda: all("[^Worker]: Ready" in w.tail(20000) for w in workers), timeout=120,
               what="both workers ready", procs=[*workers, sink])
    producer.start()

    def both_working() -> bool:
        n = [metric_value(p, "citybrain_readings_in_total") for p in ports]
        print(f"readings in per worker: {n}")
        return all(x > 0 for x in n)

    wait_until(both_working, timeout=120, what="both workers to process readings",
               procs=[*workers, sink])

    def gauge(i: int, name: str) -> float:
        return metric_value(ports[i], name) if workers[i].alive() else 0.0

    def city_owner() -> int | None:
        owner = [gauge(i, "citybrain_city_owner") for i in range(2)]
        sensed = [gauge(i, "citybrain_city_sensors") for i in range(2)]
        print(f"city owner {owner}, sensors held {sensed} of {len(sensors)}")
        if sorted(owner) != [0.0, 1.0]:
            return None
        i = owner.index(1.0)
        return i if sensed[i] == len(sensors) else None

    # one worker runs the city tick, over the sensors of both
    wait_until(lambda: city_owner() is not None, timeout=120, what="one city tick owner",
               procs=[*workers, sink])
    victim = city_owner()
    assert victim is not None
    survivor = 1 - victim
    # kill the owner once it has checkpointed state of its own
    wait_until(lambda: metric_value(ports[victim], "citybrain_checkpoints_total") >= 2,
               timeout=60, what="a checkpoint of the city tick's owner", procs=[*workers, sink])
    assert producer.sent < len(frames), "the stream had ended before the kill"
    killed_at = server_store.query("SELECT max(ts) AS t FROM district_risk")["t"][0]
    workers[victim].kill()
    live = workers[survivor]
    live.tail()  # flushes its log
    log_at = live.log.stat().st_size
    producer.finish()
    _wait_all(server_store, frames, expected, [live, sink], kafka=(kafka_bootstrap, unique))
    _check_exact(server_store, frames, expected, kafka=(kafka_bootstrap, unique))
    live.tail()
    after = live.log.read_bytes()[log_at:].decode(errors="replace")
    assert "restoring state of gateway" in after, "the survivor took over without state"
    assert "now runs the city tick (restored" in after, "the city tick moved without its state"
    wait_until(lambda: city_owner() == survivor, timeout=60, what="the survivor's city tick",
               procs=[live, sink])
    risk = server_store.query("SELECT max(ts) AS t, uniqExact(district) AS d FROM district_risk")
    assert risk["t"][0] > killed_at and risk["d"][0] == len(city.districts)
    assert live.stop() == 0, live.tail()
    assert sink.stop() == 0, sink.tail()


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


OUTAGE_S = 60


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
        producer = PacedProducer(kafka_bootstrap, unique, frames, seconds=OUTAGE_S + 15)
        producer.start()
        wait_until(lambda: store.query("SELECT count() AS n FROM readings_traffic")["n"][0] > 2000,
                   timeout=120, what="first readings", procs=[worker, sink])
        ch.stop()
        sent0, rss0 = producer.sent, _rss_mb(sink.proc.pid)
        peak, peak_rss, t_end = 0.0, rss0, time.monotonic() + OUTAGE_S
        while time.monotonic() < t_end:
            assert sink.alive(), sink.tail()
            peak = max(peak, metric_value(metrics_port, "citybrain_buffered_rows"))
            peak_rss = max(peak_rss, _rss_mb(sink.proc.pid))
            time.sleep(0.5)
        failures = metric_value(metrics_port, "citybrain_store_failures_total")
        during = sum(len(f) for f in frames[sent0:producer.sent])
        ch.start()
        producer.finish()
        _wait_all(store, frames, expected, [worker, sink])
        _check_exact(store, frames, expected)
        assert failures >= 1, "the sink never noticed the outage"
        # bounded: one batch plus what one poll returns (frames of 25 readings), although more
        # readings than that arrived during the outage
        bound = batch_rows + 500 * 25
        print(f"outage {OUTAGE_S}s: {during} readings produced, peak buffered rows {peak:.0f}, "
              f"sink RSS {rss0:.0f} -> peak {peak_rss:.0f} MB")
        assert during > bound, f"too little data during the outage to test the bound: {during}"
        assert 0 < peak <= bound, peak
        assert peak_rss - rss0 < 64, f"sink RSS grew by {peak_rss - rss0:.0f} MB during the outage"
        assert worker.stop() == 0, worker.tail()
        assert sink.stop() == 0, sink.tail()
        store.close()
    finally:
        ch.stop()


N_BAD = 10_000


def test_generated_bad_messages_through_kafka(kafka_bootstrap, server_store, spawn):
    """10,000 generated bad messages (hypothesis; every class about equally often) mixed into
    a good stream: each is in city.deadletter with its reason, original bytes and source
    offset; the good data is stored exactly."""
    import random
    import uuid

    bad = draw_bad_messages(N_BAD)
    assert len(bad) == N_BAD and {r for _raw, r in bad} == REASONS
    seed = random.randrange(2**31)
    print(f"positions seed {seed}")
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
