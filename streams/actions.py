"""Operator actions (acknowledge, resolve) from the dashboard to every worker's alert state.

The dashboard writes each action twice: an ``alert_events`` row in ClickHouse (the immediate,
persisted record the screen shows) and a message on the ``actions`` topic (key the alert id,
value JSON ``{"alert_id", "action": "acknowledged"|"resolved", "by", "ts"}``, ``ts`` in event
time). The alerts live with the one worker that owns the city tick (:mod:`streams.city`), and
that worker must read *every* action: :class:`ActionFeed` is a plain aiokafka consumer without
a group, assigned all partitions of the topic, not a Faust agent (a Faust agent's consumer
group would split the partitions among the workers): subscribed without a ``group_id``,
aiokafka assigns it every partition, also ones added later (they start at their beginning).
It reads only while its worker owns the city tick; when the ownership (and with it the alert
state) changes, it starts over from the positions of the state it now serves.

**Restart safety.** After each applied message the feed stores the next offset of its partition
in ``AlertManager.action_positions``; that mapping is part of the alert snapshot, which the
worker checkpoints with the rest of its city state. So the offsets and the alert state they
describe are one changelog message: a restarted worker restores both and reads the actions
topic from there, i.e. it replays exactly the actions after its snapshot. Applying an action is
idempotent (:meth:`AlertManager.apply_action`: a second acknowledge or resolve changes nothing),
and an action on an alert the restored state has not opened yet is deferred until the
re-processed readings open it. The feed starts only after the worker restored its city state
(``ready``), since that restore replaces the alert state.

**No duplicate events.** The worker sends no ``acknowledged``/``resolved`` alert event for an
operator action: the dashboard's row is the only one. The worker's later events of that alert
carry the new state (``state = 'acknowledged'``); an operator-resolved alert gets no more
events, and a recurrence opens a new alert (new id).

Malformed actions (not JSON, unknown action, missing fields) go to the dead-letter topic with
reason ``bad_action`` and are skipped; nothing crashes the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from config.settings import Settings
from models.alerts import Action, AlertManager, decode_action, encode_action
from streams.codecs import encode_deadletter

__all__ = ["Action", "ActionFeed", "decode_action", "encode_action"]

log = logging.getLogger("citybrain.actions")


DeadLetter = Callable[[bytes | None, bytes], Awaitable[Any]]


class ActionFeed:
    """Reads the actions topic (all partitions, no group) into ``alerts``.

    ``alerts``: the alert state, or a function that returns the current one. ``ready()``
    returns a token while that state is restored and served here (None or False: not, the
    feed waits); a new token means a new state (restored by a new owner): the feed places its
    partitions again from that state's positions. ``dead(key, value)`` sends a dead letter.
    :meth:`run` runs until cancelled.
    """

    def __init__(
        self, settings: Settings, alerts: AlertManager | Callable[[], AlertManager], *,
        ready: Callable[[], Any], dead: DeadLetter | None = None, poll_ms: int = 500,
    ) -> None:
        self.settings = settings
        self._alerts = alerts
        self.ready = ready
        self.dead = dead
        self.topic = settings.topic("actions")
        self.poll_ms = poll_ms
        self.applied = 0  # actions that changed an alert
        self.seen = 0  # messages read (applied, no-ops, deferred and bad ones)
        self.bad = 0

    @property
    def alerts(self) -> AlertManager:
        return self._alerts if isinstance(self._alerts, AlertManager) else self._alerts()

    def apply(self, partition: int, offset: int, key: bytes | None,
              value: bytes | None) -> dict[str, Any] | None:
        """Apply one message at ``offset`` of ``partition`` and advance the stored position.
        Returns the alert event the action caused (None: no change, deferred, or bad)."""
        self.seen += 1
        self.alerts.action_positions[str(partition)] = offset + 1
        try:
            a = decode_action(value)
        except ValueError as exc:
            self.bad += 1
            log.error("bad action at %s[%d]@%d: %s", self.topic, partition, offset, exc)
            self._dead_letter(partition, offset, key, value, str(exc))
            return None
        ev = self.alerts.apply_action(a.alert_id, a.action, a.ts, by=a.by)
        if ev is not None:
            self.applied += 1
            log.info("alert %s %s by %s (operator action %s[%d]@%d)", a.alert_id, a.action,
                     a.by, self.topic, partition, offset)
        else:
            log.info("operator action %s on alert %s by %s changed nothing here (closed, "
                     "already done, or deferred until it opens)", a.action, a.alert_id, a.by)
        return ev

    def _dead_letter(self, partition: int, offset: int, key: bytes | None,
                     value: bytes | None, error: str) -> None:
        if self.dead is None:
            return
        raw = encode_deadletter(raw=value or b"", reason="bad_action", error=error,
                                topic=self.topic, partition=partition, offset=offset,
                                at=time.time())
        task = asyncio.ensure_future(self.dead(key, raw))
        task.add_done_callback(_log_failure)

    def _consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        s = self.settings
        return AIOKafkaConsumer(
            **s.kafka_common(),
            ssl_context=s.ssl_context(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="citybrain-actions",
        )

    def _place(self, consumer: Any, tps: set[Any]) -> None:
        """Seek the newly assigned partitions to their stored positions (the others start at
        their beginning: no group, no committed offsets, ``auto_offset_reset`` earliest)."""
        pos = self.alerts.action_positions
        for tp in tps:
            if str(tp.partition) in pos:
                consumer.seek(tp, pos[str(tp.partition)])
        log.info("reading operator actions from %s: %s", self.topic,
                 ", ".join(f"{tp.partition}@{pos.get(str(tp.partition), 'start')}"
                           for tp in sorted(tps, key=lambda tp: tp.partition)))

    async def _wait_ready(self) -> Any:
        while not (token := self.ready()):
            await asyncio.sleep(0.2)
        return token

    async def run(self) -> None:
        backoff = 1.0
        while True:
            token = await self._wait_ready()
            consumer = self._consumer()
            try:
                await consumer.start()
                # without a group_id, aiokafka assigns every partition of a subscribed topic
                # to this consumer (and again when partitions are added)
                consumer.subscribe([self.topic])
                placed: set[Any] = set()
                backoff = 1.0
                while self.ready() == token:
                    tps = set(consumer.assignment())
                    if tps != placed:
                        self._place(consumer, tps - placed)
                        placed = tps
                    if not tps:
                        await asyncio.sleep(self.poll_ms / 1000)
                        continue
                    batches = await consumer.getmany(timeout_ms=self.poll_ms)
                    if self.ready() != token:  # fetched for a state this worker no longer has
                        break
                    for tp, msgs in sorted(batches.items(), key=lambda kv: kv[0].partition):
                        done = self.alerts.action_positions.get(str(tp.partition), 0)
                        for m in msgs:
                            if m.offset >= done:  # never apply a position twice
                                self.apply(tp.partition, m.offset, m.key, m.value)
                log.info("the alert state changed hands; operator actions are read again "
                         "from its positions when this worker serves one")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone, metadata errors: start over from positions
                log.warning("operator actions consumer failed (%r); retrying in %.0fs",
                            exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                await consumer.stop()


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("could not send a dead letter of the actions topic: %r", task.exception())
