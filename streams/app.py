"""The Faust application: one agent over the readings topics, batched with ``noack_take``.

Why ``noack_take`` and manual acks: faust-streaming's ``take()`` acks a batch in a ``finally``
block, so a batch interrupted by an exception or a shutdown is acked (and its offsets committed)
although it was never fully processed. Here a batch is acked only after its outputs were handed
to the producer; Faust flushes the producer before it commits offsets, so a committed offset
always has its outputs in Kafka (at-least-once). Duplicate processing after a crash is harmless:
windows ignore readings they have already counted, and the store de-duplicates by key.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from config.city import load_city
from config.settings import Settings
from streams.processor import Message, Processor
from streams.topics import READINGS

log = logging.getLogger("citybrain.worker")


def broker_credentials(settings: Settings) -> Any:
    proto = settings.kafka_security_protocol
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.sasl_password(),
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=settings.ssl_context(),
        )
    if proto == "SSL":
        return faust.SSLCredentials(settings.ssl_context())
    return None


def create_app(settings: Settings) -> faust.App:
    city = load_city(settings.city_file)
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.worker_data_dir),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_acks=-1,
        broker_commit_interval=1.0,
    )
    processor = Processor(
        city,
        window_s=settings.window_s,
        lateness_s=settings.allowed_lateness_s,
        max_frame_bytes=settings.max_frame_bytes,
    )
    readings = app.topic(*[settings.topic(t) for t in READINGS], value_serializer="raw")
    indicators = app.topic(settings.topic("indicators"), value_serializer="raw")
    deadletter = app.topic(settings.topic("deadletter"), value_serializer="raw")

    @app.agent(readings, name="readings")
    async def process(stream: faust.StreamT) -> None:
        async for events in stream.noack_take(
            settings.worker_batch, within=settings.worker_batch_timeout_s
        ):
            msgs = [
                Message(
                    e.message.topic, e.message.partition, e.message.offset,
                    e.message.key, e.message.value,
                )
                for e in events
            ]
            out = processor.process(msgs)
            for key, value in out.indicators:
                await indicators.send(key=key, value=value)
            for dkey, value in out.deadletters:
                await deadletter.send(key=dkey, value=value)
            for e in events:
                await stream.ack(e)

    app.citybrain_processor = processor  # type: ignore[attr-defined]
    return app


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (Faust handles both and stops cleanly)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
