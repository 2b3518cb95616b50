"""Topic specs and creation (kafka-python admin client)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from config.domains import DOMAINS
from config.settings import Settings

#: logical topic names (prefixed with settings.topic_prefix)
READINGS = tuple(f"readings.{d}" for d in DOMAINS)
#: ``actions``: operator acknowledge/resolve from the dashboard to every worker
#: (JSON ``{"alert_id", "action", "by", "ts"}``, key the alert id; see streams/actions.py)
#: ``tickstate``: the workers' city-tick inputs to the one owner of the city tick
#: (partition 0 only; see streams/city.py)
DERIVED = ("indicators", "anomalies", "risk", "alerts", "deadletter", "groundtruth",
           "actions", "tickstate")


#: topic settings at creation: the tick states are read at once by the city tick's owner (a new
#: owner starts from the last checkpoint, seconds old), so an hour is plenty; at the default
#: city's ~0.3 MB a minute per worker they would otherwise fill days of the broker's retention
CONFIGS = {"tickstate": {"retention.ms": str(3_600_000), "segment.ms": str(600_000)}}


def all_topics(settings: Settings) -> list[str]:
    return [settings.topic(t) for t in (*READINGS, *DERIVED)]


def admin(settings: Settings, *, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, retrying until the broker answers or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                **settings.kafka_common(),
                ssl_context=settings.ssl_context(),
                request_timeout_ms=15000,
                client_id="citybrain-admin",
            )
        except (KafkaError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_topics(
    settings: Settings, *, timeout_s: float = 30.0, log: Callable[[str], None] | None = None
) -> list[str]:
    """Create the citybrain topics that do not exist yet; returns the ones created."""
    client = admin(settings, timeout_s=timeout_s)
    try:
        existing = set(client.list_topics())
        missing = [t for t in all_topics(settings) if t not in existing]
        configs = {settings.topic(name): c for name, c in CONFIGS.items()}
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics(
                    [
                        NewTopic(t, settings.kafka_partitions, settings.kafka_replication,
                                 topic_configs=configs.get(t, {}))
                        for t in missing
                    ]
                )
            if log:
                log(f"created topics: {', '.join(missing)}")
        return missing
    finally:
        client.close()
