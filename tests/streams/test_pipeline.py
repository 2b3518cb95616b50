"""End to end on real services: frames → Kafka → Faust worker → sink → ClickHouse.

Two runs of the same path: Apache Kafka + ClickHouse server (local services), and Tansu + chDB
(the embedded default, where the hub owns chDB and the test reads through its SQL endpoint).
Both check the stored readings and indicators exactly against a plain-Python reference.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import orjson
import pandas as pd
import pytest
from kafka import KafkaConsumer, KafkaProducer

from config.city import load_city
from config.settings import load_settings
from models.frame import decode, encode
from streams.codecs import decode_deadletter
from streams.topics import ensure_topics
from tests.conftest import SMALL_CITY, free_port, wait_until
from tests.framegen import expected_rolling_means, traffic_frames

START = 1767571200.0  # 2026-01-05 00:00:00 UTC
WINDOW, STEP, LATENESS = 300, 60, 120

BAD_MESSAGES = [
    (b"not json at all", "malformed_json"),
    (orjson.dumps({"v": 9, "gateway": "TR-G001"}), "unknown_version"),
    (orjson.dumps({"v": 1, "gateway": "NOPE", "domain": "traffic", "ts": [1.0],
                   "sensor_id": ["X"], "seq": [1], "metrics": {"flow_vph": [1.0],
                   "speed_kmh": [1.0], "occupancy_pct": [1.0]}}), "unknown_gateway"),
    (orjson.dumps({"v": 1, "gateway": "TR-G001", "domain": "traffic", "ts": [1.0, 2.0],
                   "sensor_id": ["TR-S0001"], "seq": [1], "metrics": {"flow_vph": [1.0],
                   "speed_kmh": [1.0], "occupancy_pct": [1.0]}}), "ragged"),
]


def _env(prefix: str, bootstrap: str, **extra: str) -> dict[str, str]:
    return {
        "CITYBRAIN_KAFKA_BOOTSTRAP": bootstrap,
        "CITYBRAIN_TOPIC_PREFIX": prefix,
        "CITYBRAIN_CITY_FILE": str(SMALL_CITY),
        "CITYBRAIN_GROUP_ID": f"{prefix}-worker",
        "CITYBRAIN_SINK_GROUP_ID": f"{prefix}-sink",
        "CITYBRAIN_WINDOW_S": str(WINDOW),
        "CITYBRAIN_ALLOWED_LATENESS_S": str(LATENESS),
        "CITYBRAIN_SINK_FLUSH_S": "0.5",
        **extra,
    }


def _produce(bootstrap: str, prefix: str) -> tuple[list, dict]:
    """Produce the test stream: good frames, a redelivered block, bad messages."""
    settings = load_settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    ensure_topics(settings)
    city = load_city(SMALL_CITY)
    frames = traffic_frames(city, steps=40, start=START, seed=7)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    topic = settings.topic("readings.traffic")
    for f in frames:
        producer.send(topic, key=f.gateway.encode(), value=encode(f))
    for f in frames[100:130]:  # redelivery: must not count twice anywhere
        producer.send(topic, key=f.gateway.encode(), value=encode(f))
    for raw, _reason in BAD_MESSAGES:
        producer.send(topic, key=b"TR-G001", value=raw)
    producer.flush()
    producer.close()
    expected = expected_rolling_means(frames, window_s=WINDOW, step_s=STEP, lateness_s=LATENESS)
    return frames, expected


def _readings_frame(frames: list) -> pd.DataFrame:
    return pd.DataFrame({
        "sensor_id": np.concatenate([f.sensor_id for f in frames]).astype(str),
        "seq": np.concatenate([f.seq for f in frames]),
        "flow_vph": np.concatenate([f.metrics["flow_vph"] for f in frames]),
        "speed_kmh": np.concatenate([f.metrics["speed_kmh"] for f in frames]),
    }).sort_values(["sensor_id", "seq"]).reset_index(drop=True)


def _check(readings: pd.DataFrame, indicators: pd.DataFrame, frames: list, expected: dict) -> None:
    want = _readings_frame(frames)
    got = readings.sort_values(["sensor_id", "seq"]).reset_index(drop=True)
    assert len(got) == len(want) == 12000
    assert (got["sensor_id"].astype(str).values == want["sensor_id"].values).all()
    assert (got["seq"].astype(np.int64).values == want["seq"].values).all()
    np.testing.assert_allclose(got["flow_vph"].astype(float), want["flow_vph"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["speed_kmh"].astype(float), want["speed_kmh"], rtol=0, atol=1e-9)
    assert len(indicators) == len(expected) == 300 * 3 * 17
    got_ind = {
        (str(r.entity_id), str(r.name), int(r.t)): float(r.value)
        for r in indicators.itertuples()
    }
    assert got_ind.keys() == expected.keys()
    worst = max(abs(got_ind[k] - v) for k, v in expected.items())
    assert worst < 1e-9, f"indicator differs from the reference by {worst}"


def _dead_letters(bootstrap: str, prefix: str, n: int, timeout_ms: int = 20000) -> list[dict]:
    consumer = KafkaConsumer(
        f"{prefix}.deadletter", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
    )
    out = []
    for msg in consumer:
        out.append(decode_deadletter(msg.value))
        if len(out) >= n:
            break
    consumer.close()
    return out


READINGS_SQL = "SELECT sensor_id, seq, flow_vph, speed_kmh FROM readings_traffic FINAL"
INDICATORS_SQL = ("SELECT entity_id, name, toUInt32(ts) AS t, value FROM indicators FINAL "
                  "WHERE entity_type = 'sensor'")


@pytest.mark.services
def test_kafka_faust_clickhouse_server(kafka_bootstrap, server_store, unique, spawn):
    frames, expected = _produce(kafka_bootstrap, unique)
    host, _, port = server_store._kw["host"], None, server_store._kw["port"]
    env = _env(unique, kafka_bootstrap, CITYBRAIN_STORE="clickhouse",
               CITYBRAIN_CLICKHOUSE_URL=f"clickhouse://{host}:{port}/{server_store.database}")
    worker = spawn("worker", ["worker"], env)
    sink = spawn("sink", ["sink"], env)

    def done() -> bool:
        r = server_store.query("SELECT count() AS n FROM readings_traffic FINAL")["n"][0]
        i = server_store.query(
            "SELECT count() AS n FROM indicators FINAL WHERE entity_type = 'sensor'")["n"][0]
        print(f"readings {r}/12000, indicators {i}/{len(expected)}")
        return bool(r == 12000 and i == len(expected))

    wait_until(done, timeout=180, what="readings and indicators in ClickHouse",
               procs=[worker, sink])
    _check(server_store.query(READINGS_SQL), server_store.query(INDICATORS_SQL), frames, expected)
    # the bad messages, plus redelivered frames whose windows had closed ("late"); a copy
    # that arrives while its window is open is dropped as a duplicate instead
    dead = _dead_letters(kafka_bootstrap, unique, len(BAD_MESSAGES) + 30, timeout_ms=8000)
    bad = [d for d in dead if d["reason"] != "late"]
    assert sorted(d["reason"] for d in bad) == sorted(r for _, r in BAD_MESSAGES)
    assert {d["raw"] for d in bad} == {raw for raw, _ in BAD_MESSAGES}
    redelivered = {(str(s), int(q)) for f in frames[100:130]
                   for s, q in zip(f.sensor_id, f.seq, strict=True)}
    for d in dead:
        if d["reason"] == "late":
            late = decode(d["raw"])
            pairs = zip(late.sensor_id, late.seq, strict=True)
            assert {(str(s), int(q)) for s, q in pairs} <= redelivered
    assert all(d["topic"] == f"{unique}.readings.traffic" and d["offset"] >= 0 for d in dead)
    assert worker.stop() == 0, worker.tail()
    assert sink.stop() == 0, sink.tail()


def _hub_sql(url: str, sql: str) -> pd.DataFrame:
    req = urllib.request.Request(url + "api/sql", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.loads(r.read())
    return pd.DataFrame(body["rows"], columns=body["columns"])


@pytest.mark.embedded
def test_tansu_faust_chdb(tansu_bootstrap, unique, spawn, tmp_path):
    frames, expected = _produce(tansu_bootstrap, unique)
    port = free_port()
    env = _env(unique, tansu_bootstrap, CITYBRAIN_STORE="chdb",
               CITYBRAIN_CHDB_PATH=str(tmp_path / "chdb"), CITYBRAIN_DASHBOARD_PORT=str(port),
               CITYBRAIN_WORKER_DATA_DIR=str(tmp_path / "faust"))
    worker = spawn("worker", ["worker"], env)
    hub = spawn("hub", ["hub"], env)
    url = f"http://127.0.0.1:{port}/"

    def done() -> bool:
        r = _hub_sql(url, "SELECT count() AS n FROM readings_traffic FINAL")["n"][0]
        i = _hub_sql(url, "SELECT count() AS n FROM indicators FINAL "
                          "WHERE entity_type = 'sensor'")["n"][0]
        print(f"readings {r}/12000, indicators {i}/{len(expected)}")
        return bool(r == 12000 and i == len(expected))

    wait_until(done, timeout=240, what="readings and indicators in chDB", procs=[worker, hub])
    _check(_hub_sql(url, READINGS_SQL), _hub_sql(url, INDICATORS_SQL), frames, expected)
    assert worker.stop() == 0, worker.tail()
    assert hub.stop() == 0, hub.tail()


def _changelog_case(bootstrap: str, prefix: str) -> tuple[str, dict[int, dict[bytes, bytes]]]:
    """A compacted 4-partition topic with overwritten keys, a tombstone and a 60 kB value;
    returns its name and the latest value per key of partitions 0-2 (3 is not asked for)."""
    from kafka.admin import NewTopic

    from streams.topics import admin

    topic = f"{prefix}-state-changelog"
    client = admin(load_settings(kafka_bootstrap=bootstrap))
    try:
        client.create_topics([NewTopic(topic, 4, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        client.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    want: dict[int, dict[bytes, bytes]] = {0: {}, 1: {}, 2: {}}
    for version in range(3):
        for p in range(4):
            for i in range(5):
                key = f"GW-{p}-{i}".encode()
                value: bytes | None = f"v{version}".encode() * (30_000 if (p, i) == (1, 4) else 1)
                if (p, i, version) == (2, 3, 2):
                    value = None  # deleted at the end
                producer.send(topic, key=key, value=value, partition=p)
                if p in want:
                    if value is None:
                        want[p].pop(key, None)
                    else:
                        want[p][key] = value
    producer.flush()
    producer.close()
    return topic, want


@pytest.mark.parametrize("broker", [
    pytest.param("kafka", marks=pytest.mark.services),
    pytest.param("tansu", marks=pytest.mark.embedded),
])
def test_read_changelog_gives_the_latest_value_per_key(broker, request, unique):
    """The worker's restore read (streams.app.read_changelog): exactly the latest value of every
    key of the asked partitions, tombstones applied, nothing of the other partitions; a topic
    that never appears is an error after the deadline, not a hang."""
    import asyncio
    import time

    from streams.app import read_changelog

    bootstrap = request.getfixturevalue(f"{broker}_bootstrap")
    topic, want = _changelog_case(bootstrap, unique)
    settings = load_settings(kafka_bootstrap=bootstrap, group_id=f"{unique}-worker")
    got = asyncio.run(read_changelog(settings, topic, {0, 1, 2}, time.monotonic() + 60))
    assert got == want
    assert len(got[1][b"GW-1-4"]) == 60_000
    with pytest.raises(TimeoutError):
        asyncio.run(read_changelog(settings, f"{unique}-missing", {0}, time.monotonic() + 2))


@pytest.mark.services
def test_tick_state_topic_is_created_with_a_short_retention(kafka_bootstrap, unique):
    """The workers' tick states are consumed at once: their topic keeps an hour, not the
    broker's default week (~0.3 MB a minute per worker for the default city)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from streams.topics import admin

    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique)
    assert settings.topic("tickstate") in ensure_topics(settings)
    client = admin(settings)
    try:
        got = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic("tickstate"))])
    finally:
        client.close()
    cfg = got["topic"][settings.topic("tickstate")]
    assert cfg["retention.ms"]["value"] == "3600000"
    assert cfg["segment.ms"]["value"] == "600000"
