"""The engine of ``citybrain backfill``: a recording into the warehouse, serial or in parallel.

Both paths feed the recording's frames, in order and in the same *model batches* (about
``MODEL_BATCH_READINGS`` readings, cut at tick boundaries), to the stream processor the workers
run (:func:`streams.app.build_processor`), and store what the sink would store: the valid
frames' readings (:func:`streams.sink.frames_table`) and the derived outputs (indicators,
anomalies, sensor health, district risk, alert events). Inserts are columnar (numpy) and run in
a background thread (:class:`Inserter`), so ClickHouse works while Python decodes and scores.

**Parallel path** (``workers`` ≥ 2, models on). The per-kind models (detectors, sensor health,
windows) of different sensor kinds share no state, and a gateway holds sensors of one kind, so
each worker process owns a group of kinds: it decodes its gateways' frames, stores their
readings and runs a full :class:`streams.processor.Processor` over them, with the city-wide
tick switched off. The city-wide part (district risk, alerts, sensor-health reports, city
indicators) is cross-kind; the coordinator runs it with its own processor after each batch, on
a copy of exactly the state a tick reads (:meth:`models.stack.CityModels.tick_state`: per kind
the health clocks (``max_ts``, ``flag_ts``, ``flag_t0``), the latest window means and the air
stations' window history, and per sensor the risk inputs); the event-time watermark is the
workers' maximum. A tick's only side effect on per-kind state, the dropout marks, needs no
message back (:meth:`~models.stack.CityModels.apply_tick_state` combines them). The stream
workers hand their city tick to one owner the same way (docs/streams.md). The workers thus run up to
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
from itertools import repeat
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
#: string columns as numpy byte strings for a ClickHouse server (see :class:`BatchLoader`);
#: False sends Python ``str`` objects (the tests compare both)
WIRE_BYTES = True

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
        #: per (table, columns, dtype kinds): a domain's kinds fill different metric columns of
        #: its table; byte-string (``S``) and ``str`` columns are held apart, so that a block of
        #: byte strings never becomes an object array
        self._held: dict[tuple[str, tuple[str, ...], str], TableRows] = defaultdict(TableRows)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="backfill-insert", daemon=True)

    def put(self, rows: Rows) -> None:
        if self._error is not None:
            raise self._error
        if rows:
            if not self._thread.is_alive() and self._thread.ident is None:
                self._thread.start()
            self._q.put(rows)

    def _insert(self, key: tuple[str, tuple[str, ...], str]) -> None:
        held = self._held[key]
        if not held.rows:
            return
        ((table, cols),) = held.take()
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
                    key = (table, tuple(cols), "".join(c.dtype.kind for c in cols.values()))
                    held = self._held[key]
                    held.add(table, cols)
                    if held.rows >= self.batch_rows:
                        self._insert(key)
            for key in list(self._held):
                self._insert(key)
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
    from streams.sink import frames_table

    out = Loaded()
    raw = TableRows()
    by_domain: dict[str, list[Any]] = defaultdict(list)
    msgs = []
    for domain, gateway, n, value in frames:
        try:  # decoded and validated once, for the raw rows and the processor
            frame = decode(value, max_bytes=settings.max_frame_bytes)
            idx = validator(frame)
        except Exception as exc:  # FrameError: counted like the sink does
            out.dead[getattr(exc, "reason", "invalid")] += 1
            continue
        by_domain[domain].append(frame)
        out.readings += n
        if processor is not None:
            msgs.append(Message(topic_of(domain), 0, offset, gateway.encode(), value,
                                decoded=(frame, idx)))
        offset += 1
    for domain_frames in by_domain.values():  # one wide-table block per domain, as the sink
        raw.add(*frames_table(domain_frames))
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


# -- columnar loading ----------------------------------------------------------------------------


class _KindParts:
    """A batch's readings of one sensor kind, gathered frame by frame as Python lists."""

    __slots__ = ("frames", "readings", "seq", "sid", "ts", "vals")

    def __init__(self, n_metrics: int) -> None:
        self.sid: list[Any] = []
        self.ts: list[Any] = []
        self.seq: list[Any] = []
        self.vals: list[list[Any]] = [[] for _ in range(n_metrics)]
        self.frames: list[tuple[int, int, int]] = []  # (batch frame number, gateway, readings)
        self.readings = 0  # as the recording counts them

    def add(self, no: int, gw: int, sids: list, ts: list, seq: list, vals: list[list],
            counted: int) -> None:
        self.sid += sids
        self.ts += ts
        self.seq += seq
        for dst, src in zip(self.vals, vals, strict=True):
            dst += src
        self.frames.append((no, gw, len(sids)))
        self.readings += counted


class _Buckets:
    """The open one-step buckets of one sensor kind, for every gateway of that kind at once."""

    __slots__ = ("counts", "holders", "keys", "seen", "sums")

    def __init__(self) -> None:
        #: bucket start -> sums [kind sensors, metrics], counts [kind sensors], the keys counted
        #: (a list of arrays) and which gateways hold the bucket open (bool per city gateway)
        self.sums: dict[int, np.ndarray] = {}
        self.counts: dict[int, np.ndarray] = {}
        self.keys: dict[int, list[np.ndarray]] = {}
        self.holders: dict[int, np.ndarray] = {}
        #: every key of the open buckets, sorted and unique: the windows' ``_seen`` set for the
        #: kind's gateways (keys hold the city-wide sensor index, so kinds never share one); a
        #: numpy array, merged and searched in C, instead of a million Python ints per batch
        self.seen = np.empty(0, dtype=np.int64)

    def is_seen(self, keys: np.ndarray) -> np.ndarray:
        seen = self.seen
        if not len(seen):
            return np.zeros(len(keys), dtype=bool)
        pos = np.searchsorted(seen, keys)
        return seen[np.minimum(pos, len(seen) - 1)] == keys

    def add_seen(self, keys: np.ndarray) -> None:
        """``keys``: unique and none of them seen."""
        merged = np.concatenate([self.seen, keys])
        merged.sort(kind="stable")  # two sorted runs: a linear merge
        self.seen = merged

    def drop_seen(self, keys: np.ndarray) -> None:
        """``keys``: unique and all seen."""
        if len(keys):
            self.seen = np.delete(self.seen, np.searchsorted(self.seen, keys))


class BatchLoader:
    """:func:`load_frames` for whole batches at once: the same rows, dead-letter counts and
    model calls, with numpy over all the batch's readings instead of per frame.

    Per batch it decodes every frame with one ``orjson.loads`` and gathers the readings per
    sensor kind into flat columns; a frame that is not plainly valid (wrong shape, booleans,
    unknown sensor, non-finite or negative values…) goes through :func:`models.frame.decode`
    and the validator, exactly as in the workers, so it is dead-lettered with the same reason.
    The processor's per-gateway windows (:class:`streams.windows.GatewayWindows`) are
    replayed for all gateways of a kind at once: the same late readings (before the gateway's
    closed range), the same de-duplication by (sensor, seq) against the open buckets, the same
    bucket sums (``np.add.at`` in reading order) and the same window means, summed bucket by
    bucket in the order the gateway opened them (chronological unless reordered deliveries
    opened an older bucket later: those gateways are summed one by one in their own order).
    The processor's windows stay unused: a backfill never snapshots them. Then the models per
    kind (:meth:`models.stack.CityModels.update`), the anomaly rows and the tick of the
    processor itself. ``tests/store/test_backfill.py`` compares both paths table by table.

    ``wire_bytes``: the string columns the loader builds (sensor and gateway ids, indicator
    entity and names) are numpy byte strings (``S``, UTF-8) instead of Python ``str`` objects.
    clickhouse-driver writes bytes into a ``String`` column as they are, and a fixed-width
    array needs no per-value NULL check or encoding: the inserts cost half the CPU, for the
    same stored bytes (``tests/store/test_backfill.py::test_wire_bytes_stores_the_same``). For
    the ClickHouse server only (chDB's Arrow path would see binary, not string, columns).
    """

    def __init__(self, settings: Settings, city: Any, processor: Processor | None, *,
                 wire_bytes: bool = False) -> None:
        from config.domains import KIND_DOMAIN, KINDS
        from streams.processor import CityValidator

        self.settings = settings
        self.processor = processor
        self.validator = processor.validator if processor is not None else CityValidator(city)
        gws = list(city.gateways)
        self.gw_num = {g.id: i for i, g in enumerate(gws)}
        self.gw_names = np.array([g.id for g in gws], dtype=object)
        self.gw_kind = [g.kind for g in gws]
        self.gw_domain = [g.domain for g in gws]
        self.gw_metrics = [frozenset(KINDS[g.domain][g.kind]) for g in gws]
        self.kinds = sorted({g.kind for g in gws})
        self.kind_metrics = {k: KINDS[KIND_DOMAIN[k]][k] for k in self.kinds}
        self.kind_domain = {k: KIND_DOMAIN[k] for k in self.kinds}
        sids: list[str] = []
        gw_of: list[int] = []
        krow: list[int] = []
        n_kind: Counter[str] = Counter()
        for i, g in enumerate(gws):
            for s in g.sensors:
                sids.append(s.id)
                gw_of.append(i)
                krow.append(n_kind[g.kind])
                n_kind[g.kind] += 1
        self.sid_index = {s: i for i, s in enumerate(sids)}
        if len(self.sid_index) != len(sids):
            raise ValueError("a sensor id is used by two gateways: backfill needs unique ids")
        self.sensor_ids = np.array(sids, dtype=object)
        # numpy drops trailing NULs of byte strings: such an id (never valid) keeps str columns
        self.wire_bytes = wire_bytes and not any(x.endswith("\x00") for x in (*sids, *self.gw_names))
        self._sid_col = self._col(sids)
        self._gw_col = self._col(self.gw_names.tolist())
        self._sensor_col = self._col(["sensor"])
        self.gw_of = np.array(gw_of, dtype=np.int64)
        self.krow = np.array(krow, dtype=np.int64)
        self.n_kind = dict(n_kind)
        self.kind_cidx = {k: np.flatnonzero(np.array([self.gw_kind[g] == k for g in gw_of]))
                          for k in self.kinds}
        self.table_idx: np.ndarray | None = None
        if processor is not None and processor.models is not None:
            self.table_idx = np.concatenate(
                [processor._gidx[g.id] for g in gws]).astype(np.int64)
        self.window_s = int(processor.window_s) if processor is not None else 0
        self.lateness_s = int(processor.lateness_s) if processor is not None else 0
        ng = len(gws)
        self.closed = np.full(ng, np.nan)  # GatewayWindows.closed_until (NaN: None)
        self.max_ts = np.full(ng, -np.inf)
        self.last_b = np.full(ng, -np.inf)  # newest bucket a gateway opened
        self.order: dict[int, list[int]] = {}  # opening order of gateways that reordered
        self.buckets = {k: _Buckets() for k in self.kinds}

    def _col(self, values: list[str]) -> np.ndarray:
        """A string column as the loader emits it (see ``wire_bytes``)."""
        if self.wire_bytes:
            return np.array([v.encode() for v in values], dtype=np.bytes_)
        return np.array(values, dtype=object)

    # -- decode ----------------------------------------------------------------------------------
    def _slow(self, value: bytes) -> tuple[Any, Any]:
        """The workers' decode and validation: (frame, local indices) or FrameError."""
        from models.frame import decode

        frame = decode(value, max_bytes=self.settings.max_frame_bytes)
        return frame, self.validator(frame)

    def gather(self, frames: Frames, dead: Counter[str]) -> dict[str, _KindParts]:
        import orjson

        from models.frame import WIRE_VERSION, FrameError

        loads = orjson.loads
        max_bytes = self.settings.max_frame_bytes
        gw_num, gw_domain, gw_metrics, gw_kind = (self.gw_num, self.gw_domain, self.gw_metrics,
                                                  self.gw_kind)
        km = self.kind_metrics
        parts: dict[str, _KindParts] = {}
        for no, (_, _, counted, value) in enumerate(frames):
            gi = None
            try:
                if len(value) <= max_bytes and b"true" not in value and b"false" not in value:
                    d = loads(value)
                    if type(d) is dict and d.get("v") == WIRE_VERSION:
                        gw = d.get("gateway")
                        gi = gw_num.get(gw) if type(gw) is str else None
            except orjson.JSONDecodeError:
                gi = None
            if gi is not None:
                mets = d.get("metrics")
                sids, ts, seq = d.get("sensor_id"), d.get("ts"), d.get("seq")
                n = len(sids) if type(sids) is list else 0
                if (d.get("domain") == gw_domain[gi] and type(mets) is dict
                        and mets.keys() == gw_metrics[gi] and n
                        and type(ts) is list and len(ts) == n
                        and type(seq) is list and len(seq) == n):
                    vals = [mets[m] for m in km[gw_kind[gi]]]
                    if all(type(v) is list and len(v) == n for v in vals):
                        kind = gw_kind[gi]
                        p = parts.get(kind)
                        if p is None:
                            p = parts[kind] = _KindParts(len(km[kind]))
                        p.add(no, gi, sids, ts, seq, vals, counted)
                        continue
            try:  # not plainly valid: exactly what the workers do with it
                frame, _ = self._slow(value)
            except FrameError as exc:
                dead[exc.reason] += 1
                continue
            gi = gw_num[frame.gateway]
            kind = gw_kind[gi]
            p = parts.get(kind)
            if p is None:
                p = parts[kind] = _KindParts(len(km[kind]))
            p.add(no, gi, frame.sensor_id.tolist(), frame.ts.tolist(), frame.seq.tolist(),
                  [frame.metrics[m].tolist() for m in km[kind]], counted)
        return parts

    def columns(self, kind: str, p: _KindParts, frames: Frames,
                dead: Counter[str]) -> dict[str, np.ndarray] | None:
        """The kind's readings as arrays; frames the arrays show invalid are decoded again
        the workers' way (dead-lettered with their reason, or kept if that accepts them)."""
        from models.frame import FrameError

        n_fr = np.array([f[2] for f in p.frames], dtype=np.int64)
        fgw = np.array([f[1] for f in p.frames], dtype=np.int64)
        fno = np.repeat(np.arange(len(p.frames)), n_fr)
        get = self.sid_index.get
        try:  # map() over the bound dict.get: no Python frame per reading
            cidx = np.fromiter(map(get, p.sid, repeat(-1)), np.int64, len(p.sid))
        except TypeError:  # an unhashable sensor id: frame by frame
            cidx = np.array([get(s, -1) if isinstance(s, str) else -1 for s in p.sid],
                            dtype=np.int64)
        ts = np.asarray(p.ts)
        seq = np.asarray(p.seq)
        vals = np.asarray(p.vals)
        if (ts.dtype.kind not in "iuf" or seq.dtype.kind not in "iuf"
                or vals.dtype.kind not in "iuf" or ts.ndim != 1 or seq.ndim != 1
                or vals.ndim != 2):
            return self._refetch(kind, p, frames, dead)
        ts = ts.astype(np.float64)
        seq = seq.astype(np.float64)
        vals = np.ascontiguousarray(vals.T, dtype=np.float64)
        bad = ((cidx < 0) | (self.gw_of[np.maximum(cidx, 0)] != fgw[fno])
               | ~np.isfinite(ts) | ~np.isfinite(seq) | ~np.isfinite(vals).all(axis=1)
               | (seq < 0) | (seq != np.floor(seq)) | (ts < 0) | (ts > 4_102_444_800))
        if bad.any():
            drop = np.zeros(len(p.frames), dtype=bool)
            for i in np.unique(fno[bad]).tolist():
                try:
                    self._slow(frames[p.frames[i][0]][3])
                except FrameError as exc:
                    dead[exc.reason] += 1
                    drop[i] = True
                    p.readings -= frames[p.frames[i][0]][2]
            keep = ~drop[fno]
            cidx, ts, seq, vals, fno = cidx[keep], ts[keep], seq[keep], vals[keep], fno[keep]
        if not len(ts):
            return None
        return {"cidx": cidx, "ts": ts, "seq": seq.astype(np.int64), "vals": vals, "fno": fno}

    def _refetch(self, kind: str, p: _KindParts, frames: Frames,
                 dead: Counter[str]) -> dict[str, np.ndarray] | None:
        """Every frame of ``p`` through the workers' decode (a value that is no number)."""
        from models.frame import FrameError

        q = _KindParts(len(self.kind_metrics[kind]))
        for no, _, _ in p.frames:
            try:
                frame, _ = self._slow(frames[no][3])
            except FrameError as exc:
                dead[exc.reason] += 1
                continue
            q.add(no, self.gw_num[frame.gateway], frame.sensor_id.tolist(), frame.ts.tolist(),
                  frame.seq.tolist(), [frame.metrics[m].tolist()
                                       for m in self.kind_metrics[kind]], frames[no][2])
        p.readings = q.readings
        if not q.frames:
            return None
        out = self.columns(kind, q, frames, dead)
        p.readings = q.readings
        return out

    # -- load ------------------------------------------------------------------------------------
    def load(self, frames: Frames) -> Loaded:
        out = Loaded()
        parts = self.gather(frames, out.dead)
        per_kind: dict[str, tuple[np.ndarray, ...]] = {}
        any_valid = False
        for kind in sorted(parts):
            p = parts[kind]
            cols = self.columns(kind, p, frames, out.dead)
            out.readings += p.readings
            if cols is None:
                continue
            out.rows.append(self._raw_rows(kind, cols))
            any_valid = True
            if self.processor is not None:
                ok = self._windows_add(kind, cols, out)
                if self.table_idx is not None and ok.any():
                    per_kind[kind] = (self.table_idx[cols["cidx"][ok]], cols["ts"][ok],
                                      cols["vals"][ok], cols["seq"][ok])
        for _, c in out.rows:
            days = np.unique(c["ts"].astype("datetime64[D]"))
            out.days.update(d.item() for d in days)
        processor = self.processor
        if processor is not None:
            for kind in self.kinds:
                ind = self._emit(kind)
                if ind is not None:
                    out.rows.append(ind)
        if processor is not None and processor.models is not None:
            from streams.processor import Outputs

            assert self.table_idx is not None
            res = Outputs()
            for kind in sorted(per_kind):
                processor._anomalies(res, processor.models.update(kind, *per_kind[kind]))
            if any_valid:
                processor._maybe_tick(res)
            out.rows.extend(derived_rows(res))
        return out

    def _raw_rows(self, kind: str, cols: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
        """The readings of one kind for their domain's wide table. The domain's other kinds'
        metrics are left out (NULL, as the sink's NaN becomes), which keeps the columns numeric
        (clickhouse-driver sends a column with NaN as Python objects)."""
        cidx = cols["cidx"]
        out: dict[str, np.ndarray] = {
            "ts": np.floor(cols["ts"]).astype("datetime64[s]"),
            "sensor_id": self._sid_col[cidx],
            "gateway": self._gw_col[self.gw_of[cidx]],
            "seq": cols["seq"].astype(np.uint64),
        }
        for j, m in enumerate(self.kind_metrics[kind]):
            out[m] = np.ascontiguousarray(cols["vals"][:, j])
        return f"readings_{self.kind_domain[kind]}", out

    # -- windows ---------------------------------------------------------------------------------
    def _windows_add(self, kind: str, cols: dict[str, np.ndarray], out: Loaded) -> np.ndarray:
        """GatewayWindows.add for every frame of the kind; returns the not-late mask."""
        from streams.processor import STEP_S

        step = STEP_S
        cidx, ts, seq, vals, fno = cols["cidx"], cols["ts"], cols["seq"], cols["vals"], cols["fno"]
        gw = self.gw_of[cidx]
        closed = self.closed
        if np.isnan(closed[gw]).any():  # first frames of gateways: the closed range starts
            starts = np.flatnonzero(np.r_[True, fno[1:] != fno[:-1]])
            fmin = np.minimum.reduceat(ts, starts)
            fgw = gw[starts]
            ug, first = np.unique(fgw, return_index=True)
            new = np.isnan(closed[ug])
            closed[ug[new]] = np.floor((fmin[first[new]] - self.lateness_s) / step) * step
        late = ts < closed[gw]
        if late.any():
            out.dead["late"] += int(np.unique(fno[late]).size)
        ok = ~late
        keys = (cidx[ok] << 40) | seq[ok]  # GatewayWindows' key with the city-wide index
        fresh = np.zeros(len(keys), dtype=bool)
        fresh[np.unique(keys, return_index=True)[1]] = True
        bk = self.buckets[kind]
        fresh &= ~bk.is_seen(keys)
        okidx = np.flatnonzero(ok)[fresh]
        if not len(okidx):
            return ok
        keys = keys[fresh]
        bk.add_seen(np.sort(keys))
        g_f, ts_f = gw[okidx], ts[okidx]
        np.maximum.at(self.max_ts, g_f, ts_f)
        starts_f = (np.floor(ts_f / step) * step).astype(np.int64)
        # buckets opened by this batch, in opening order: does any gateway open an older one
        # after a newer one (its sums then follow its own order, see _emit)?
        pair = starts_f * len(self.gw_names) + g_f
        _, first = np.unique(pair, return_index=True)
        first.sort()
        fb, fg = starts_f[first], g_f[first]
        is_new = np.ones(len(fb), dtype=bool)
        for b in np.unique(fb).tolist():
            h = bk.holders.get(b)
            if h is not None:
                sel = fb == b
                is_new[sel] = ~h[fg[sel]]
        if is_new.any():
            ob, og = fb[is_new].astype(np.float64), fg[is_new]
            srt = np.argsort(og, kind="stable")
            ob_s, og_s = ob[srt], og[srt]
            prev = np.r_[-np.inf, ob_s[:-1]]
            prev[np.r_[True, og_s[1:] != og_s[:-1]]] = -np.inf
            prev = np.maximum(prev, self.last_b[og_s])
            back = set(og_s[ob_s < prev].tolist())
            for g in back:
                if g not in self.order:
                    self.order[g] = sorted(b for b, h in bk.holders.items() if h[g])
            if self.order:
                track = np.isin(og, list(self.order))
                for b, g in zip(ob[track].tolist(), og[track].tolist(), strict=True):
                    self.order[g].append(int(b))
            np.maximum.at(self.last_b, og, ob)
        n_k, m = self.n_kind[kind], len(self.kind_metrics[kind])
        rows, v = self.krow[cidx[okidx]], vals[okidx]
        for b in np.unique(starts_f).tolist():
            sel = starts_f == b
            if b not in bk.sums:
                bk.sums[b] = np.zeros((n_k, m))
                bk.counts[b] = np.zeros(n_k, dtype=np.int64)
                bk.keys[b] = []
                bk.holders[b] = np.zeros(len(self.gw_names), dtype=bool)
            np.add.at(bk.sums[b], rows[sel], v[sel])
            np.add.at(bk.counts[b], rows[sel], 1)
            bk.keys[b].append(keys[sel])
            bk.holders[b][g_f[sel]] = True
        return ok

    def _emit(self, kind: str) -> tuple[str, dict[str, np.ndarray]] | None:
        """GatewayWindows.emit for every gateway of the kind: the indicator rows."""
        from streams.processor import STEP_S

        step, window = STEP_S, self.window_s
        bk = self.buckets[kind]
        if not bk.sums:
            return None
        held = np.logical_or.reduce(list(bk.holders.values()))
        last_end = np.floor((self.max_ts - self.lateness_s) / step) * step
        emit = held & ~np.isnan(self.closed) & (last_end > self.closed)
        if not emit.any():
            return None
        closed = self.closed.copy()
        gws = np.flatnonzero(emit)
        lo, hi = float(closed[gws].min()), float(last_end[gws].max())
        open_b = sorted(bk.sums)
        ends = sorted({b + j * step for b in open_b for j in range(1, window // step + 1)
                       if lo < b + j * step <= hi})
        cidx_k = self.kind_cidx[kind]  # kind row -> city sensor
        g_row = self.gw_of[cidx_k]
        n_k, m = self.n_kind[kind], len(self.kind_metrics[kind])
        reordered = np.zeros(len(self.gw_names), dtype=bool)
        for g in self.order:
            reordered[g] = True
        t_out: list[np.ndarray] = []
        r_out: list[np.ndarray] = []
        v_out: list[np.ndarray] = []
        for end in ends:
            total = np.zeros((n_k, m))
            count = np.zeros(n_k, dtype=np.int64)
            for b in open_b:
                if end - window <= b < end:
                    total += bk.sums[b]
                    count += bk.counts[b]
            g_ok = emit & (closed < end) & (end <= last_end) & ~reordered
            has = np.flatnonzero(g_ok[g_row] & (count > 0))
            if len(has):
                t_out.append(np.full(len(has), float(end)))
                r_out.append(has)
                v_out.append(total[has] / count[has, None])
        for g in sorted(self.order):
            if not emit[g]:
                continue
            rows = np.flatnonzero(g_row == g)
            for end in range(int(closed[g]) + step, int(last_end[g]) + 1, step):
                total = np.zeros((len(rows), m))
                count = np.zeros(len(rows), dtype=np.int64)
                for b in self.order[g]:
                    if end - window <= b < end:
                        total += bk.sums[b][rows]
                        count += bk.counts[b][rows]
                has = np.flatnonzero(count)
                if len(has):
                    t_out.append(np.full(len(has), float(end)))
                    r_out.append(rows[has])
                    v_out.append(total[has] / count[has, None])
        # close the windows and drop the buckets no later window needs
        self.closed[gws] = last_end[gws]
        keep_from = last_end - window + step
        for b in open_b:
            drop = bk.holders[b] & emit & (b < keep_from)
            if not drop.any():
                continue
            bk.holders[b] &= ~drop
            keys = np.concatenate(bk.keys[b]) if bk.keys[b] else np.empty(0, np.int64)
            gone = drop[self.gw_of[keys >> 40]]
            bk.drop_seen(keys[gone])
            bk.keys[b] = [keys[~gone]]
            for g in np.flatnonzero(drop).tolist():
                if g in self.order:
                    self.order[g].remove(b)
                    if not self.order[g]:
                        del self.order[g]
            if not bk.holders[b].any():
                del bk.sums[b], bk.counts[b], bk.keys[b], bk.holders[b]
        if not t_out:
            return None
        ts, rows, means = np.concatenate(t_out), np.concatenate(r_out), np.concatenate(v_out)
        names = self._col([f"{x}_mean" for x in self.kind_metrics[kind]])
        k = len(rows)
        return "indicators", {
            "ts": np.floor(np.repeat(ts, m)).astype("datetime64[s]"),
            "entity_type": np.repeat(self._sensor_col, k * m),
            "entity_id": np.repeat(self._sid_col[cidx_k[rows]], m),
            "name": np.tile(names, k),
            "value": means.ravel(),
            "window_s": np.full(k * m, self.window_s, dtype=np.uint32),
        }


# -- serial --------------------------------------------------------------------------------------


def run_serial(
    settings: Settings, rec: Recording, inserter: Inserter, *, models: bool,
    on_batch: Callable[[Batch, Loaded], None], model_batch: int = MODEL_BATCH_READINGS,
) -> None:
    from config.city import load_city
    from streams.app import build_processor

    processor = build_processor(settings) if models else None
    loader = BatchLoader(settings, load_city(settings.city_file), processor,
                         wire_bytes=WIRE_BYTES and settings.store == "clickhouse")
    for batch in model_batches(rec, model_batch):
        loaded = loader.load(batch.frames)
        inserter.put(loaded.rows)
        on_batch(batch, loaded)


# -- parallel ------------------------------------------------------------------------------------


def kind_groups(settings: Settings, n: int, city: Any = None) -> list[list[str]]:
    """Sensor kinds split into ``n`` groups of about equal reading rates (largest first);
    ``city``: the loaded city file (None loads it)."""
    from config.city import load_city

    if city is None:
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
    return m.tick_state(np.concatenate([m.kinds[k].global_index for k in kinds]))


def _set_tick_state(processor: Processor, state: dict[str, Any]) -> None:
    m = processor.models
    assert m is not None
    m.apply_tick_state(state)


def _worker(batches: Connection, results: Connection, settings: Settings, kinds: list[str],
            batch_rows: int, direct: bool, models: bool, parent_ends: list[Connection],
            fresh: Processor | None = None, city: Any = None) -> None:
    """One worker process: its share of each batch in, tick state (and, unless ``direct``,
    rows) out. ``direct``: the worker inserts its rows itself (a ClickHouse server takes
    inserts from many clients; chDB is bound to one process) and reports the row counts at the
    end. Without ``models``: readings only (no processor, no tick state). ``parent_ends``: the
    coordinator's pipe ends this fork inherited, closed at once so that the worker sees EOF
    (and exits) if the coordinator dies. ``fresh``: a processor no batch has touched yet, the
    coordinator's as this fork inherited it (building one costs seconds: the sensors'
    neighbour lists); None builds one. ``city``: the coordinator's loaded city, likewise
    (parsing the city file again costs a few tenths of a second)."""
    for c in parent_ends:
        c.close()
    from config.city import load_city
    from streams.app import build_processor

    store = None
    inserter: Inserter | None = None
    try:
        processor = (fresh if fresh is not None else build_processor(settings)) if models else None
        loader = BatchLoader(settings, city if city is not None else load_city(settings.city_file),
                             processor, wire_bytes=WIRE_BYTES and direct)
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
            frames, _ = msg
            loaded = loader.load(frames)
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
        groups = kind_groups(settings, workers, city)
        owner = {g.id: i for i, grp in enumerate(groups) for g in city.gateways if g.kind in grp}
    else:
        groups = [[f"gateways {i}::{workers}"] for i in range(workers)]
        owner = {g.id: i % workers for i, g in enumerate(city.gateways)}
    coordinator = build_processor(settings) if models else None
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    forked = ctx.get_start_method() == "fork"
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
                              models, [*to_worker, *from_worker, batch_w, result_r],
                              coordinator if forked else None, city if forked else None),
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
