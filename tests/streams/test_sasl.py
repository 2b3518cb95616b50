"""SASL/SCRAM against the real Apache Kafka SASL listener: the simulator's publisher, a worker
and the sink all authenticate; the data arrives exactly; the secret never reaches a log."""

from __future__ import annotations

import pytest

from config.city import load_city
from config.settings import load_settings
from sensors_sim.publisher import Publisher
from streams.topics import ensure_topics
from tests.conftest import SMALL_CITY
from tests.framegen import expected_rolling_means, traffic_frames
from tests.streams.e2e import LATENESS, WINDOW, env, frames_checksum, stored_checksum
from tests.streams.test_reliability import _check_exact, _store_env, _wait_all

SECRET = "citybrain-test-secret"  # scripts/services.py creates this SCRAM user
START = 1767571200.0


@pytest.mark.services
def test_sasl_scram_publisher_worker_sink(kafka_sasl_bootstrap, server_store, unique, spawn,
                                          tmp_path):
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text(SECRET + "\n")
    sasl = {
        "CITYBRAIN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CITYBRAIN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CITYBRAIN_KAFKA_SASL_USERNAME": "citybrain",
    }
    settings = load_settings(
        kafka_bootstrap=kafka_sasl_bootstrap, topic_prefix=unique,
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="citybrain", kafka_sasl_password_file=secret_file,
    )
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    ensure_topics(settings)
    city = load_city(SMALL_CITY)
    frames = traffic_frames(city, steps=20, start=START, seed=21)
    expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
    pub = Publisher(settings)
    pub.publish(frames)
    pub.close()
    assert pub.first_error is None
    base = env(unique, kafka_sasl_bootstrap, **_store_env(server_store), **sasl)
    # the worker reads the password from a file, the sink from the environment
    worker = spawn("worker", ["worker"],
                   {**base, "CITYBRAIN_KAFKA_SASL_PASSWORD_FILE": str(secret_file),
                    "CITYBRAIN_LOG_LEVEL": "DEBUG"})
    sink = spawn("sink", ["sink"], {**base, "CITYBRAIN_KAFKA_SASL_PASSWORD": SECRET,
                                    "CITYBRAIN_LOG_LEVEL": "DEBUG"})
    _wait_all(server_store, frames, expected, [worker, sink], timeout=180)
    _check_exact(server_store, frames, expected)
    assert stored_checksum(server_store) == frames_checksum(frames)
    assert worker.stop() == 0, worker.tail()
    assert sink.stop() == 0, sink.tail()
    for p in (worker, sink):
        text = p.log.read_text(errors="replace")
        assert "sasl" in text.lower()  # DEBUG logs talk about SASL, without the secret
        assert SECRET not in text, f"{p.name} logged the SASL password"
