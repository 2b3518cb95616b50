"""Kafka → ClickHouse sink: batched, columnar, at-least-once, de-duplicated by key.

- Consumes the readings topics and the derived topics (``city.indicators``, ``city.anomalies``
  with anomalies and sensor-health changes, ``city.risk``, ``city.alerts``) in its own consumer
  group, and ``city.groundtruth`` (simulator labels) into ``groundtruth``.
- Buffers rows per table and inserts them when ``sink_batch_rows`` rows are buffered or
  ``sink_flush_s`` seconds have passed, as numpy columns.
- Commits offsets only after every buffered row is stored. Tables are ReplacingMergeTree keyed by
  (sensor_id, ts, seq) / (entity, name, ts), so a redelivered message never counts twice.
- While ClickHouse is down it pauses consumption (memory stays bounded by one batch), retries
  with exponential backoff, and resumes when the insert succeeds. It also stops fetching while
  it holds ``sink_max_buffer_rows`` rows, whatever the reason.
- Secrets (SASL password) go to the client, never to the log.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from config.city import load_city
from config.domains import DOMAIN_METRICS
from config.partitioning import FETCH_PARTITION_BYTES
from config.settings import Settings
from models.frame import Frame, FrameError, decode
from store.base import Store, StoreError
from streams.codecs import decode_indicators, decode_table
from streams.metrics import Metrics
from streams.processor import CityValidator
from streams.topics import READINGS

log = logging.getLogger("citybrain.sink")


@dataclass
class SinkStats:
    messages: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    flushes: int = 0
    failures: int = 0
    commit_failures: int = 0
    last_flush_at: float = 0.0
    buffered_rows: int = 0


def concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Column dicts of one table, joined column by column."""
    if len(parts) == 1:
        return parts[0]
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


class TableRows:
    """Columns per table, gathered in parts and joined on :meth:`take` (the sink's buffer and
    the backfill's insert blocks)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
        self.rows = 0

    def add(self, table: str, cols: dict[str, np.ndarray]) -> None:
        self.parts[table].append(cols)
        self.rows += len(next(iter(cols.values())))

    def extend(self, rows: list[tuple[str, dict[str, np.ndarray]]]) -> None:
        for table, cols in rows:
            self.add(table, cols)

    def tables(self) -> dict[str, dict[str, np.ndarray]]:
        return {t: concat(parts) for t, parts in self.parts.items()}

    def clear(self) -> None:
        self.parts.clear()
        self.rows = 0

    def take(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        out = list(self.tables().items())
        self.clear()
        return out


class _Buffer(TableRows):
    """The sink's buffer: derived rows as columns, readings as decoded frames per domain, joined
    into the wide tables' columns once per flush (:func:`frames_table`) instead of a column
    dict per frame (``np.full`` for the gateway and every metric of the domain's other kinds,
    then concatenated again: a quarter of the sink's own CPU with ~180-reading frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.since: float | None = None
        self.produced_at: list[float] = []  # Kafka timestamps (s) of the buffered messages
        self.frames: dict[str, list[Frame]] = defaultdict(list)  # domain -> frames

    def add_at(self, table: str, cols: dict[str, np.ndarray], now: float) -> None:
        self.add(table, cols)
        if self.since is None:
            self.since = now

    def add_frame(self, frame: Frame, now: float) -> None:
        self.frames[frame.domain].append(frame)
        self.rows += len(frame)
        if self.since is None:
            self.since = now

    def tables(self) -> dict[str, dict[str, np.ndarray]]:
        out = super().tables()
        for frames in self.frames.values():
            table, cols = frames_table(frames)
            out[table] = concat([out[table], cols]) if table in out else cols
        return out

    def clear(self) -> None:
        super().clear()
        self.frames.clear()
        self.since = None
        self.produced_at = []


def frames_table(frames: list[Frame]) -> tuple[str, dict[str, np.ndarray]]:
    """Decoded, validated frames of one domain as the columns of its wide table (``ts``,
    ``sensor_id``, ``gateway``, ``seq`` and every metric of the domain; the metrics of the
    domain's other sensor kinds NaN), the frames' rows in order, one numpy call per column.
    Invalid frames must have been left out (the worker dead-letters them, so the sink stores
    exactly the readings the worker accepted, late ones included: raw data is the record)."""
    domain = frames[0].domain
    lens = np.fromiter((len(f) for f in frames), np.int64, len(frames))
    total = int(lens.sum())
    cols: dict[str, np.ndarray] = {
        "ts": np.floor(np.concatenate([f.ts for f in frames])).astype("datetime64[s]"),
        "sensor_id": np.concatenate([f.sensor_id for f in frames]).astype(object, copy=False),
        "gateway": np.repeat(np.array([f.gateway for f in frames], dtype=object), lens),
        "seq": np.concatenate([f.seq for f in frames]).astype(np.uint64),
    }
    for m in DOMAIN_METRICS[domain]:
        have = [f.metrics.get(m) for f in frames]
        full = [v for v in have if v is not None]
        if len(full) == len(have):
            cols[m] = np.concatenate(full).astype(np.float64, copy=False)
            continue
        col = np.full(total, np.nan)  # metrics of the domain's other sensor kinds
        at = 0
        for n, v in zip(lens.tolist(), have, strict=True):
            if v is not None:
                col[at:at + n] = v
            at += n
        cols[m] = col
    return f"readings_{domain}", cols


def indicator_rows(raw: bytes) -> tuple[str, dict[str, np.ndarray]]:
    b = decode_indicators(raw)
    return "indicators", {
        "ts": np.floor(b.ts).astype("datetime64[s]"),
        "entity_type": b.entity_type,
        "entity_id": b.entity_id,
        "name": b.name,
        "value": b.value,
        "window_s": np.full(len(b), b.window_s, dtype=np.uint32),
    }


def label_rows(raw: bytes) -> tuple[str, dict[str, np.ndarray]]:
    """A simulator label (``city.groundtruth``) as a ``groundtruth`` row."""
    import orjson

    try:
        d = orjson.loads(raw)
        sensors = np.empty(1, dtype=object)
        sensors[0] = [str(x) for x in d.get("sensors", [])]
        cols = {
            "id": np.array([str(d["id"])], dtype=object),
            "type": np.array([str(d["type"])], dtype=object),
            "category": np.array([str(d.get("category", ""))], dtype=object),
            "start": np.array([int(float(d["start"]))], dtype="datetime64[s]"),
            "end": np.array([int(float(d["end"]))], dtype="datetime64[s]"),
            "district": np.array([str(d.get("district") or "")], dtype=object),
            "sensors": sensors,
            "detail": np.array([orjson.dumps(d.get("detail") or {}).decode()], dtype=object),
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FrameError("malformed_label", f"bad ground-truth label: {exc}") from None
    return "groundtruth", cols


class Sink:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_backoff_s: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.max_backoff_s = max_backoff_s
        self.stats = SinkStats()
        self.buffer = _Buffer()
        self.metrics = metrics or Metrics("sink")
        self._readings_topics = {settings.topic(t) for t in READINGS}
        self._indicators_topic = settings.topic("indicators")
        self._table_topics = {settings.topic(t) for t in ("anomalies", "risk", "alerts")}
        self._labels_topic = settings.topic("groundtruth")
        self.consumer: KafkaConsumer | None = None
        self._rebalance_started: float | None = None  # revocation seen, assignment not yet
        self.city = load_city(settings.city_file)
        self.validator = CityValidator(self.city)
        #: the most rows held at once (checked by the outage test: memory stays bounded)
        self.max_buffered_rows = 0

    # -- consumer --------------------------------------------------------------------------------
    def _consumer(self) -> KafkaConsumer:
        s = self.settings
        consumer = KafkaConsumer(
            **s.kafka_common(),
            ssl_context=s.ssl_context(),
            group_id=s.sink_group_id,
            client_id="citybrain-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
            max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
            # Tansu (embedded broker) takes ~2 session timeouts to form a group; 6 s keeps the
            # first assignment to a few seconds and is fine for Apache Kafka too.
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        sink = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: object) -> None:
                sink._rebalance_started = sink.clock()
                # flush what we have so the next owner starts after it; if the store is down,
                # drop the buffer: the new owner gets those messages again (at-least-once)
                # Store what we hold so the next owner does not wait for it. No commit here:
                # kafka-python 3 cannot commit from inside its rebalance callback; the next
                # owner re-reads those messages and the tables de-duplicate them.
                if sink.buffer.rows:
                    try:
                        sink._flush(commit=False)
                    except Exception as exc:
                        log.warning("rebalance: could not flush (%s); dropping buffer", exc)
                        sink.buffer.clear()

            def on_partitions_assigned(self, assigned: object) -> None:
                sink._rebalance_started = None
                log.info("sink assigned %s", assigned)

        topics = [
            *sorted(self._readings_topics), self._indicators_topic,
            *sorted(self._table_topics), self._labels_topic,
        ]
        # Fetch the topics' metadata before joining the group. Joining first makes the leader
        # assign nothing and rebalance again once metadata arrives; kafka-python 3.0 sometimes
        # never completes that second rebalance (seen against Apache Kafka 4.1).
        for t in topics:
            consumer.partitions_for_topic(t)
        consumer.subscribe(topics, listener=_Listener())
        return consumer

    # -- loop --------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; flush and commit on the way out.

        ``BENCH_SINK_PROFILE=<file>`` (a diagnostic switch for ``citybrain bench pipeline``)
        runs the loop under cProfile and writes the stats to that file when it stops.
        """
        path = os.environ.get("BENCH_SINK_PROFILE")
        if not path:
            self._run(stop)
            return
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            self._run(stop)
        finally:
            prof.disable()
            prof.dump_stats(path)

    def _run(self, stop: threading.Event) -> None:
        with contextlib.suppress(ValueError, RuntimeError, AttributeError):
            # `kill -USR1 <pid>` prints every thread's stack to stderr: a stuck client shows
            # where without a debugger
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        self.consumer = consumer = self._consumer()
        self._assigned_at = self.clock()
        backoff, retry_at, stalled = 0.5, 0.0, False
        try:
            while not stop.is_set():
                if stalled:
                    # paused: poll() returns no records but keeps the group membership alive
                    consumer.poll(timeout_ms=100)
                    if self.clock() < retry_at:
                        continue
                else:
                    self._ingest(consumer.poll(timeout_ms=200))
                    consumer = self._watchdog(consumer)
                    if not self._due():
                        continue
                try:
                    self._flush()
                except StoreError as exc:
                    self.stats.failures += 1
                    self.metrics.store_failures.labels("sink").inc()
                    if not stalled:
                        consumer.pause(*consumer.assignment())
                        stalled = True
                    log.warning("store insert failed (%s); consumption paused, retry in %.1fs",
                                exc, backoff)
                    retry_at = self.clock() + backoff
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                if stalled:
                    log.info("store is back; resuming consumption")
                    consumer.resume(*consumer.paused())
                    stalled = False
                backoff = 0.5
            if self.buffer.rows:
                try:
                    self._flush()
                except StoreError as exc:
                    log.warning("final flush failed (%s); messages will be redelivered", exc)
        finally:
            consumer.close(autocommit=False)

    def _watchdog(self, consumer: KafkaConsumer) -> KafkaConsumer:
        """Rejoin when the group has left us without partitions for too long.

        kafka-python 3.0 sometimes rejoins its group right after the first assignment and never
        completes that rebalance: the consumer then holds no partitions and consumes nothing.
        After ``sink_rejoin_after_s`` without an assignment the sink stores what it holds and
        starts a fresh consumer. (With more sinks than partitions an idle sink is normal:
        set ``CITYBRAIN_SINK_REJOIN_AFTER_S=0`` to turn this off.)
        """
        limit = self.settings.sink_rejoin_after_s
        now = self.clock()
        if limit <= 0:
            return consumer
        # kafka-python keeps the old assignment (paused, "pending revocation") until a
        # rebalance completes, so a rebalance that never completes looks assigned: measure it
        # from the revocation callback
        started = self._rebalance_started
        stuck = started is not None and now - started >= limit
        if consumer.assignment() and started is None:
            self._assigned_at = now
            return consumer
        if not stuck and now - self._assigned_at < limit:
            return consumer
        log.warning("sink: %s for %.0fs; rejoining the group",
                    "group rebalance not completed" if stuck else "no partitions assigned", limit)
        if self.buffer.rows:
            try:
                self._flush(commit=False)  # the next owner re-reads; tables de-duplicate
            except StoreError:
                return consumer  # the store is down: the main loop's backoff handles it
        consumer.close(autocommit=False)
        self._rebalance_started = None
        self.consumer = consumer = self._consumer()
        self._assigned_at = self.clock()
        return consumer

    def _ingest(self, batch: dict) -> None:
        now = self.clock()
        for tp, records in batch.items():
            if records:
                self.metrics.messages_in.labels("sink", tp.topic).inc(len(records))
            for rec in records:
                self.stats.messages += 1
                try:
                    if rec.value is None:
                        raise FrameError("tombstone", "message without a value")
                    frame: Frame | None = None
                    if tp.topic in self._readings_topics:
                        # the worker's checks; the columns are built per flush
                        frame = decode(rec.value, max_bytes=self.settings.max_frame_bytes)
                        self.validator(frame)
                    elif tp.topic == self._indicators_topic:
                        table, cols = indicator_rows(rec.value)
                    elif tp.topic in self._table_topics:
                        table, cols = decode_table(rec.value)
                    else:
                        table, cols = label_rows(rec.value)
                except FrameError as exc:
                    # the worker dead-letters invalid frames with the reason; the sink only counts
                    self.stats.skipped[exc.reason] += 1
                    continue
                if frame is not None:
                    self.buffer.add_frame(frame, now)
                else:
                    self.buffer.add_at(table, cols, now)
                if rec.timestamp and rec.timestamp > 0:
                    self.buffer.produced_at.append(rec.timestamp / 1000.0)
        self.stats.buffered_rows = self.buffer.rows
        self.max_buffered_rows = max(self.max_buffered_rows, self.buffer.rows)
        self.metrics.buffered_rows.labels("sink").set(self.buffer.rows)

    def _due(self) -> bool:
        b = self.buffer
        if not b.rows:
            return False
        return b.rows >= min(self.settings.sink_batch_rows, self.settings.sink_max_buffer_rows) or (
            b.since is not None and self.clock() - b.since >= self.settings.sink_flush_s
        )

    def _flush(self, *, commit: bool = True) -> None:
        if not self.buffer.rows:
            return
        tables = self.buffer.tables()
        for table, cols in tables.items():
            self.store.insert(table, cols)
        # tables de-duplicate by key, so a partial failure above followed by a retry of the
        # whole buffer stores each row once
        now = time.time()
        for table, cols in tables.items():
            n = len(next(iter(cols.values())))
            self.stats.rows[table] += n
            self.metrics.rows_out.labels("sink", table).inc(n)
        for t in self.buffer.produced_at:
            self.metrics.latency.labels("sink").observe(max(0.0, now - t))
        self.metrics.buffered_rows.labels("sink").set(0)
        self.buffer.clear()
        self.stats.buffered_rows = 0
        self.stats.flushes += 1
        self.stats.last_flush_at = self.clock()
        if commit and self.consumer is not None:
            self._commit()

    def _commit(self) -> None:
        """Commit the consumed positions. The rows are stored already: if the broker cannot take
        the commit (restarting, coordinator moving, rebalance), log it and go on; the next flush
        commits again, and until then a restart re-reads rows the tables de-duplicate."""
        assert self.consumer is not None
        try:
            self.consumer.commit(timeout_ms=10_000)
        except KafkaError as exc:
            self.stats.commit_failures += 1
            log.warning("offset commit failed (%s); rows are stored, will commit again", exc)


def run_sink(settings: Settings, store: Store, stop: threading.Event) -> Sink:
    sink = Sink(settings, store)
    sink.metrics.serve(settings.metrics_port, settings.metrics_host)
    sink.run(stop)
    return sink
