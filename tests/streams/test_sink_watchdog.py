"""The sink's group watchdog, as a unit: no broker, a stand-in consumer and a manual clock.

kafka-python 3.0 sometimes never completes a rebalance. During an eager rebalance it keeps the
old assignment (paused, "pending revocation") until the new one arrives, so such a sink looks
assigned while it consumes nothing; the watchdog must measure the rebalance from the revocation
callback and start a fresh consumer after ``sink_rejoin_after_s``.
"""

from __future__ import annotations

from config.settings import load_settings
from streams.sink import Sink
from tests.conftest import SMALL_CITY


class _Consumer:
    def __init__(self, assigned: set[str]) -> None:
        self.assigned, self.closed = assigned, False

    def assignment(self) -> set[str]:
        return self.assigned

    def close(self, autocommit: bool = False) -> None:
        self.closed = True


def _sink(now: list[float]) -> Sink:
    settings = load_settings(city_file=str(SMALL_CITY), sink_rejoin_after_s=30)
    sink = Sink(settings, store=None, clock=lambda: now[0])  # type: ignore[arg-type]
    sink._assigned_at = now[0]
    return sink


def test_a_rebalance_that_never_completes_is_rejoined():
    now = [0.0]
    sink = _sink(now)
    fresh = _Consumer({"t-0"})
    sink._consumer = lambda: fresh  # type: ignore[method-assign]
    old = _Consumer({"t-0"})  # kafka-python keeps the old assignment during the rebalance
    sink._rebalance_started = 5.0  # the revocation callback ran at t=5
    now[0] = 20.0
    assert sink._watchdog(old) is old  # 15 s: a rebalance may take that long
    now[0] = 35.0
    assert sink._watchdog(old) is fresh and old.closed
    assert sink._rebalance_started is None


def test_a_completed_rebalance_is_left_alone():
    now = [0.0]
    sink = _sink(now)
    consumer = _Consumer({"t-0"})
    sink._rebalance_started = 5.0
    sink._rebalance_started = None  # on_partitions_assigned
    now[0] = 100.0
    assert sink._watchdog(consumer) is consumer and not consumer.closed


def test_no_partitions_for_too_long_is_rejoined():
    now = [0.0]
    sink = _sink(now)
    fresh = _Consumer({"t-0"})
    sink._consumer = lambda: fresh  # type: ignore[method-assign]
    empty = _Consumer(set())
    now[0] = 10.0
    assert sink._watchdog(empty) is empty
    now[0] = 31.0
    assert sink._watchdog(empty) is fresh and empty.closed
