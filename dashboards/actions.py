"""Operator actions to the workers: the dashboard's producer for the ``actions`` topic.

An operator's acknowledge or resolve is written twice: the ``alert_events`` row in ClickHouse
(``dashboards.app.record_action``: the immediate, persisted record the screen shows) and, with
:class:`ActionPublisher`, a message on the ``actions`` topic that every worker applies to its
alert state machine (``streams/actions.py``), so an acknowledged alert stops escalating and a
resolved one is closed in the worker too. The producer is created on first use (a dashboard
whose broker is down still starts) and sends synchronously with ``acks=all``: a failure raises
:class:`ActionPublishError`, which the screen shows to the operator; it is logged, never dropped
silently. Works in both modes: ``citybrain dashboard`` and the embedded hub both have the Kafka
settings.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson

from config.settings import Settings

log = logging.getLogger("citybrain.dashboard.actions")

_FAILED = {
    "en": "Saved on this screen, but NOT sent to the stream workers (Kafka: {error}): they "
          "may keep escalating or updating this alert. Please tell the administrator.",
    "zh": "已在本屏幕保存，但未能发送给流处理节点（Kafka：{error}）：它们可能继续升级或更新此告警。"
          "请通知管理员。",
}


def encode(alert_id: str, action: str, by: str, ts: float) -> bytes:
    """The wire format ``streams.actions.decode_action`` reads (the dashboard does not import
    ``streams``; tests/dashboards/test_actions.py decodes with it)."""
    return orjson.dumps({"alert_id": alert_id, "action": action, "by": by, "ts": float(ts)})


class ActionPublishError(Exception):
    """The action could not be delivered to the ``actions`` topic."""


def failure_text(exc: Exception, lang: str) -> str:
    """The operator's message for a failed publish (the ClickHouse row was written)."""
    return _FAILED.get(lang, _FAILED["en"]).format(error=exc)


class ActionPublisher:
    """Sends operator actions to ``<prefix>.actions`` (key the alert id, so the actions of
    one alert stay in order on one partition)."""

    def __init__(self, settings: Settings, *, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.topic = settings.topic("actions")
        self.timeout_s = timeout_s
        self._producer: Any = None
        self._lock = threading.Lock()  # Dash callbacks run in several threads

    def _get(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            s = self.settings
            # no topic creation here: every worker creates the topics at start (ensure_topics),
            # and alerts to act on exist only where a worker ran
            self._producer = KafkaProducer(
                **s.kafka_common(), ssl_context=s.ssl_context(), acks="all",
                client_id="citybrain-dashboard-actions",
                # an operator waits on this call: fail within timeout_s when the broker is
                # away (kafka-python's bootstrap alone waits 30 s by default)
                bootstrap_timeout_ms=int(self.timeout_s * 1000),
                max_block_ms=int(self.timeout_s * 1000),
                request_timeout_ms=int(self.timeout_s * 1000),
            )
        return self._producer

    def publish(self, alert_id: str, action: str, by: str, ts: float) -> None:
        """Send one action and wait until Kafka holds it; raises ActionPublishError."""
        if action not in ("acknowledged", "resolved"):
            raise ValueError(f"action must be acknowledged or resolved, got {action!r}")
        value = encode(alert_id, action, by, ts)
        with self._lock:
            try:
                fut = self._get().send(self.topic, key=alert_id.encode(), value=value)
                meta = fut.get(timeout=self.timeout_s)
            except Exception as exc:  # KafkaError, NoBrokersAvailable, OSError, timeouts
                self._close_quietly()  # a new producer next time (the broker may be back)
                log.error("operator action %s on alert %s by %s NOT sent to %s: %r",
                          action, alert_id, by, self.topic, exc)
                raise ActionPublishError(str(exc) or type(exc).__name__) from exc
        log.info("operator action %s on alert %s by %s sent to %s[%d]@%d", action, alert_id,
                 by, self.topic, meta.partition, meta.offset)

    def _close_quietly(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            try:
                p.close(timeout=1)
            except Exception as exc:  # closing a broken producer must not hide the first error
                log.debug("closing the actions producer: %r", exc)

    def close(self) -> None:
        with self._lock:
            self._close_quietly()
