"""The worker's logic, free of Faust: raw messages in, encoded outputs out.

The Faust agent (:mod:`streams.app`) is a thin adapter around :class:`Processor`, which also
runs in tests and benchmarks without a broker. Per batch of messages it

1. decodes and validates each frame against the city (every failure → a dead letter with the
   reason, the original bytes and the source topic/partition/offset);
2. feeds the per-gateway event-time windows (rolling-mean indicators for the windows the
   watermark closed; readings behind a closed window → dead letter ``late``);
3. runs the model stack (:class:`models.stack.CityModels`) once per sensor *kind* over the
   batch's readings, so numpy works on thousands of readings per call: scored anomalies above
   ``anomaly_score`` go to ``city.anomalies``;
4. ticks the models whenever the event-time watermark passes a multiple of ``tick_s``:
   district risk → ``city.risk``, alert lifecycle events → ``city.alerts``, sensor-health
   changes → ``city.anomalies`` (kind ``health``), congestion and AQI → ``city.indicators``.
   With ``publish_ticks`` (the stream workers) it hands the tick's inputs of its sensors to
   the caller instead (``Outputs.tick_state``), and one owner ticks for the whole city
   (:mod:`streams.city`).

State (windows + models) is plain data per gateway (:meth:`Processor.snapshot_gateway`) plus
one city-wide part (alerts, tick clock, last reported health): :mod:`streams.app` keeps both in
a changelog-backed Faust table.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from config.city import City
from config.domains import KIND_DOMAIN, KINDS
from models.frame import Frame, FrameError, decode, encode
from streams.codecs import (
    IndicatorBatch,
    decode_snapshot,
    encode_deadletter,
    encode_indicators,
    encode_sensor_means,
    encode_snapshot,
    encode_table,
)
from streams.windows import GatewayWindows

if TYPE_CHECKING:  # models are imported lazily (scikit-learn is heavy)
    from models.stack import CityModels, KindResult, TickResult

STEP_S = 60
# JSON has no NaN/infinity, so a strict parser calls these "malformed"; they are common enough
# (Python's json module writes NaN) to deserve their own reason
_NON_FINITE = re.compile(rb"(?<![A-Za-z_\"])-?(NaN|Infinity)(?![A-Za-z_\"])|\d[eE]\+?\d{3,}")


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed Kafka message, as much of it as the processor needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    # the frame already decoded and validated (frame, sensor indices) by a caller that needed
    # it anyway (backfill stores the raw rows of the same frames): not decoded twice
    decoded: tuple[Frame, np.ndarray] | None = None


@dataclass
class Outputs:
    """Encoded messages per output topic (logical name → [(key, value)]) and counts."""

    indicators: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    anomalies: list[tuple[bytes, bytes]] = field(default_factory=list)  # anomalies + health
    risk: list[tuple[bytes, bytes]] = field(default_factory=list)
    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)
    readings: int = 0
    indicator_rows: int = 0
    rows: Counter[str] = field(default_factory=Counter)  # derived rows by kind
    dead_reasons: Counter[str] = field(default_factory=Counter)
    max_event_ts: float = float("-inf")
    #: with ``publish_ticks``: the inputs of the city tick at ``tick_boundary`` for the sensors
    #: whose state changed since the last one (:meth:`models.stack.CityModels.tick_state`)
    tick_state: dict[str, Any] | None = None
    tick_boundary: float | None = None

    def by_topic(self) -> list[tuple[str, list[tuple[Any, bytes]]]]:
        return [
            ("indicators", list(self.indicators)),
            ("anomalies", list(self.anomalies)),
            ("risk", list(self.risk)),
            ("alerts", list(self.alerts)),
            ("deadletter", list(self.deadletters)),
        ]


def validate_frame(city: City, frame: Frame) -> None:
    """Check a decoded frame against the city: known gateway, its sensors, its kind's metrics."""
    g = city.gateway_index.get(frame.gateway)
    if g is None:
        raise FrameError("unknown_gateway", f"unknown gateway {frame.gateway!r}")
    if frame.domain != g.domain or set(frame.metrics) != set(KINDS[g.domain][g.kind]):
        raise FrameError(
            "unknown_metrics",
            f"gateway {g.id} is a {g.kind} gateway; frame has {frame.domain} "
            f"metrics {sorted(frame.metrics)}",
        )
    local = {s.id for s in g.sensors}
    unknown = [s for s in frame.sensor_id if s not in local]
    if unknown:
        raise FrameError(
            "unknown_sensor", f"gateway {g.id}: unknown sensor(s) {sorted(set(unknown))[:5]}"
        )




class CityValidator:
    """:func:`validate_frame` with the city's per-gateway sensor maps built once."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.local: dict[str, dict[str, int]] = {
            g.id: {s.id: i for i, s in enumerate(g.sensors)} for g in city.gateways
        }
        self.metrics: dict[str, frozenset[str]] = {
            g.id: frozenset(KINDS[g.domain][g.kind]) for g in city.gateways
        }

    def __call__(self, frame: Frame) -> np.ndarray:
        """Validate; returns the readings' local sensor indices within the gateway."""
        g = self.city.gateway_index.get(frame.gateway)
        if g is None:
            raise FrameError("unknown_gateway", f"unknown gateway {frame.gateway!r}")
        if frame.domain != g.domain or set(frame.metrics) != self.metrics[g.id]:
            raise FrameError(
                "unknown_metrics",
                f"gateway {g.id} is a {g.kind} gateway; frame has {frame.domain} "
                f"metrics {sorted(frame.metrics)}",
            )
        local = self.local[g.id]
        # map() over the bound dict.get: no Python frame per reading (a quarter faster)
        idx = np.fromiter(map(local.get, frame.sensor_id, repeat(-1)), np.int64, len(frame))
        if (idx < 0).any():
            unknown = sorted({str(s) for s, i in zip(frame.sensor_id, idx, strict=True) if i < 0})
            raise FrameError("unknown_sensor", f"gateway {g.id}: unknown sensor(s) {unknown[:5]}")
        return idx


def _forest_counters(det: Any) -> dict[str, Any]:
    """``IsolationDetector._shared_state()`` without ``buf`` and ``train`` (the training
    buffer and forest rows, identical for every gateway of a kind): the same keys and values,
    without turning thousands of rows into Python lists only to drop them."""
    nr = det._next_refit
    return {
        "buf_n": det._buf_n,
        "n_fits": det._n_fits,
        "next_refit": None if np.isnan(nr) else nr,
        "fed_upto": int(det._fed_upto),
    }


@contextlib.contextmanager
def _without_forest_buffers(models: CityModels) -> Iterator[None]:
    """While inside, the kinds' IsolationForest detectors snapshot their shared state without
    the training buffer and forest rows (see :meth:`Processor.snapshot_gateway`).

    A checkpoint writes every changed gateway; building those lists for each of them and
    dropping them again was a third of the worker's CPU in a full-speed replay
    (``BENCH_PIPELINE_PROFILE``). Falls back to the full snapshot if the detector does not have
    the attributes this relies on (``tests/streams/test_processor.py`` compares both).
    """
    dets: list[Any] = [k.isolation for k in models.kinds.values()
                       if getattr(k, "isolation", None) is not None]
    patched: list[Any] = []
    try:
        for d in dets:
            if all(hasattr(d, a) for a in ("_buf_n", "_n_fits", "_next_refit", "_fed_upto")):
                d._shared_state = functools.partial(_forest_counters, d)
                patched.append(d)
        yield
    finally:
        for d in patched:
            d.__dict__.pop("_shared_state", None)


def _chunks(n: int, size: int) -> Iterable[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


class Processor:
    """Validation, windows and (optionally) the model stack over batches of raw messages."""

    def __init__(
        self,
        city: City,
        *,
        window_s: int = 300,
        lateness_s: int = 120,
        max_frame_bytes: int = 4_000_000,
        clock: Callable[[], float] = time.time,
        models: CityModels | None = None,
        tick_s: float = 60.0,
        anomaly_score: float = 0.95,
        max_rows_per_message: int = 5000,
        publish_ticks: bool = False,
    ) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s!r}")
        if not 0.0 <= anomaly_score <= 1.0:
            raise ValueError(f"anomaly_score must be in [0, 1], got {anomaly_score!r}")
        self.city = city
        self.window_s, self.lateness_s = window_s, lateness_s
        self.max_frame_bytes = max_frame_bytes
        self.clock = clock
        self.validator = CityValidator(city)
        self._sensor_ids = {g.id: np.array([s.id for s in g.sensors], dtype=object)
                            for g in city.gateways}
        self.windows: dict[str, GatewayWindows] = {}
        self.dead_by_reason: Counter[str] = Counter()
        self.models = models
        self.tick_s = float(tick_s)
        self.anomaly_score = float(anomaly_score)
        self.max_rows = max_rows_per_message
        self.next_tick: float | None = None
        #: hand the city tick to another process (a stream worker: :mod:`streams.city`)
        self.publish_ticks = publish_ticks
        self.tick_dirty: set[str] = set()  # gateways changed since the last tick state
        self.reported_quality: np.ndarray | None = None
        self.dirty: set[str] = set()  # gateways changed since the last snapshot
        #: per gateway, the offset of the last input message its state includes, by
        #: ``"topic:partition"``. Saved in the gateway's snapshot (one changelog message), so a
        #: restored state knows exactly which redelivered messages it already holds.
        self.positions: dict[str, dict[str, int]] = {}
        #: gateway -> the partition number its latest frame arrived on (its state is
        #: checkpointed to the changelog partition of that number, whatever the producers'
        #: partitioner; see config/partitioning.py)
        self.partition_of: dict[str, int] = {}
        self.skipped = 0  # redelivered messages the restored state already included
        #: called with a gateway id the first time it is seen; returns its saved state or None
        self.restore_hook: Callable[[str], bytes | None] | None = None
        if models is not None:
            t = models.table
            self._gidx = {gw: t.lookup([s.id for s in g.sensors])
                          for gw, g in city.gateway_index.items()}
            if any((ix < 0).any() for ix in self._gidx.values()):
                raise ValueError("the models' sensor table lacks sensors of the city")
            self.reported_quality = np.zeros(len(t), dtype=np.uint16)

    # -- state -----------------------------------------------------------------------------------
    def load_gateway(self, gateway: str) -> None:
        """Bring a gateway's state into memory now (from ``restore_hook``) instead of at its
        first frame."""
        self._gateway_windows(gateway)

    def _gateway_windows(self, gateway: str) -> GatewayWindows:
        w = self.windows.get(gateway)
        if w is None:
            g = self.city.gateway_index[gateway]
            w = GatewayWindows(
                n_sensors=len(g.sensors),
                n_metrics=len(KINDS[g.domain][g.kind]),
                window_s=self.window_s,
                step_s=STEP_S,
                lateness_s=self.lateness_s,
            )
            self.windows[gateway] = w
            blob = self.restore_hook(gateway) if self.restore_hook is not None else None
            if blob:
                self.restore_gateway(gateway, blob)
        return w

    def snapshot_gateway(self, gateway: str, *, shared: bool = True) -> bytes:
        """The gateway's windows and model state (:func:`streams.codecs.encode_snapshot`:
        numpy arrays as raw bytes, zstd; snapshots of the older zlib-JSON format still restore).

        ``shared=False`` leaves out the kind-wide IsolationForest training buffer (identical for
        every gateway of a kind at one moment): a snapshot round writes it with one gateway per
        kind only, which keeps a round ~10× smaller.
        """
        body: dict[str, Any] = {
            "v": 1,
            "windows": self._gateway_windows(gateway).snapshot(arrays=True),
            "pos": self.positions.get(gateway, {}),
        }
        if self.models is not None:
            sensors = self.models.table.gateway_sensors(gateway)
            if shared:
                snap = self.models.snapshot(sensors, arrays=True)
            else:
                with _without_forest_buffers(self.models):
                    snap = self.models.snapshot(sensors, arrays=True)
                for kind_snap in snap["kinds"].values():
                    iso = kind_snap.get("isolation")
                    if isinstance(iso, dict) and isinstance(iso.get("shared"), dict):
                        iso["shared"].pop("buf", None)
                        iso["shared"].pop("train", None)
            body["models"] = snap
        return encode_snapshot(body)

    def restore_gateway(self, gateway: str, blob: bytes) -> None:
        body = decode_snapshot(blob)
        self._gateway_windows(gateway).restore(body["windows"])
        self.positions[gateway] = {str(k): int(v) for k, v in body.get("pos", {}).items()}
        if self.models is not None and "models" in body:
            self.models.restore(body["models"])

    def snapshot_city(self, extra: dict[str, Any] | None = None) -> bytes:
        """City-wide state: alert state machine, tick clock, last reported sensor health (and
        ``extra``, the caller's)."""
        body: dict[str, Any] = {"v": 1, "next_tick": self.next_tick, **(extra or {})}
        if self.models is not None:
            body["alerts"] = self.models.snapshot_alerts()
            body["watermark"] = (
                self.models.watermark if np.isfinite(self.models.watermark) else None
            )
            assert self.reported_quality is not None
            body["quality"] = self.reported_quality
        return encode_snapshot(body)

    def forget(self, gateways: Iterable[str]) -> None:
        """Drop the in-memory windows of ``gateways`` (their partitions went to another worker):
        the next time one is seen, its state is restored from the last checkpoint again."""
        for gw in gateways:
            self.windows.pop(gw, None)
            self.positions.pop(gw, None)
            self.partition_of.pop(gw, None)
            self.dirty.discard(gw)
            self.tick_dirty.discard(gw)

    def restore_city(self, blob: bytes) -> dict[str, Any]:
        """Restore :meth:`snapshot_city`; returns the whole record (the caller's extras)."""
        body = decode_snapshot(blob)
        self.next_tick = body.get("next_tick")
        if self.models is not None and "alerts" in body:
            self.models.restore_alerts(body["alerts"])
            if body.get("watermark") is not None:
                self.models.watermark = max(self.models.watermark, float(body["watermark"]))
            q = np.asarray(body.get("quality", []), dtype=np.uint16)
            if self.reported_quality is not None and q.shape == self.reported_quality.shape:
                self.reported_quality = q
        return body

    # -- processing ------------------------------------------------------------------------------
    def _dead(
        self, out: Outputs, msg: Message, reason: str, error: str, raw: bytes | None = None
    ) -> None:
        self.dead_by_reason[reason] += 1
        out.dead_reasons[reason] += 1
        out.deadletters.append(
            (
                msg.key,
                encode_deadletter(
                    raw=msg.value if raw is None else raw,
                    reason=reason,
                    error=error,
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    at=self.clock(),
                ),
            )
        )

    def validate(self, frame: Frame) -> np.ndarray:
        return self.validator(frame)

    def process(self, messages: Iterable[Message]) -> Outputs:
        out = Outputs()
        touched: set[str] = set()
        # kind -> lists of (global sensor index, ts, values, seq) for one models.update per kind
        per_kind: dict[str, list[tuple[np.ndarray, ...]]] = defaultdict(list)
        tp_names: dict[tuple[str, int], str] = {}
        max_ts: Any = -np.inf
        for msg in messages:
            try:
                if not isinstance(msg.value, (bytes, bytearray)):
                    raise FrameError("malformed_json", "message has no value (tombstone)")
                if msg.decoded is not None:
                    frame, idx = msg.decoded
                else:
                    frame = decode(msg.value, max_bytes=self.max_frame_bytes)
                    idx = self.validate(frame)
            except FrameError as exc:
                reason = exc.reason
                if reason == "malformed_json" and _NON_FINITE.search(msg.value or b""):
                    reason = "non_finite"
                self._dead(out, msg, reason, str(exc), raw=msg.value or b"")
                continue
            g = self.city.gateway_index[frame.gateway]
            w = self._gateway_windows(frame.gateway)  # restores a checkpoint on first sight
            pos = self.positions.setdefault(frame.gateway, {})
            tp = tp_names.get((msg.topic, msg.partition))
            if tp is None:
                tp = tp_names[(msg.topic, msg.partition)] = f"{msg.topic}:{msg.partition}"
            if msg.offset <= pos.get(tp, -1):
                # redelivered after a restart or rebalance: the restored state already holds it
                self.skipped += 1
                continue
            pos[tp] = msg.offset
            self.partition_of[frame.gateway] = msg.partition
            metrics = KINDS[g.domain][g.kind]
            values = np.column_stack([frame.metrics[m] for m in metrics])
            late = w.add(idx, frame.ts, frame.seq, values)
            out.readings += len(frame)
            max_ts = max(max_ts, frame.ts.max())
            any_late = bool(late.any())
            if any_late:
                late_frame = Frame(
                    frame.gateway, frame.domain, frame.ts[late], frame.sensor_id[late],
                    frame.seq[late], {m: v[late] for m, v in frame.metrics.items()},
                )
                self._dead(
                    out, msg, "late",
                    f"gateway {g.id}: {int(late.sum())} reading(s) older than the closed "
                    f"window end {w.closed_until}",
                    raw=encode(late_frame),
                )
            touched.add(frame.gateway)
            if self.models is not None:
                gidx = self._gidx[frame.gateway]
                if not any_late:  # the usual case: no copies
                    per_kind[g.kind].append((gidx[idx], frame.ts, values, frame.seq))
                else:
                    ok = ~late
                    if ok.any():
                        per_kind[g.kind].append(
                            (gidx[idx[ok]], frame.ts[ok], values[ok], frame.seq[ok]))
        if out.readings:
            out.max_event_ts = max(out.max_event_ts, float(max_ts))
        self.dirty |= touched
        if self.publish_ticks:
            self.tick_dirty |= touched
        # closed windows of every gateway of a kind in one wide message (per chunk): one Kafka
        # message per kind and batch instead of one per gateway, a third of the bytes
        means: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)
        for gateway in sorted(touched):
            part = self._emit(gateway)
            if part is not None:
                means[self.city.gateway_index[gateway].kind].append(part)
        for kind in sorted(means):
            ends = np.concatenate([p[0] for p in means[kind]])
            ids = np.concatenate([p[1] for p in means[kind]])
            vals = np.concatenate([p[2] for p in means[kind]])
            names = [f"{x}_mean" for x in KINDS[KIND_DOMAIN[kind]][kind]]
            for sl in _chunks(len(ends), max(1, self.max_rows // len(names))):
                out.indicators.append((kind.encode(), encode_sensor_means(
                    ends[sl], ids[sl], names, vals[sl], self.window_s)))
            out.indicator_rows += vals.size
        if self.models is not None:
            for kind in sorted(per_kind):
                parts = per_kind[kind]
                res = self.models.update(
                    kind,
                    np.concatenate([p[0] for p in parts]),
                    np.concatenate([p[1] for p in parts]),
                    np.concatenate([p[2] for p in parts]),
                    np.concatenate([p[3] for p in parts]),
                )
                self._anomalies(out, res)
            self._maybe_tick(out)
        return out

    def _anomalies(self, out: Outputs, res: KindResult) -> None:
        hot = np.flatnonzero(np.nan_to_num(res.score, nan=-1.0) >= self.anomaly_score)
        if not hot.size:
            return
        t = self.models.table  # type: ignore[union-attr]
        sensor = res.sensor[hot]
        metrics = np.array([*KINDS[KIND_DOMAIN[res.kind]][res.kind], ""], dtype=object)
        cols = {
            "ts": res.ts[hot],
            "sensor_id": t.ids[sensor],
            "kind": np.full(hot.size, res.kind, dtype=object),
            "district": t.district[sensor],
            "score": res.score[hot],
            "seasonal": res.seasonal[hot],
            "spatial": res.spatial[hot],
            "multivariate": res.multivariate[hot],
            "metric": metrics[res.metric[hot]],  # -1 (no metric) -> ""
            "flags": res.flags[hot].astype(np.uint16),
        }
        self._table_messages(out.anomalies, "anomalies", res.kind.encode(), cols, hot.size)
        out.rows["anomalies"] += int(hot.size)

    def _table_messages(
        self, dest: list[tuple[bytes, bytes]], kind: str, key: bytes,
        cols: dict[str, Any], n: int,
    ) -> None:
        for sl in _chunks(n, self.max_rows):
            dest.append((key, encode_table(kind, {c: v[sl] for c, v in cols.items()})))

    def _maybe_tick(self, out: Outputs) -> None:
        models = self.models
        assert models is not None
        wm = models.watermark
        if not np.isfinite(wm):
            return
        boundary = float(np.floor(wm / self.tick_s) * self.tick_s)
        if self.next_tick is None:
            self.next_tick = boundary + self.tick_s
            return
        if wm < self.next_tick:
            return
        # one tick at the newest boundary the watermark passed (a replay at full speed may pass
        # several per batch; risk and alerts describe "now", not every skipped minute)
        self.next_tick = boundary + self.tick_s
        if self.publish_ticks:
            gws = sorted(self.tick_dirty)
            self.tick_dirty.clear()
            sensors = (np.concatenate([self._gidx[g] for g in gws]) if gws
                       else np.zeros(0, dtype=np.int64))
            out.tick_state = models.tick_state(sensors)
            out.tick_boundary = boundary
            return
        self.tick(boundary, out)

    def tick(self, now: float, out: Outputs) -> TickResult:
        from models.health import flag_names

        models = self.models
        assert models is not None and self.reported_quality is not None
        res = models.tick(now)
        t = models.table
        cols: dict[str, Any]
        # district risk
        recs = res.risk.to_records(now)
        if recs:
            cols = {
                "ts": np.full(len(recs), now),
                "district": np.array([r["district"] for r in recs], dtype=object),
                "risk": np.array([r["risk"] for r in recs], dtype=np.float64),
                "colour": np.array([r["colour"] for r in recs], dtype=object),
                **{
                    f"contrib_{d}": np.array(
                        [r["contributions"].get(d, 0.0) for r in recs], dtype=np.float64
                    )
                    for d in ("traffic", "environment", "utility")
                },
                "top_sensors": np.array(
                    [orjson.dumps(r["top_sensors"]).decode() for r in recs], dtype=object
                ),
            }
            self._table_messages(out.risk, "risk", b"risk", cols, len(recs))
            out.rows["risk"] += len(recs)
        # alert lifecycle events
        if res.alerts:
            ev = res.alerts
            cols = {
                "ts": np.array([e["ts"] for e in ev], dtype=np.float64),
                "alert_id": [e["alert_id"] for e in ev],
                "district": [e["district"] for e in ev],
                "type": [e["type"] for e in ev],
                "event": [e["event"] for e in ev],
                "state": [e["state"] for e in ev],
                "severity": [int(e["severity"]) for e in ev],
                "peak": np.array([e["peak"] for e in ev], dtype=np.float64),
                "sensors": [list(e["sensors"]) for e in ev],
                "actor": ["worker"] * len(ev),
            }
            self._table_messages(out.alerts, "alerts", b"alerts", cols, len(ev))
            out.rows["alerts"] += len(ev)
        # sensor health: only the sensors whose flags changed
        changed = np.flatnonzero(res.quality != self.reported_quality)
        if changed.size:
            q = res.quality[changed]
            cols = {
                "ts": np.full(changed.size, now),
                "sensor_id": t.ids[changed],
                "district": t.district[changed],
                "flags": q.astype(np.uint16),
                "status": np.array(
                    [",".join(flag_names(int(f))) or "ok" for f in q.tolist()], dtype=object
                ),
            }
            self._table_messages(out.anomalies, "health", b"health", cols, changed.size)
            self.reported_quality = res.quality.astype(np.uint16).copy()
            out.rows["health"] += int(changed.size)
        # city indicators: congestion per district and city, AQI per station and district
        ind = self._city_indicators(now, res.indicators)
        if ind is not None:
            out.indicators.append((b"city", encode_indicators(ind)))
            out.indicator_rows += len(ind)
        return res

    def _city_indicators(self, now: float, ind: dict[str, Any]) -> IndicatorBatch | None:
        models = self.models
        assert models is not None
        t = models.table
        et: list[str] = []
        eid: list[str] = []
        name: list[str] = []
        val: list[float] = []

        def add(etype: str, ids: Iterable[str], n: str, values: np.ndarray) -> None:
            for i, v in zip(ids, np.asarray(values, dtype=np.float64).tolist(), strict=True):
                if np.isfinite(v):
                    et.append(etype)
                    eid.append(str(i))
                    name.append(n)
                    val.append(float(v))

        if "congestion_district" in ind:
            add("district", t.districts, "congestion_index", ind["congestion_district"])
        if "congestion_city" in ind:
            add("city", ["city"], "congestion_index", np.array([ind["congestion_city"]]))
        if "aqi" in ind:
            air = t.ids[t.members["air"]]
            add("station", air, "aqi", ind["aqi"].aqi)
        if "aqi_district" in ind:
            add("district", t.districts, "aqi", ind["aqi_district"])
        if not val:
            return None
        n = len(val)
        return IndicatorBatch(
            ts=np.full(n, now),
            entity_type=np.array(et, dtype=object),
            entity_id=np.array(eid, dtype=object),
            name=np.array(name, dtype=object),
            value=np.array(val, dtype=np.float64),
            window_s=int(self.tick_s),
        )

    def _emit(self, gateway: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The gateway's windows closed by its watermark: ``(window end, sensor id, means[k,
        m])`` (rows of the wide indicator layout, :func:`streams.codecs.encode_sensor_means`)."""
        ends, idx, means = self.windows[gateway].emit()
        if not len(ends):
            return None
        return ends, self._sensor_ids[gateway][idx], means
