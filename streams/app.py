"""The Faust application: one agent over the readings topics, batched with ``noack_take``.

Per batch the agent hands the raw messages to :class:`streams.processor.Processor` (validation,
windows, the model stack, ticks) and sends what it returns to the derived topics.

**Why ``noack_take`` and manual acks.** faust-streaming's ``take()`` acks a batch in a
``finally`` block, so a batch interrupted by an exception or a shutdown is acked (and its
offsets committed) although it was never fully processed. Here a batch is acked only after its
outputs *and then* the state that includes it were delivered to Kafka (the checkpoint awaits
their delivery futures), so a committed offset always has its outputs and its state in Kafka
(at-least-once).

**State.** Per gateway: the indicator windows and the models' per-sensor state; in the worker
that runs the city tick (:mod:`streams.city`, partition 0 of the tick-state topic): the alert
state machine, the tick clock, the last reported health and the whole city's tick inputs (key
``__city__``). Both are
snapshots in the compacted topic ``<group>-state-changelog`` (key = gateway id), which this
module writes and reads itself: no Faust table. Writing a snapshot per batch would cost more
than the models, so the worker *checkpoints* every ``CITYBRAIN_STATE_SNAPSHOT_S`` seconds: it
writes the snapshots of the gateways changed since the last checkpoint, waits for their
delivery and only then acks the events processed since. Offsets therefore never run ahead of
the state: after a crash or a rebalance the new owner of a partition reads the latest snapshot
of every key of the changelog partition with the same number (``restore_snapshots``, a plain
group-less aiokafka consumer, from the beginning to the end offsets taken after the
assignment) before it takes the partition's first event; every gateway snapshot read is put
into memory before the next batch (``restore_read_gateways``); Kafka redelivers everything
after the last commit, which is at or before
the checkpoint. Readings redelivered into restored state are recognised by position and
``(sensor, seq)`` and not counted again; the store de-duplicates the rows by key.

**Why not a Faust table.** faust-streaming's table recovery (the ``Recovery`` service that
replays changelogs after every rebalance) stalled now and then for good after a rebalance
("No event received for active tp ...-state-changelog since recovery start"; 1 run in 5 of the
two-worker test), and with it the worker's streams were never resumed. The same family of hangs
is reported upstream (faust-streaming issues 21, 74, 176, 651). Without tables Faust's recovery
only resumes the streams; the state is read here, with a deadline: a read that fails for
``RESTORE_TIMEOUT_S`` stops the worker instead of leaving it stalled.

A gateway's snapshot goes to the changelog partition numbered like the readings partition its
frames arrived on, whatever partitioner the producers use (config/partitioning.py: the
simulator puts every gateway of a kind on one partition by default), so the owner of a readings
partition finds the state of its gateways in the changelog partition of the same number.

``stream_wait_empty`` is off: with it, a rebalance would wait for every un-acked event, i.e. for
the next checkpoint. Un-acked events of a revoked partition are simply processed again by the
next owner.

**Every offset, in order.** Faust's consumer can lose fetched records at a rebalance, and
aiokafka's seek to the committed offsets skips partitions nothing was committed for. After each
rebalance every readings partition is therefore placed explicitly (``start_positions``), the
agent takes a partition's events only without holes (``in_order``), and a timer re-seeks holes
that stay open (``heal``). docs/streams.md tells how these defects were found.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust

from config.city import load_city
from config.partitioning import FETCH_PARTITION_BYTES, default_partition
from config.settings import Settings
from streams.city import TICK_PARTITION, CityTicker, encode_tick_state
from streams.metrics import Metrics
from streams.processor import Message, Processor
from streams.topics import READINGS

log = logging.getLogger("citybrain.worker")

CITY_KEY = b"__city__"
GAP_GIVE_UP_S = 30.0  # see in_order()
CHANGELOG_SEGMENT_BYTES = 32 * 1024 * 1024
#: the checkpoint interval is at least this many times the last checkpoint's build time
CHECKPOINT_TIME_FACTOR = 20.0
RESTORE_TIMEOUT_S = 60.0  # see restore_snapshots(); below Faust's broker_request_timeout


def city_chunk_key(i: int) -> bytes:
    """Changelog key of chunk ``i`` of the city state's sensor inputs (see CityTicker.snapshot)."""
    return CITY_KEY + b"/" + str(i).encode()


def is_city_key(key: bytes) -> bool:
    return key == CITY_KEY or key.startswith(CITY_KEY + b"/")


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


def build_processor(settings: Settings, *, publish_ticks: bool = False) -> Processor:
    """The worker's processor, with the model stack unless ``CITYBRAIN_WORKER_MODELS=false``;
    ``publish_ticks``: hand the city tick to its owner (:mod:`streams.city`)."""
    city = load_city(settings.city_file)
    models = None
    if settings.worker_models:
        from models.params import load_params
        from models.sensors import SensorTable
        from models.stack import CityModels

        models = CityModels(
            SensorTable.from_city(city),
            load_params(),
            seed=settings.worker_seed,
            multivariate=settings.worker_multivariate,
        )
    return Processor(
        city,
        window_s=settings.window_s,
        lateness_s=settings.allowed_lateness_s,
        max_frame_bytes=settings.max_frame_bytes,
        models=models,
        tick_s=settings.tick_s,
        anomaly_score=settings.anomaly_score,
        publish_ticks=publish_ticks and models is not None,
    )


def create_app(settings: Settings, *, metrics: Metrics | None = None) -> faust.App:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    metrics = metrics or Metrics("worker")
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
        producer_max_request_size=8_000_000,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_s / 4),
        stream_wait_empty=False,
        consumer_max_fetch_size=FETCH_PARTITION_BYTES,
    )
    processor = build_processor(settings, publish_ticks=True)
    # The city tick (risk, alerts, health, city indicators) runs in the one worker that owns
    # partition 0 of the tick-state topic (streams/city.py); ``city["ticker"]`` is that
    # worker's state, replaced by a fresh one whenever the ownership goes away.
    tick_name = settings.topic("tickstate")
    readings_parts = [f"{settings.topic(t)}:{p}" for t in READINGS
                      for p in range(settings.kafka_partitions)]

    def new_ticker() -> CityTicker | None:
        if processor.models is None:
            return None
        return CityTicker(build_processor(settings), expected=readings_parts,
                          wait_s=settings.city_wait_s)

    city: dict[str, Any] = {"ticker": new_ticker(), "active": False, "generation": 0}
    # The state's changelog: a compacted topic written and read by this module, not a Faust
    # table (see the module docstring: Faust's table recovery stalled after rebalances).
    changelog_name = f"{settings.group_id}-state-changelog"  # the name Faust's table had
    changelog = app.topic(
        changelog_name,
        partitions=settings.kafka_partitions,
        replicas=settings.kafka_replication,
        compacting=True,
        internal=True,  # created (compacted) by maybe_declare, never subscribed
        # Compaction only cleans closed segments (default: 1 GB or 7 days), and every new owner
        # reads its partitions from the beginning: small, time-bounded segments keep that read
        # near the size of the latest snapshots (see restore_snapshots's deadline).
        config={"segment.bytes": str(CHANGELOG_SEGMENT_BYTES), "segment.ms": "600000"},
        key_serializer="raw",
        value_serializer="raw",
    )
    #: the latest snapshot per key of the changelog partitions read at the last assignment
    snapshots: dict[bytes, bytes] = {}
    #: the changelog partition each key of ``snapshots`` was read from
    snapshot_partition: dict[bytes, int] = {}

    def restore_hook(gateway: str) -> bytes | None:
        blob = snapshots.pop(gateway.encode(), None)
        if blob:
            log.info("restoring state of gateway %s (%d bytes): %s", gateway, len(blob),
                     _describe(blob))
        return blob

    processor.restore_hook = restore_hook
    readings_names = [settings.topic(t) for t in READINGS]
    readings_topics = set(readings_names)
    # one agent over the readings and the tick-state topic (same partition count, so Faust
    # assigns tick partition 0 with the readings partitions 0): one batch loop, one lock, one
    # checkpoint for both
    readings = app.topic(*readings_names, tick_name, value_serializer="raw")
    placed_topics = readings_topics | {tick_name}
    outputs = {
        name: app.topic(settings.topic(name), value_serializer="raw")
        for name in ("indicators", "anomalies", "risk", "alerts", "deadletter", "tickstate")
    }
    lock = asyncio.Lock()
    rebalanced = asyncio.Event()  # cleared from a revocation until the next assignment
    rebalanced.set()
    pending: list[Any] = []  # events processed since the last checkpoint (not acked yet)
    sent: list[Any] = []  # delivery futures of the outputs sent since the last checkpoint
    ctx: dict[str, Any] = {
        "stream": None, "last_checkpoint": time.monotonic(), "checkpoint_s": 0.0,
        "owned": set(),  # (topic, partition) assigned to this worker
        "generation": 0,  # assignments seen (start_positions drops a restore of an older one)
    }
    offsets: dict[tuple[str, int], int] = {}
    last_seen: dict[tuple[str, int], int] = {}  # per partition, the last offset processed
    sought: dict[tuple[str, int], float] = {}  # when in_order() last sought the partition back
    gap_since: dict[tuple[tuple[str, int], int | None], float] = {}
    #: readings partitions newly owned since the last assignment whose start offset is not
    #: known yet (see start_positions), with the time they were assigned
    unstarted: dict[tuple[str, int], float] = {}

    def changelog_partition(key: bytes) -> int:
        """The changelog partition of ``key``: a gateway's snapshot goes to the partition
        numbered like the readings partition its frames arrived on (``Processor.partition_of``;
        the producers' partitioner decides that, config/partitioning.py); a key read from the
        changelog stays where it was read (``snapshot_partition``); anything else (the city
        tick's records, a gateway not seen since its restore) by Kafka's default partitioner
        (murmur2, as aiokafka's and kafka-python's) over the partition count."""
        p = processor.partition_of.get(key.decode(errors="replace"))
        if p is None:
            p = snapshot_partition.get(key)
        if p is None:
            p = default_partition(key, settings.kafka_partitions)
        return p

    async def put_state(key: bytes, value: bytes, partition_of: bytes | None = None) -> Any:
        """Send one snapshot to the changelog, returning its delivery future (awaited before any
        event is acked).

        A Faust table's ``__setitem__`` queued the message in Faust's ``ProducerBuffer`` and
        dropped the future, and the ``Producer.flush()`` Faust awaits before committing offsets
        does not drain that buffer: offsets could be committed while the state that includes
        them was still in memory (a SIGKILLed worker's successor restored an older state than
        its committed offsets). Sending through the topic and keeping the future closes that.

        The partition is computed here (``changelog_partition``): Faust's eager partitioning
        asks aiokafka's metadata synchronously and crashed the worker with ``TypeError:
        'NoneType' object is not iterable`` when its first checkpoint came before the producer
        had loaded the changelog's metadata; an explicit partition waits for the metadata.
        ``force=True``: never attach the message to the current event (Faust would send it only
        when that event is acked, and the checkpoint acks only after delivery).
        """
        return await changelog.send(key=key, value=value,
                                    partition=changelog_partition(partition_of or key),
                                    force=True)

    async def checkpoint() -> None:
        """Wait until Kafka holds every output sent so far, then write the changed gateways'
        state and wait until Kafka holds it, then ack the events that state includes.

        The order matters: a state says "these windows are closed, these offsets are in", so
        the restarted worker neither re-emits those windows nor re-reads those messages. If the
        state were delivered before the outputs it claims (they go to different partitions
        and are awaited together otherwise), a SIGKILL in between would lose those indicators
        for good (seen: 12 windows of 2 gateways missing after a SIGKILL).
        """
        t0 = time.perf_counter()
        outs, sent[:] = list(sent), []
        # raises if a send failed: the worker crashes without acking (the events come again)
        await asyncio.gather(*outs)
        t_build = time.perf_counter()
        dirty = sorted(processor.dirty)
        kinds_done: set[str] = set()
        futs = []
        for gw in dirty:
            kind = processor.city.gateway_index[gw].kind
            futs.append(await put_state(
                gw.encode(), processor.snapshot_gateway(gw, shared=kind not in kinds_done)))
            kinds_done.add(kind)
        ticker = city["ticker"]
        if city["active"] and ticker is not None and ticker.dirty:
            # the main record, then its chunks (all in the partition of __city__)
            main, *chunks = ticker.snapshot()
            futs.append(await put_state(CITY_KEY, main))
            for i, chunk in enumerate(chunks):
                futs.append(await put_state(city_chunk_key(i), chunk, CITY_KEY))
            ticker.dirty = False
        processor.dirty.clear()
        ctx["checkpoint_s"] = time.perf_counter() - t_build  # building the snapshots (CPU)
        events, pending[:] = list(pending), []
        await asyncio.gather(*futs)
        stream = ctx["stream"]
        for e in events:
            await stream.ack(e)
        ctx["last_checkpoint"] = time.monotonic()
        if dirty:
            metrics.checkpoints.labels("worker").inc()
            log.debug("checkpoint: %d gateways, %d events, %.3fs",
                      len(dirty), len(events), time.perf_counter() - t0)

    def checkpoint_due() -> bool:
        """Every ``state_snapshot_s``, but never more often than 20x the time the last
        checkpoint took to build (snapshots at most ~5 % of the worker's time): during a
        full-speed replay every gateway changes between two checkpoints, and on a loaded machine
        a fixed 5 s interval spent most of the worker's CPU on snapshots (bench pipeline: 74.6
        of 100 s in ``checkpoint``); with 10x, checkpoints were still a fifth of the worker's
        profile in a 1 M-reading replay (a checkpoint of the 267 gateways: ~0.25 CPU-s, and the
        interval uses its wall time, longer on a loaded machine). A
        longer interval costs only reprocessing after a crash (positions skip what the state
        holds) and the memory of the events held until their ack, never results."""
        interval = max(settings.state_snapshot_s, CHECKPOINT_TIME_FACTOR * float(ctx["checkpoint_s"]))
        return time.monotonic() - float(ctx["last_checkpoint"]) >= interval

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the result oddly
    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """A rebalance starts: checkpoint everything processed so far (state delivered, events
        acked), so the changelog holds exactly this worker's in-memory state. Events fetched
        before the rebalance that are still processed afterwards (they wait in ``noack_take``'s
        buffer, which Faust does not clear) then simply continue that state in offset order."""
        rebalanced.clear()  # the agent waits for the new assignment before its next batch
        async with lock:
            n = len(pending)
            ticker = city["ticker"]
            if ctx["stream"] is not None and (
                    pending or processor.dirty or (ticker is not None and ticker.dirty)):
                await checkpoint()
        log.info("partitions revoked: %s; checkpointed %d events",
                 sorted(f"{tp.topic.rsplit('.', 1)[-1]}:{tp.partition}"
                        for tp in (args[0] if args else kwargs.get("revoked", ()))), n)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Keep in memory only the gateways of partitions this worker owned before the
        rebalance and still owns. The others are forgotten (and their un-acked events dropped,
        never acked): a partition that moved away is the new owner's, and one that is new here
        (or came back after another worker had it) must be restored from the changelog, which
        its last owner may have moved on (``start_positions`` reads it before the partition's
        first event is taken), and its gateways are put into memory before the next batch."""
        assigned = args[0] if args else kwargs.get("assigned", ())
        now = {(tp.topic, tp.partition) for tp in assigned}
        install_start_positions()
        async with lock:
            keep = {f"{t}:{p}" for t, p in now & ctx["owned"]}
            stale = {gw for gw, pos in processor.positions.items() if not pos.keys() <= keep}
            processor.forget(stale)
            for tp_key in [k for k in last_seen if k not in now]:
                del last_seen[tp_key]
                sought.pop(tp_key, None)
            for key in list(gap_since):
                if key[0] not in now:
                    del gap_since[key]
            t_now = time.monotonic()
            for tp_key in list(unstarted):
                if tp_key not in now:
                    del unstarted[tp_key]
            for tp_key in now - ctx["owned"]:
                if tp_key[0] in placed_topics:
                    last_seen.pop(tp_key, None)
                    unstarted.setdefault(tp_key, t_now)
            kept = [e for e in pending if (e.message.topic, e.message.partition) in now]
            dropped = len(pending) - len(kept)
            pending[:] = kept
            ctx["owned"] = now
            ctx["generation"] += 1  # a restore still running for the old assignment is void
            numbers = {p for t, p in now if t in readings_topics}
            owner = (tick_name, TICK_PARTITION) in now
            for blob_key in [k for k in snapshots if snapshot_partition.get(k) not in numbers
                             and not (is_city_key(k) and owner)]:
                del snapshots[blob_key]  # read again if the partition comes back
            if not owner and city["active"]:
                # the city tick moved to another worker (its state was checkpointed at the
                # revocation): start afresh, to restore it if it comes back
                city["ticker"] = new_ticker()
                city["active"] = False
                metrics.city_owner.labels("worker").set(0)
        rebalanced.set()
        log.info("partitions assigned: %s; forgot %d gateways, dropped %d un-acked events",
                 sorted(f"{t.rsplit('.', 1)[-1]}:{p}" for t, p in now), len(stale), dropped)

    async def seek(tp: Any, offset: int) -> None:
        """Seek a partition, in the consumer's own thread.

        Faust runs aiokafka in a thread of its own, and ``Consumer.seek`` calls aiokafka's
        ``seek`` from the caller's thread: that deletes the partition's buffered records while
        the consumer thread may be draining them (seen: ``KeyError`` in aiokafka's
        ``fetched_records``, the worker crashed). So the seek is queued to that thread, and
        Faust's read offset is then reset as ``Consumer.seek`` does, so the records fetched
        again are not dropped as already read. A partition revoked meanwhile (the consumer
        thread changes the assignment before the revocation handler runs) is left alone: its
        events are dropped anyway.
        """
        consumer: Any = app.consumer
        try:
            thread = consumer._thread
            await thread.call_thread(thread._ensure_consumer().seek, tp, offset)
            consumer._read_offset[tp] = offset if offset else None
        except Exception as exc:  # aiokafka: IllegalStateError (not assigned)
            log.warning("could not seek %s[%d] to %d: %r", tp.topic, tp.partition, offset, exc)

    def install_start_positions() -> None:
        """Make Faust's "seek to the committed offsets" also place partitions that have no
        committed offset yet (see :func:`start_positions`). Installed on the consumer instance
        at the first assignment, before Faust's first seek (at the end of the rebalance)."""
        consumer: Any = app.consumer  # the driver's consumer (ConsumerT lacks the seek API)
        if getattr(consumer, "_citybrain_start_positions", False):
            return
        seek_to_committed = consumer.seek_to_committed

        async def seek_to_committed_or_beginning() -> Any:
            committed = await seek_to_committed()
            await start_positions(consumer, committed)
            return committed

        consumer.seek_to_committed = seek_to_committed_or_beginning
        consumer._citybrain_start_positions = True  # type: ignore[attr-defined]

    restore_lock = asyncio.Lock()

    async def restore_snapshots(partitions: set[int], with_city: bool = False) -> bool:
        """Read the latest snapshot of every key in the given changelog partitions into
        ``snapshots`` (and, ``with_city``, the ``__city__`` record, from wherever it lives).
        Retries for ``RESTORE_TIMEOUT_S``, then stops the worker (a worker must not go on cold
        while its state exists). Returns False if a rebalance made the read void."""
        generation = ctx["generation"]
        wanted = set(partitions)
        city_p = changelog_partition(CITY_KEY)
        if with_city:
            wanted.add(city_p)
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        t0 = time.perf_counter()
        while True:
            try:
                if settings.worker_restore_delay_s:  # fault injection (tests only)
                    log.warning("restore of changelog partitions %s delayed %.1f s (test fault)",
                                sorted(wanted), settings.worker_restore_delay_s)
                    await asyncio.sleep(settings.worker_restore_delay_s)
                await changelog.maybe_declare()
                got = await read_changelog(settings, changelog_name, wanted, deadline)
                break
            except Exception as exc:
                if ctx["generation"] != generation:
                    return False
                if time.monotonic() > deadline:
                    log.error("could not read the state changelog for %.0f s; stopping",
                              RESTORE_TIMEOUT_S)
                    await app.crash(exc)
                    raise
                log.warning("reading the state changelog failed (%r); retrying", exc)
                await asyncio.sleep(1.0)
        if ctx["generation"] != generation:
            return False
        for blob_key in [k for k in snapshots
                         if snapshot_partition.get(k) in partitions and not is_city_key(k)]:
            del snapshots[blob_key]
        n = 0
        if with_city:
            for k in [k for k in snapshots if is_city_key(k)]:
                del snapshots[k]
        for p, records in got.items():
            for key, value in records.items():
                if is_city_key(key):
                    if with_city and p == city_p:
                        snapshots[key] = value
                        snapshot_partition[key] = p
                elif p in partitions:
                    snapshots[key] = value
                    snapshot_partition[key] = p
                    n += 1
        log.info("read %d snapshots (%d bytes) of changelog partitions %s in %.2fs",
                 n, sum(len(v) for v in snapshots.values()), sorted(wanted),
                 time.perf_counter() - t0)
        return True

    async def start_positions(consumer: Any, committed: dict[Any, int | None]) -> None:
        """Place every readings partition where this worker needs its next event, after Faust
        sought them to their committed offsets (at the end of every rebalance).

        Faust drops records it has already fetched when a rebalance starts (``getmany`` stops
        at an inactive flow, a new generation or a paused partition) and relies on seeking to
        the committed offsets afterwards to fetch them again. aiokafka's ``seek_to_committed``
        only seeks partitions whose committed offset is > 0: a partition nobody has committed
        yet (the first seconds of a stream, exactly when the second worker joins) kept its
        fetch position *after* the dropped records, and they never reached the agent (seen:
        offset 0 of a partition, a gateway's first frame, missing from its windows: five early
        windows wrong). So:

        - a partition new to this worker starts at its committed offset, or at its beginning
          when nothing is committed (``consumer_auto_offset_reset`` is earliest); events of it
          that arrive before this is known are dropped unacked (``in_order``), and the seek
          here fetches them again;
        - a partition this worker kept continues right after the last offset it processed
          (records fetched before the rebalance and dropped by Faust come again; anything at
          or below that offset is skipped by position).
        ``in_order`` then enforces that every partition's events arrive without holes.

        Before a new partition is placed, the state of its gateways is read from the changelog
        (``restore_snapshots``): until it is placed, its events are dropped unacked, so no
        event of it is processed before its state is in memory.
        """
        async with restore_lock:  # heal() may call this again while a restore runs
            await _start_positions(consumer, committed)

    async def _start_positions(consumer: Any, committed: dict[Any, int | None]) -> None:
        assigned = {(tp.topic, tp.partition): off for tp, off in committed.items()
                    if tp.topic in placed_topics}
        new = {p for (t, p) in assigned if (t, p) in unstarted and t in readings_topics}
        with_city = (tick_name, TICK_PARTITION) in unstarted and (
            tick_name, TICK_PARTITION) in assigned
        if new or with_city:
            generation = ctx["generation"]
            if (not await restore_snapshots(new, with_city)
                    or ctx["generation"] != generation):
                log.info("restore of partitions %s abandoned: another rebalance", sorted(new))
                return  # the next assignment places (and restores) them
        unset = [faust.types.TP(t, p) for (t, p), off in assigned.items()
                 if (t, p) in unstarted and (not off or off <= 0)]
        earliest = await consumer.earliest_offsets(*unset) if unset else {}
        placed = []
        for (t, p), off in assigned.items():
            tp = faust.types.TP(t, p)
            if (t, p) in unstarted:
                begin = int(off) if off and off > 0 else int(earliest.get(tp) or 0)
                last_seen[(t, p)] = begin - 1
                del unstarted[(t, p)]
                placed.append(f"{t.rsplit('.', 1)[-1]}:{p}@{begin}")
            elif (t, p) in last_seen:
                begin = last_seen[(t, p)] + 1
            else:
                continue
            await seek(tp, begin)
        if placed:
            log.info("new partitions start at %s", ", ".join(sorted(placed)))

    async def heal() -> None:
        """Retry what ``in_order`` and ``start_positions`` wait for, when no event would: seek
        a partition whose hole is still open back again (a seek can lose a race with Faust's
        fetch loop, which then drops the re-fetched records as already read), and place
        partitions still unstarted 10 s after their assignment (Faust's seek did not come)."""
        if not rebalanced.is_set() or ctx["stream"] is None:
            return
        now = time.monotonic()
        for (tp, last), since in list(gap_since.items()):
            if last is None or last_seen.get(tp) != last or now - sought.get(tp, -1e9) < 1.0:
                continue
            log.warning("offset %d of %s[%d] still missing after %.0fs; seeking back again",
                        last + 1, tp[0], tp[1], now - since)
            sought[tp] = now
            await seek(faust.types.TP(*tp), last + 1)
        if any(now - t0 > 10.0 for t0 in unstarted.values()):
            log.warning("partitions %s not placed 10 s after their assignment; seeking now",
                        sorted(unstarted))
            await app.consumer.perform_seek()

    @contextlib.asynccontextmanager
    async def gate() -> AsyncIterator[None]:
        """The lock, taken only outside a rebalance: a batch queued on the lock behind the
        revocation handler must not run before the new assignment."""
        while True:
            await rebalanced.wait()
            await lock.acquire()
            if rebalanced.is_set():
                break
            lock.release()
        try:
            yield
        finally:
            lock.release()

    async def in_order(events: list[Any]) -> list[Any]:
        """Drop events that skip offsets of a partition, and seek back to the missing ones.

        Offsets of a readings partition have no holes (no compaction, no transactions), yet
        Faust's consumer sometimes hands the agent offset n+2 after n (seen in the SIGKILL test:
        "offsets 73..73 skipped"); a message that never reaches the agent is missing from the
        state, and its acked neighbours let the commit pass it. So an event beyond the next
        expected offset is dropped (never acked) and the partition is sought back to the
        missing offset, again after a second while stale events keep coming. A hole that stays
        for GAP_GIVE_UP_S (a transactional producer's control records) is accepted, logged as
        an error.
        """
        ok = []
        now = time.monotonic()
        early = 0
        for e in events:
            m = e.message
            tp = (m.topic, m.partition)
            if tp in unstarted:  # where it starts is not known yet: fetched again later
                early += 1
                continue
            last = last_seen.get(tp)
            if last is not None and m.offset > last + 1:
                since = gap_since.setdefault((tp, last), now)
                if now - since < GAP_GIVE_UP_S:
                    if now - sought.get(tp, -1e9) >= 1.0:
                        log.warning("offsets %d..%d of %s[%d] skipped by the consumer; "
                                    "seeking back", last + 1, m.offset - 1, m.topic, m.partition)
                        sought[tp] = now
                        await seek(m.tp, last + 1)
                    continue
                log.error("offsets %d..%d of %s[%d] did not come in %.0fs; going on without",
                          last + 1, m.offset - 1, m.topic, m.partition, GAP_GIVE_UP_S)
            ok.append(e)
            if last is None or m.offset > last:
                gap_since.pop((tp, last), None)
                last_seen[tp] = m.offset
        if early:
            log.info("dropped %d events of partitions not placed yet", early)
        return ok

    async def handle(events: list[Any]) -> None:
        """One batch: restore what was read, process, send the outputs, checkpoint when due."""
        t0 = time.perf_counter()
        # Events fetched before a rebalance wait in noack_take's buffer (Faust does not
        # clear it): those of partitions that moved to another worker are dropped; those
        # of partitions still here continue the checkpointed state in offset order (the
        # copies Faust fetches again from the committed offset are then skipped).
        assigned = app.consumer.assignment()
        fresh = [e for e in events if e.message.tp in assigned]
        if len(fresh) < len(events):
            log.info("dropped %d events of partitions no longer assigned",
                     len(events) - len(fresh))
        events = await in_order(fresh)
        ticks = [e for e in events if e.message.topic == tick_name]
        if ticks:
            events = [e for e in events if e.message.topic != tick_name]
        msgs = [
            Message(
                e.message.topic, e.message.partition, e.message.offset,
                e.message.key, e.message.value,
            )
            for e in events
        ]
        restore_read_gateways()
        tracing = log.isEnabledFor(logging.DEBUG)
        if tracing:
            before = {gw: w.closed_until for gw, w in processor.windows.items()}
            skipped0 = processor.skipped
        out = processor.process(msgs)
        if tracing:
            _trace(events, processor, before, skipped0)
        await send(out)
        if out.tick_state is not None and out.tick_boundary is not None:
            parts = sorted(f"{t}:{p}" for t, p in ctx["owned"] if t in readings_topics)
            values = encode_tick_state(out.tick_boundary, parts, out.tick_state)
            for value in values:  # in order, to one partition: the parts come last
                sent.append(await outputs["tickstate"].send(
                    key=b"tick", value=value, partition=TICK_PARTITION, force=True))
            metrics.messages_out.labels("worker", "tickstate").inc(len(values))
        pending.extend(events)
        _observe(metrics, events, out, time.perf_counter() - t0, offsets)
        if ticks:
            metrics.messages_in.labels("worker", tick_name).inc(len(ticks))
            await city_tick(ticks)
            pending.extend(ticks)
        if checkpoint_due():
            await checkpoint()

    def restore_read_gateways() -> None:
        """Put every gateway snapshot read from the changelog into memory before the next batch,
        not at the gateway's first frame. A kind's model state is kind-wide: a closing spatial
        window compares every sensor of the kind with its neighbours, and the forest learns
        from all of them, so a gateway restored only at its first frame would be missing (as
        a sensor without history) from the windows its kind closed before that frame. Seen
        when gateways were restored at their first frame: after a takeover 155 and 550 extra
        anomaly rows against one process's 26,400 in 2 of 3 runs of
        tests/streams/test_scale_out.py; restored here, 3 runs of 3 exact."""
        for key in [k for k in snapshots if not is_city_key(k)]:
            gw = key.decode(errors="replace")
            if gw in processor.city.gateway_index and gw not in processor.windows:
                processor.load_gateway(gw)  # restore_hook pops the snapshot

    async def send(out: Any) -> None:
        """Send a processor's (or the city ticker's) outputs; the delivery futures are awaited
        before the next checkpoint acks anything."""
        for name, items in out.by_topic():
            topic = outputs[name]
            for key, value in items:
                sent.append(await topic.send(key=key, value=value))
            if items:
                metrics.messages_out.labels("worker", name).inc(len(items))

    def activate_city() -> CityTicker:
        """The first tick-state event of a new owner: restore the city state the changelog
        read found (``start_positions`` read it before the partition was placed)."""
        ticker = city["ticker"]
        assert ticker is not None
        if not city["active"]:
            blob = snapshots.pop(CITY_KEY, None)
            chunks = [snapshots.pop(k) for k in [k for k in snapshots if is_city_key(k)]]
            if blob:
                ticker.restore(blob, chunks)
            city["active"] = True
            city["generation"] += 1
            metrics.city_owner.labels("worker").set(1)
            log.info("this worker now runs the city tick (%s; %d sensors, last tick %s, "
                     "position %d)", f"restored {len(blob)} bytes" if blob else "no saved state",
                     ticker.sensors, ticker.last_tick, ticker.position)
        return ticker

    async def city_tick(events: list[Any]) -> None:
        """Merge tick-state messages into the city state; send what its ticks produce."""
        ticker = city["ticker"] if processor.models is not None else None
        if ticker is None:
            return
        ticker = activate_city()
        for e in events:
            m = e.message
            if m.partition != TICK_PARTITION or m.value is None:
                continue
            try:
                out = ticker.apply(m.offset, m.value)
            except Exception as exc:  # an undecodable message (another version)
                log.error("tick state at %s[%d]@%d not applied: %r", m.topic, m.partition,
                          m.offset, exc)
                ticker.position = max(ticker.position, m.offset)
                continue
            await send(out)
            _observe_city(metrics, ticker, out)

    @app.agent(readings, name="readings")
    async def process(stream: faust.StreamT) -> None:
        ctx["stream"] = stream
        async for events in stream.noack_take(  # type: ignore[attr-defined]
            settings.worker_batch, within=settings.worker_batch_timeout_s
        ):
            # Between a revocation and the next assignment nobody knows who owns what: a batch
            # processed then could checkpoint state of a partition another worker already
            # continues. Wait, then keep only the events of partitions still assigned here.
            async with gate():
                try:
                    await handle(events)
                except Exception as exc:
                    # The processor's state may already include this batch (windows closed)
                    # while its outputs were not sent: restarting only the agent, as Faust's
                    # supervisor would, would checkpoint that state and lose those outputs.
                    # Stop the worker instead; a new one restores the last checkpoint.
                    log.exception("batch failed; stopping the worker")
                    await app.crash(exc)
                    raise

    @app.timer(interval=max(0.5, settings.state_snapshot_s / 2))
    async def idle_checkpoint() -> None:
        # a quiet stream still gets its last events acked
        if ctx["stream"] is None or not pending or not rebalanced.is_set():
            return
        if not checkpoint_due():
            return
        async with lock:
            await checkpoint()

    @app.timer(interval=1.0)
    async def heal_gaps() -> None:
        await heal()

    @app.timer(interval=1.0)
    async def city_poll() -> None:
        # a readings partition that stopped reporting is waited for only so long
        ticker = city["ticker"]
        if not city["active"] or ticker is None or not rebalanced.is_set():
            return
        async with lock:
            if city["active"] and city["ticker"] is ticker:
                out = ticker.poll()
                await send(out)
                _observe_city(metrics, ticker, out)

    @app.timer(interval=5.0)
    async def lag() -> None:
        consumer = app.consumer
        for (topic, partition), offset in list(offsets.items()):
            try:
                hw = consumer.highwater(faust.types.TP(topic, partition))
            except Exception:  # partition revoked or not fetched yet
                continue
            if hw is not None:
                metrics.lag.labels("worker", topic, str(partition)).set(max(0, hw - offset - 1))

    @app.task
    async def serve_metrics() -> None:
        from streams.redact import install

        install(settings)  # Faust has set up logging by now
        metrics.serve(settings.metrics_port, settings.metrics_host)

    # Operator acknowledge/resolve from the dashboard reach this worker's alerts (every worker
    # reads every action; offsets kept in the alert snapshot): see streams/actions.py.
    if processor.models is not None:
        from streams.actions import ActionFeed

        def alerts() -> Any:
            return city["ticker"].models.alerts

        feed = ActionFeed(settings, alerts,
                          ready=lambda: city["generation"] if city["active"] else None,
                          dead=lambda k, v: outputs["deadletter"].send(key=k, value=v))
        app.task(feed.run)
        app.citybrain_actions = feed  # type: ignore[attr-defined]

    app.citybrain_processor = processor  # type: ignore[attr-defined]
    app.citybrain_city = city  # type: ignore[attr-defined]
    app.citybrain_metrics = metrics  # type: ignore[attr-defined]
    return app


async def read_changelog(settings: Settings, topic: str, partitions: set[int],
                         deadline: float) -> dict[int, dict[bytes, bytes]]:
    """The latest value of every key of the given partitions of a compacted topic, read from
    the beginning to the end offsets taken at the start, with a plain (group-less) aiokafka
    consumer. Raises ``TimeoutError`` past ``deadline`` (``time.monotonic()``)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **settings.kafka_common(),
        ssl_context=settings.ssl_context(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{settings.group_id}-restore",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,  # a snapshot can be several MB
        request_timeout_ms=30000,
    )
    await consumer.start()
    try:
        while not await _has_partitions(consumer, topic, partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions {sorted(partitions)}")
            await asyncio.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
        todo = {tp for tp in tps if end[tp] > 0}
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: {sorted(tp.partition for tp in todo)} "
                                   "not read to the end in time")
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batch.items():
                values = out[tp.partition]
                for r in records:
                    if r.key is None:
                        continue
                    if r.value is None:  # a tombstone
                        values.pop(r.key, None)
                    else:
                        values[r.key] = r.value
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
        return out
    finally:
        await consumer.stop()


async def _has_partitions(consumer: Any, topic: str, partitions: set[int]) -> bool:
    """Whether the broker's metadata lists the topic with these partitions (a group-less
    consumer's own metadata knows only assigned topics, so ``partitions_for_topic`` would say
    None; ``topics()`` makes the same request but keeps only the names)."""
    cluster = await consumer._client.fetch_all_metadata()
    return partitions <= (cluster.partitions_for_topic(topic) or set())


def _trace(events: list[Any], processor: Processor, before: dict[str, Any], skipped0: int) -> None:
    """Debug log of a batch: offsets per partition, events skipped by position, windows closed
    per gateway (how the rebalance defects of issue 5 were found)."""
    rng: dict[str, list[int]] = {}
    for e in events:
        m = e.message
        r = rng.setdefault(f"{m.topic.rsplit('.', 1)[-1]}:{m.partition}", [m.offset, m.offset])
        r[0], r[1] = min(r[0], m.offset), max(r[1], m.offset)
    closed = {gw: (before.get(gw), w.closed_until) for gw, w in processor.windows.items()
              if before.get(gw) != w.closed_until}
    log.debug("batch %s skipped=%d closed=%s", sorted(rng.items()),
             processor.skipped - skipped0, sorted(closed.items()))


def _describe(blob: bytes) -> str:
    """Where a gateway snapshot stands (for the log): input positions and closed windows."""
    from streams.codecs import decode_snapshot

    try:
        body = decode_snapshot(blob)
        return f"pos={body.get('pos')} closed_until={body['windows'].get('closed_until')}"
    except Exception as exc:  # a log line must never break the worker
        return f"undecodable ({exc!r})"


def _observe(
    metrics: Metrics, events: list[Any], out: Any, seconds: float,
    offsets: dict[tuple[str, int], int],
) -> None:
    now = time.time()
    by_topic: dict[str, int] = {}
    for e in events:
        m = e.message
        by_topic[m.topic] = by_topic.get(m.topic, 0) + 1
        offsets[(m.topic, m.partition)] = m.offset
        if m.timestamp:
            metrics.latency.labels("worker").observe(max(0.0, now - m.timestamp))
    for topic, n in by_topic.items():
        metrics.messages_in.labels("worker", topic).inc(n)
    metrics.readings_in.labels("worker").inc(out.readings)
    metrics.batch_messages.labels("worker").observe(len(events))
    metrics.batch_seconds.labels("worker").observe(seconds)
    for kind, n in out.rows.items():
        metrics.rows_out.labels("worker", kind).inc(n)
    if out.indicator_rows:
        metrics.rows_out.labels("worker", "indicators").inc(out.indicator_rows)
    for reason, n in out.dead_reasons.items():
        metrics.deadletters.labels("worker", reason).inc(n)


def _observe_city(metrics: Metrics, ticker: CityTicker, out: Any) -> None:
    metrics.city_sensors.labels("worker").set(ticker.sensors)
    for kind, n in out.rows.items():
        metrics.rows_out.labels("worker", kind).inc(n)
    if out.indicator_rows:
        metrics.rows_out.labels("worker", "indicators").inc(out.indicator_rows)
    if out.risk:
        metrics.city_ticks.labels("worker").inc()


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (Faust handles both and stops cleanly)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
