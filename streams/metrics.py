"""Prometheus metrics of the worker and the sink, served on ``CITYBRAIN_METRICS_PORT``.

One registry per process (not the global default, so tests can build several apps). Names:

====================================  =========  ===============================================
``citybrain_messages_in_total``       counter    consumed messages, by ``topic``
``citybrain_readings_in_total``       counter    readings in valid frames
``citybrain_messages_out_total``      counter    produced messages, by logical ``topic``
``citybrain_rows_out_total``          counter    derived rows produced / rows stored, by ``kind``
``citybrain_deadletters_total``       counter    dead letters, by ``reason``
``citybrain_batch_messages``          histogram  messages per processed batch
``citybrain_batch_seconds``           histogram  processing time of a batch
``citybrain_latency_seconds``         histogram  produce time (Kafka timestamp) → processed/stored
``citybrain_consumer_lag_messages``   gauge      high-water mark − next offset, by ``topic``/``partition``
``citybrain_buffered_rows``           gauge      rows the sink holds in memory
``citybrain_store_failures_total``    counter    failed inserts (the sink pauses and retries)
``citybrain_checkpoints_total``       counter    state snapshots written (worker)
``citybrain_city_owner``              gauge      1 in the worker that runs the city tick
``citybrain_city_sensors``            gauge      sensors whose tick inputs the city state holds
``citybrain_city_ticks_total``        counter    city ticks run (risk, alerts, health)
====================================  =========  ===============================================
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("citybrain.metrics")

_BATCH = (1, 5, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class Metrics:
    def __init__(self, role: str) -> None:
        self.role = role
        r = self.registry = CollectorRegistry()
        lbl = ["role"]
        self.messages_in = Counter(
            "citybrain_messages_in", "consumed messages", [*lbl, "topic"], registry=r
        )
        self.readings_in = Counter("citybrain_readings_in", "readings in valid frames", lbl,
                                   registry=r)
        self.messages_out = Counter(
            "citybrain_messages_out", "produced messages", [*lbl, "topic"], registry=r
        )
        self.rows_out = Counter("citybrain_rows_out", "derived rows produced or stored",
                                [*lbl, "kind"], registry=r)
        self.deadletters = Counter("citybrain_deadletters", "dead letters", [*lbl, "reason"],
                                   registry=r)
        self.batch_messages = Histogram("citybrain_batch_messages", "messages per batch", lbl,
                                        buckets=_BATCH, registry=r)
        self.batch_seconds = Histogram("citybrain_batch_seconds", "batch processing time", lbl,
                                       buckets=_SECONDS, registry=r)
        self.latency = Histogram("citybrain_latency_seconds",
                                 "produce time to processed (worker) or stored (sink)", lbl,
                                 buckets=_SECONDS, registry=r)
        self.lag = Gauge("citybrain_consumer_lag_messages", "high-water mark minus position",
                         [*lbl, "topic", "partition"], registry=r)
        self.buffered_rows = Gauge("citybrain_buffered_rows", "rows held by the sink", lbl,
                                   registry=r)
        self.store_failures = Counter("citybrain_store_failures", "failed inserts", lbl,
                                      registry=r)
        self.checkpoints = Counter("citybrain_checkpoints", "state snapshots written", lbl,
                                   registry=r)
        self.city_owner = Gauge("citybrain_city_owner", "1 if this worker runs the city tick",
                                lbl, registry=r)
        self.city_sensors = Gauge("citybrain_city_sensors",
                                  "sensors whose tick inputs the city state holds", lbl,
                                  registry=r)
        self.city_ticks = Counter("citybrain_city_ticks", "city ticks run", lbl, registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``port`` (0 = off) in a daemon thread."""
        if port:
            start_http_server(port, addr=host, registry=self.registry)
            log.info("metrics on http://%s:%d/metrics", host, port)
