"""The engine of ``citybrain backfill``: a recording into the warehouse, serial or in parallel.

Both paths feed the recording's frames, in order and in the same *model batches* (about
``MODEL_BATCH_READINGS`` readings, cut at tick boundaries), to the stream processor the workers
run (:func:`streams.app.build_processor`), and store what the sink would store: the valid
frames' readings (:func:`streams.sink.frame_rows`) and the derived outputs (indicators,
anomalies, sensor health, district risk, alert events). Inserts are columnar (numpy) and run in
a background thread (:class:`Inserter`), so ClickHouse works while Python decodes and scores.

**Parallel path** (``workers`` ≥ 2, models on). The per-kind models (detectors, sensor health,
windows) of different sensor kinds share no state, and a gateway holds sensors of one kind, so
each worker process owns a group of kinds: it decodes its gateways' frames, stores their
readings and runs a full :class:`streams.processor.Processor` over them, with the city-wide
tick switched off. The city-wide part (district risk, alerts, sensor-health reports, city
indicators) is cross-kind; the coordinator runs it with its own processor after each batch, on
a copy of exactly the state a tick reads: per kind the health flags (``flag_ts``, ``max_ts``),
the loops' latest window means and the air stations' window history, and per sensor the risk
inputs (``score``, ``score_ts``, ``first_ts``); the event-time watermark is the workers'
maximum. A tick's only side effect on per-kind state, the dropout marks in ``flag_ts``, needs
no message back: ``flag_ts`` is a running maximum that only ticks read, so the coordinator
combines its marks with the workers' flags by ``fmax``. The workers thus run up to
``IN_FLIGHT`` batches ahead of the coordinator. Same batches, same per-kind updates in the same
order, same ticks: the stored rows are those of the serial path
(``tests/store/test_backfill_parallel.py`` compares them table by table).

This relies on what :meth:`models.stack.CityModels.tick` reads; if the models change that, the
comparison test fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing as mp
import queue
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from config.settings import Settings
from streams.sink import TableRows

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from sensors_sim.recording import Recording
    from streams.processor import Outputs, Processor

#: readings per call of the processor: about what a worker gets from one Kafka poll round
#: (ticks, hence district risk and alerts, happen at most once per call)
MODEL_BATCH_READINGS = 50_000
#: a tick period that never comes: the workers of the parallel path leave ticks to the
#: coordinator (finite, so that the processor's ``floor(watermark / tick_s)`` stays 0)
NO_TICK_S = 1e300
#: batches handed to the workers ahead of the one the coordinator is ticking
IN_FLIGHT = 3

Rows = list[tuple[str, dict[str, np.ndarray]]]
Frames = list[tuple[str, str, int, bytes]]


class Inserter:
    """Inserts in a background thread: rows are queued per table and sent when a table holds
    ``batch_rows`` rows (and at :meth:`close`). The queue is bounded, so a slow store slows
    the producer instead of filling memory. An insert error is raised by the next call. The
    thread starts with the first rows (the parallel path forks its workers before that)."""

    def __init__(self, store: Any, batch_rows: int, *, max_queued: int = 8) -> None:
        self.store = store
        self.batch_rows = max(1, batch_rows)
        self.rows: Counter[str] = Counter()
        self.insert_s = 0.0
        self._q: queue.Queue[Rows | None] = queue.Queue(maxsize=max_queued)
        self._held: dict[str, TableRows] = defaultdict(TableRows)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="backfill-insert", daemon=True)

    def put(self, rows: Rows) -> None:
        if self._error is not None:
            raise self._error
        if rows:
            if not self._thread.is_alive() and self._thread.ident is None:
                self._thread.start()
            self._q.put(rows)

    def _insert(self, table: str) -> None:
        held = self._held[table]
        if not held.rows:
            return
        ((_, cols),) = held.take()
        t = time.perf_counter()
        self.rows[table] += self.store.insert(table, cols)
        self.insert_s += time.perf_counter() - t

    def _loop(self) -> None:
        try:
            while True:
                rows = self._q.get()
                if rows is None:
                    break
                for table, cols in rows:
                    held = self._held[table]
                    held.add(table, cols)
                    if held.rows >= self.batch_rows:
                        self._insert(table)
            for table in list(self._held):
                self._insert(table)
        except BaseException as exc:  # handed to the producer
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._q.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def close(self) -> None:
        if self._thread.is_alive():
            while self._error is None:
                try:
                    self._q.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        if self._error is not None:
            raise self._error


@dataclass
class Batch:
    frames: Frames
    readings: int  # as the recording counts them (invalid frames included)
    ticks: int  # ticks of the recording read so far


def model_batches(rec: Recording, readings: int = MODEL_BATCH_READINGS) -> Iterator[Batch]:
    """The recording's frames in order, cut after the tick where ``readings`` is reached."""
    frames: Frames = []
    n = 0
    i = 0
    for i, tick in enumerate(rec.ticks(), start=1):
        frames.extend(tick.frames)
        n += sum(f[2] for f in tick.frames)
        if n >= readings:
            yield Batch(frames, n, i)
            frames, n = [], 0
    if frames or i == 0:
        yield Batch(frames, n, i)


@dataclass
class Loaded:
    """What one batch (or one worker's share of it) produced."""

    rows: Rows = field(default_factory=list)
    readings: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    days: set[dt.date] = field(default_factory=set)


def load_frames(
    settings: Settings, validator: Any, processor: Processor | None, frames: Frames,
    topic_of: Callable[[str], str], offset: int,
) -> Loaded:
    """Readings rows of the valid frames and, with a processor, the derived rows of the batch.
    An invalid frame is counted by reason (like the sink skips it and the worker dead-letters
    it) and not handed to the processor (which would only dead-letter it again)."""
    from models.frame import decode
    from streams.processor import Message
    from streams.sink import rows_of_frame

    out = Loaded()
    raw = TableRows()
    msgs = []
    for domain, gateway, n, value in frames:
        try:  # decoded and validated once, for the raw rows and the processor
            frame = decode(value, max_bytes=settings.max_frame_bytes)
            idx = validator(frame)
        except Exception as exc:  # FrameError: counted like the sink does
            out.dead[getattr(exc, "reason", "invalid")] += 1
            continue
        raw.add(*rows_of_frame(frame))
        out.readings += n
        if processor is not None:
            msgs.append(Message(topic_of(domain), 0, offset, gateway.encode(), value,
                                decoded=(frame, idx)))
        offset += 1
    out.rows = raw.take()
    for _, cols in out.rows:
        days = np.unique(cols["ts"].astype("datetime64[D]"))
        out.days.update(d.item() for d in days)
    if processor is not None and msgs:
        res = processor.process(msgs)
        out.rows.extend(derived_rows(res))
        out.dead.update(res.dead_reasons)
    return out


def derived_rows(res: Outputs) -> Rows:
    """The processor's encoded outputs as the sink decodes them into rows."""
    from streams.codecs import decode_table
    from streams.sink import indicator_rows

    rows: Rows = [indicator_rows(value) for _, value in res.indicators]
    rows.extend(decode_table(value) for _, value in (*res.anomalies, *res.risk, *res.alerts))
    return rows


# -- serial --------------------------------------------------------------------------------------


def run_serial(
    settings: Settings, rec: Recording, inserter: Inserter, *, models: bool,
    on_batch: Callable[[Batch, Loaded], None], model_batch: int = MODEL_BATCH_READINGS,
) -> None:
    from config.city import load_city
    from streams.app import build_processor
    from streams.processor import CityValidator

    processor = build_processor(settings) if models else None
    validator = processor.validator if processor is not None else CityValidator(
        load_city(settings.city_file))
    offset = 0
    for batch in model_batches(rec, model_batch):
        loaded = load_frames(settings, validator, processor, batch.frames,
                             lambda d: settings.topic(f"readings.{d}"), offset)
        offset += len(batch.frames)
        inserter.put(loaded.rows)
        on_batch(batch, loaded)


# -- parallel ------------------------------------------------------------------------------------


def kind_groups(settings: Settings, n: int) -> list[list[str]]:
    """Sensor kinds split into ``n`` groups of about equal reading rates (largest first)."""
    from config.city import load_city

    city = load_city(settings.city_file)
    rate: dict[str, float] = defaultdict(float)
    for g in city.gateways:
        for s in g.sensors:
            rate[g.kind] += 1.0 / max(float(s.interval_s), 1e-3)
    groups: list[list[str]] = [[] for _ in range(max(1, min(n, len(rate))))]
    load = [0.0] * len(groups)
    for kind, r in sorted(rate.items(), key=lambda kv: (-kv[1], kv[0])):
        i = load.index(min(load))
        groups[i].append(kind)
        load[i] += r
    return [sorted(g) for g in groups]


def _tick_state(processor: Processor, kinds: list[str]) -> dict[str, Any]:
    """What a city tick reads of ``kinds``' models (see the module docstring)."""
    m = processor.models
    assert m is not None
    idx = np.concatenate([m.kinds[k].global_index for k in kinds])
    state: dict[str, Any] = {
        "idx": idx,
        "watermark": m.watermark,
        "risk": (m.risk.score[idx], m.risk.score_ts[idx], m.risk.first_ts[idx]),
        "kinds": {},
    }
    for k in kinds:
        km = m.kinds[k]
        s: dict[str, Any] = {"flag_ts": km.health.flag_ts, "max_ts": km.health.max_ts}
        if k == "loop":
            s["latest_mean"] = km.latest_mean
        if k == "air":
            s["hist"] = km.spatial.windows.hist
        state["kinds"][k] = s
    return state


def _set_tick_state(processor: Processor, state: dict[str, Any]) -> None:
    m = processor.models
    assert m is not None
    idx = state["idx"]
    m.risk.score[idx], m.risk.score_ts[idx], m.risk.first_ts[idx] = state["risk"]
    m.watermark = max(m.watermark, float(state["watermark"]))
    for k, s in state["kinds"].items():
        km = m.kinds[k]
        # every write to flag_ts is a running max (np.fmax), the tick's dropout marks included,
        # and only a tick reads it: the coordinator's marks and the worker's flags combine
        # exactly by fmax, so the worker never needs to hear of a tick
        km.health.flag_ts = np.fmax(km.health.flag_ts, s["flag_ts"])
        km.health.max_ts = s["max_ts"]
        if "latest_mean" in s:
            km.latest_mean = s["latest_mean"]
        if "hist" in s:
            km.spatial.windows.hist = s["hist"]


def _worker(batches: Connection, results: Connection, settings: Settings, kinds: list[str],
            batch_rows: int, direct: bool, models: bool, parent_ends: list[Connection]) -> None:
    """One worker process: its share of each batch in, tick state (and, unless ``direct``,
    rows) out. ``direct``: the worker inserts its rows itself (a ClickHouse server takes
    inserts from many clients; chDB is bound to one process) and reports the row counts at the
    end. Without ``models``: readings only (no processor, no tick state). ``parent_ends``: the
    coordinator's pipe ends this fork inherited, closed at once so that the worker sees EOF
    (and exits) if the coordinator dies."""
    for c in parent_ends:
        c.close()
    from config.city import load_city
    from streams.app import build_processor
    from streams.processor import CityValidator

    store = None
    inserter: Inserter | None = None
    try:
        processor = build_processor(settings) if models else None
        validator = (processor.validator if processor is not None
                     else CityValidator(load_city(settings.city_file)))
        if processor is not None:
            processor.tick_s = NO_TICK_S
        m = processor.models if processor is not None else None
        mine = [k for k in kinds if k in m.kinds] if m is not None else []
        if direct:
            from store import open_store

            store = open_store(settings, apply=False)
            inserter = Inserter(store, batch_rows)
        while True:
            try:
                msg = batches.recv()
            except EOFError:  # the coordinator is gone
                return
            if msg is None:
                break
            frames, offset = msg
            loaded = load_frames(settings, validator, processor, frames,
                                 lambda d: settings.topic(f"readings.{d}"), offset)
            if inserter is not None:
                inserter.put(loaded.rows)
                loaded.rows = []
            state = _tick_state(processor, mine) if processor is not None else None
            results.send(("ok", loaded, state))
        if inserter is not None:
            inserter.close()
            results.send(("done", dict(inserter.rows), inserter.insert_s))
        else:
            results.send(("done", {}, 0.0))
    except BaseException as exc:  # reported to the coordinator, which raises it
        import traceback

        with contextlib.suppress(OSError):
            results.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                          None))
    finally:
        if store is not None:
            store.close()
        batches.close()
        results.close()


def _receive(conn: Connection, proc: Any, expect: str) -> tuple[Any, Any]:
    try:
        status, a, b = conn.recv()
    except EOFError:
        raise RuntimeError(f"backfill worker {proc.name} died (exit code {proc.exitcode})") from None
    if status == "error":
        raise RuntimeError(f"backfill worker {proc.name} failed: {a}")
    if status != expect:
        raise RuntimeError(f"backfill worker {proc.name}: {status!r}, expected {expect!r}")
    return a, b


def run_parallel(
    settings: Settings, rec: Recording, inserter: Inserter, *, workers: int,
    on_batch: Callable[[Batch, Loaded], None], model_batch: int = MODEL_BATCH_READINGS,
    models: bool = True,
) -> list[list[str]]:
    """Returns the kind groups, one per worker process. Without ``models`` the gateways are
    dealt out in turn (readings only: any split is exact)."""
    from config.city import load_city
    from streams.app import build_processor
    from streams.processor import Outputs

    city = load_city(settings.city_file)
    direct = settings.store == "clickhouse"
    if models:
        groups = kind_groups(settings, workers)
        owner = {g.id: i for i, grp in enumerate(groups) for g in city.gateways if g.kind in grp}
    else:
        groups = [[f"gateways {i}::{workers}"] for i in range(workers)]
        owner = {g.id: i % workers for i, g in enumerate(city.gateways)}
    coordinator = build_processor(settings) if models else None
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    # one simplex pipe each way per worker: a feeder thread writes batches while this thread
    # reads results, so neither side can block the other with a full pipe
    to_worker: list[Connection] = []
    from_worker: list[Connection] = []
    procs = []
    for grp in groups:
        batch_r, batch_w = ctx.Pipe(duplex=False)
        result_r, result_w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker,
                        args=(batch_r, result_w, settings, grp, inserter.batch_rows, direct,
                              models, [*to_worker, *from_worker, batch_w, result_r]),
                        daemon=True, name=f"backfill-{'+'.join(grp)}")
        p.start()
        batch_r.close()
        result_w.close()
        to_worker.append(batch_w)
        from_worker.append(result_r)
        procs.append(p)
    feed: queue.Queue[Any] = queue.Queue()  # bounded by ``sent`` below
    feed_error: list[BaseException] = []

    def feeder() -> None:
        try:
            while True:
                item = feed.get()
                if item is None:
                    for c in to_worker:
                        c.send(None)
                    return
                for c, share in zip(to_worker, item, strict=True):
                    c.send(share)
        except BaseException as exc:  # a worker died: the reader reports it
            feed_error.append(exc)

    feeding = threading.Thread(target=feeder, name="backfill-feed", daemon=True)
    feeding.start()

    def shares(batch: Batch, offset: int) -> list[tuple[Frames, int]]:
        out: list[Frames] = [[] for _ in groups]
        for f in batch.frames:
            out[owner.get(f[1], 0)].append(f)  # unknown gateways: worker 0 rejects them
        return [(share, offset) for share in out]

    sent: deque[Batch] = deque()
    try:
        offset = 0
        batches = model_batches(rec, model_batch)
        exhausted = False
        while True:
            while not exhausted and len(sent) < IN_FLIGHT:  # keep the workers busy
                nxt = next(batches, None)
                if nxt is None:
                    exhausted = True
                    feed.put(None)
                    break
                feed.put(shares(nxt, offset))
                offset += len(nxt.frames)
                sent.append(nxt)
            if not sent:
                break
            current = sent.popleft()
            loaded = Loaded()
            for c, p in zip(from_worker, procs, strict=True):
                part, state = _receive(c, p, "ok")
                if coordinator is not None:
                    _set_tick_state(coordinator, state)
                loaded.rows.extend(part.rows)
                loaded.readings += part.readings
                loaded.dead.update(part.dead)
                loaded.days |= part.days
            if coordinator is not None:
                out = Outputs()
                coordinator._maybe_tick(out)
                loaded.rows.extend(derived_rows(out))
            inserter.put(loaded.rows)
            on_batch(current, loaded)
        for c, p in zip(from_worker, procs, strict=True):
            rows, insert_s = _receive(c, p, "done")
            inserter.rows.update(rows)
            inserter.insert_s += insert_s
        feeding.join(timeout=30)
        if feed_error:
            raise feed_error[0]
        for p in procs:
            p.join(timeout=30)
    finally:
        for c in (*to_worker, *from_worker):
            c.close()
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    return groups
