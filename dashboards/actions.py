"""Operator actions to the workers: the dashboard's producer for the ``actions`` topic.

An operator's acknowledge or resolve is written twice: the ``alert_events`` row in ClickHouse
(``dashboards.app.record_action``: the immediate, persisted record the screen shows) and, with
:class:`ActionPublisher`, a message on the ``actions`` topic that every worker applies to its
alert state machine (``streams/actions.py``), so an acknowledged alert stops escalating and a
resolved one is closed in the worker too. The producer is created on first use (a dashboard
whose broker is down still starts) and sends synchronously with ``acks=all``: a failure raises
:class:`ActionPublishError`, which the screen shows to the operator, and keeps the action in an
outbox that a background thread sends again every ``retry_s`` until Kafka takes it (in order:
a later action waits behind the earlier ones, so an alert's acknowledge never overtakes its
resolve). Every failure and the final delivery are logged; actions still unsent when the
process stops are logged with their details (the ClickHouse rows keep them). Works in both modes: ``citybrain dashboard`` and the embedded hub both have the Kafka
settings.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from config.settings import Settings
from models.alerts import ACTIONS, Action, encode_action

log = logging.getLogger("citybrain.dashboard.actions")

_FAILED = {
    "en": "Saved on this screen, but NOT sent to the stream workers yet (Kafka: {error}); it "
          "is retried in the background. Until then they may keep escalating or updating this "
          "alert. If this persists, please tell the administrator.",
    "zh": "已在本屏幕保存，但尚未能发送给流处理节点（Kafka：{error}），后台将自动重试。在此之前它们"
          "可能继续升级或更新此告警。如持续出现，请通知管理员。",
}


class ActionPublishError(Exception):
    """The action could not be delivered to the ``actions`` topic."""


def failure_text(exc: Exception, lang: str) -> str:
    """The operator's message for a failed publish (the ClickHouse row was written)."""
    return _FAILED.get(lang, _FAILED["en"]).format(error=exc)


class ActionPublisher:
    """Sends operator actions to ``<prefix>.actions`` (key the alert id, so the actions of
    one alert stay in order on one partition). Unsent actions wait in an outbox (at most
    ``max_pending``) that a daemon thread retries every ``retry_s``."""

    def __init__(self, settings: Settings, *, timeout_s: float = 5.0, retry_s: float = 5.0,
                 max_pending: int = 10_000) -> None:
        self.settings = settings
        self.topic = settings.topic("actions")
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._producer: Any = None
        self._lock = threading.Lock()  # Dash callbacks run in several threads
        self._pending: deque[tuple[str, str, str, float, int]] = deque()
        self.max_pending = max_pending
        self._stop = threading.Event()
        self._retrier: threading.Thread | None = None

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

    def _send(self, alert_id: str, action: str, by: str, ts: float) -> Any:
        fut = self._get().send(self.topic, key=alert_id.encode(),
                               value=encode_action(Action(alert_id, action, by, ts)))
        return fut.get(timeout=self.timeout_s)

    def _flush_locked(self) -> None:
        """Send the outbox in order; raises on the first failure (the rest stay queued)."""
        while self._pending:
            alert_id, action, by, ts, tries = self._pending[0]
            try:
                meta = self._send(alert_id, action, by, ts)
            except Exception:
                self._pending[0] = (alert_id, action, by, ts, tries + 1)
                raise
            self._pending.popleft()
            log.warning("operator action %s on alert %s by %s sent to %s[%d]@%d after %d "
                        "failed attempt(s)", action, alert_id, by, self.topic, meta.partition,
                        meta.offset, tries)

    def publish(self, alert_id: str, action: str, by: str, ts: float) -> None:
        """Send one action and wait until Kafka holds it. On failure raises
        ActionPublishError and keeps the action in the outbox for the retry thread."""
        if action not in ACTIONS:
            raise ValueError(f"action must be acknowledged or resolved, got {action!r}")
        with self._lock:
            if len(self._pending) >= self.max_pending:
                lost = self._pending.popleft()
                log.error("actions outbox full (%d): dropped the oldest unsent action %s on "
                          "alert %s by %s (its alert_events row is kept)", self.max_pending,
                          lost[1], lost[0], lost[2])
            self._pending.append((alert_id, action, by, float(ts), 0))
            try:
                self._flush_locked()
            except Exception as exc:  # KafkaError, NoBrokersAvailable, OSError, timeouts
                self._close_quietly()  # a new producer next time (the broker may be back)
                log.error("operator action %s on alert %s by %s NOT sent to %s (%d unsent, "
                          "retried every %.0f s): %r", action, alert_id, by, self.topic,
                          len(self._pending), self.retry_s, exc)
                self._start_retrier()
                raise ActionPublishError(str(exc) or type(exc).__name__) from exc
        log.info("operator action %s on alert %s by %s sent to %s", action, alert_id, by,
                 self.topic)

    def pending(self) -> int:
        """How many actions wait in the outbox."""
        return len(self._pending)

    def _start_retrier(self) -> None:
        if self._retrier is None or not self._retrier.is_alive():
            self._retrier = threading.Thread(target=self._retry_loop, daemon=True,
                                             name="citybrain-actions-retry")
            self._retrier.start()

    def _retry_loop(self) -> None:
        while not self._stop.wait(self.retry_s):
            with self._lock:
                if not self._pending:
                    return
                try:
                    self._flush_locked()
                except Exception as exc:
                    self._close_quietly()
                    log.warning("actions outbox: %d unsent, next try in %.0f s: %r",
                                len(self._pending), self.retry_s, exc)
                    continue
            return

    def _close_quietly(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            try:
                p.close(timeout=1)
            except Exception as exc:  # closing a broken producer must not hide the first error
                log.debug("closing the actions producer: %r", exc)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for alert_id, action, by, ts, tries in self._pending:
                log.error("operator action %s on alert %s by %s at %s was never sent to %s "
                          "(%d attempts); its alert_events row holds it", action, alert_id,
                          by, ts, self.topic, tries + 1)
            self._close_quietly()
