"""A restore interrupted by another rebalance, on the real Apache Kafka and ClickHouse server.

A worker that joins reads the state of its new partitions from the changelog before it takes
their first event. If the group rebalances again while that read is still running (a third
worker joins, a slow broker), the read belongs to an assignment that no longer exists: the
worker must not use it (Faust cancels it, or ``start_positions`` finds the generation changed
and abandons it), must read again for the *new* assignment, and the group must still store
exactly what one worker stores. The fault is made certain, not hoped for: the joining worker's changelog reads
are slowed (``CITYBRAIN_WORKER_RESTORE_DELAY_S``), and the third worker joins during the first.
"""

from __future__ import annotations

import pytest

from config.city import load_city
from tests.conftest import SMALL_CITY, free_port, wait_until
from tests.framegen import expected_rolling_means, traffic_frames
from tests.streams.e2e import LATENESS, WINDOW, PacedProducer, env, metric_value
from tests.streams.test_reliability import START, _check_exact, _store_env, _wait_all

pytestmark = pytest.mark.services

DELAY_S = 8.0


def test_restore_cut_short_by_a_second_rebalance(kafka_bootstrap, server_store, unique, spawn):
    city = load_city(SMALL_CITY)
    frames = traffic_frames(city, steps=80, start=START, seed=23)
    expected = expected_rolling_means(frames, window_s=WINDOW, step_s=60, lateness_s=LATENESS)
    producer = PacedProducer(kafka_bootstrap, unique, frames, seconds=40, hold_at=0.8)
    e = env(unique, kafka_bootstrap, **_store_env(server_store))
    ports = [free_port() for _ in range(3)]
    w1 = spawn("worker1", ["worker"], {**e, "CITYBRAIN_METRICS_PORT": str(ports[0])})
    sink = spawn("sink", ["sink"], e)
    wait_until(lambda: "[^Worker]: Ready" in w1.tail(20000), timeout=120, what="worker1 ready",
               procs=[w1, sink])
    producer.start()
    # worker1 alone builds state and checkpoints it
    wait_until(lambda: metric_value(ports[0], "citybrain_checkpoints_total") >= 2, timeout=120,
               what="checkpoints of worker1", procs=[w1, sink])

    # worker2 joins; its changelog reads are slow, so the third member arrives while it reads
    w2 = spawn("worker2", ["worker"], {**e, "CITYBRAIN_METRICS_PORT": str(ports[1]),
                                       "CITYBRAIN_WORKER_RESTORE_DELAY_S": str(DELAY_S)})
    wait_until(lambda: "delayed" in w2.tail(20000), timeout=120,
               what="worker2 to start restoring its first assignment", procs=[w1, w2, sink])
    w3 = spawn("worker3", ["worker"], {**e, "CITYBRAIN_METRICS_PORT": str(ports[2])})
    wait_until(lambda: "abandoned: another rebalance" in w2.tail(200000)
               or w2.tail(200000).count("delayed") >= 2, timeout=120,
               what="worker2's first restore to be overtaken by the next rebalance",
               procs=[w1, w2, w3, sink])
    assert producer.sent < len(frames), "the stream had ended before the second rebalance"
    producer.finish()

    procs = [w1, w2, w3, sink]
    _wait_all(server_store, frames, expected, procs, kafka=(kafka_bootstrap, unique))
    _check_exact(server_store, frames, expected, kafka=(kafka_bootstrap, unique))
    log2 = w2.tail(400000)
    print("worker2:", "\n".join(ln for ln in log2.splitlines()
                                if "restor" in ln or "assigned" in ln or "abandoned" in ln))
    # the interrupted read was not used: worker2 read again for the assignment it ended with
    assert log2.count("delayed") >= 2, log2
    # every member took part after the second rebalance
    n = [metric_value(p, "citybrain_readings_in_total") for p in ports]
    assert sum(x > 0 for x in n) >= 2, n
    for p in procs:
        assert p.stop() == 0, p.tail()
