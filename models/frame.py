"""The wire format: a *frame* is a columnar batch of readings of one gateway.

Example value (the Kafka key is the gateway id)::

    {"v": 1, "gateway": "TR-G017", "domain": "traffic",
     "ts": [1767571200, 1767571200], "sensor_id": ["TR-S0170", "TR-S0171"], "seq": [7, 7],
     "metrics": {"flow_vph": [812.0, 640.5], "speed_kmh": [48.1, 52.0],
                 "occupancy_pct": [11.2, 8.9]}}

``ts`` is event time in epoch seconds (float allowed), ``seq`` a per-sensor sequence number
that makes replays idempotent and reveals gaps. A frame of one reading is valid.

:func:`decode` validates everything a worker relies on and raises :class:`FrameError` with a
short machine-readable ``reason`` (the dead-letter reason) and a message naming the culprit.

>>> f = Frame("G1", "traffic", np.array([1.0]), np.array(["S1"]), np.array([1]),
...           {"flow_vph": np.array([1.0]), "speed_kmh": np.array([50.0]),
...            "occupancy_pct": np.array([3.0])})
>>> decode(encode(f)).sensor_id.tolist()
['S1']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from config.domains import KINDS, kind_of_metrics

WIRE_VERSION = 1
MAX_FRAME_BYTES = 4_000_000


class FrameError(ValueError):
    """A message that is not a valid frame. ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    gateway: str
    domain: str
    ts: np.ndarray  # float64, epoch seconds
    sensor_id: np.ndarray  # str (numpy unicode or object)
    seq: np.ndarray  # int64
    metrics: dict[str, np.ndarray]  # metric -> float64
    v: int = WIRE_VERSION

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def kind(self) -> str | None:
        return kind_of_metrics(self.domain, list(self.metrics))

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "gateway": self.gateway,
            "domain": self.domain,
            "ts": self.ts,
            "sensor_id": [str(s) for s in self.sensor_id],
            "seq": self.seq,
            "metrics": self.metrics,
        }


def encode(frame: Frame) -> bytes:
    """Frame -> JSON bytes (numpy arrays serialised natively by orjson)."""
    d = frame.to_dict()
    d["ts"] = np.ascontiguousarray(frame.ts)
    d["seq"] = np.ascontiguousarray(frame.seq, dtype=np.int64)
    d["metrics"] = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in frame.metrics.items()}
    return orjson.dumps(d, option=orjson.OPT_SERIALIZE_NUMPY)


def _num_array(values: Any, name: str, dtype: type, may_hold_bools: bool = True) -> np.ndarray:
    """A JSON list of numbers as a flat array; ``null`` becomes NaN (caught as non_finite).

    Strings (even numeric ones like ``"1"``), booleans and nested lists are ``wrong_type``.
    """
    if not isinstance(values, list):
        raise FrameError("wrong_type", f"{name} must be a list, got {type(values).__name__}")
    try:
        raw = np.asarray(values) if values else np.empty(0, dtype=dtype)
    except (TypeError, ValueError, OverflowError):  # e.g. [1, [2]]: numpy refuses ragged nesting
        raise FrameError("wrong_type", f"{name} must be a flat list of numbers") from None
    kind = raw.dtype.kind
    if kind == "O":  # mixed: numbers with null, or something that is not a number
        bad = next(
            (x for x in values if x is not None
             and (isinstance(x, bool) or not isinstance(x, (int, float)))),
            None,
        )
        if bad is not None:
            raise FrameError("wrong_type", f"{name} holds a non-number: {bad!r}")
    elif kind not in "iuf":
        raise FrameError("wrong_type", f"{name} holds a non-number: {values[0]!r}")
    elif may_hold_bools and any(x is True or x is False for x in values):
        raise FrameError("wrong_type", f"{name} holds a boolean")
    if raw.ndim != 1:
        raise FrameError("wrong_type", f"{name} must be a flat list")
    try:
        arr: np.ndarray = raw.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        raise FrameError("wrong_type", f"{name} holds a non-number") from None
    return arr


_STR, _LIST = frozenset([str]), frozenset([list])


def decode(raw: bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> Frame:
    """Bytes -> validated :class:`Frame`, or :class:`FrameError`.

    A valid frame takes :func:`_decode_fast` (a few C-level checks and one array for every
    numeric column); anything it does not accept is decoded again by :func:`_decode_checked`,
    which finds the exact reason. Both give the same :class:`Frame` for every frame the fast
    path accepts (``tests/test_frame.py`` compares them on generated frames).
    """
    if len(raw) > max_bytes:
        raise FrameError("oversized", f"frame of {len(raw)} bytes exceeds {max_bytes}")
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError("malformed_json", f"not JSON: {exc}") from None
    frame = _decode_fast(d, raw)
    return frame if frame is not None else _decode_checked(d, raw)


def _decode_fast(d: Any, raw: bytes) -> Frame | None:
    """The usual valid frame, or None (then :func:`_decode_checked` says why it is not one).

    A per-reading ``isinstance`` check of the sensor ids in a generator was the largest part of
    decoding a frame (``BENCH_PIPELINE_PROFILE``); here the checks run in C: ``map(type, ...)``
    for the ids, and one ``np.array`` over ts, seq and every metric, which only gives a 2-D
    int64/float64 array when every column is a flat list of numbers of the same length.
    """
    if type(d) is not dict or d.get("v") != WIRE_VERSION:
        return None
    gateway, domain = d.get("gateway"), d.get("domain")
    sids, ts, seq, metrics_raw = d.get("sensor_id"), d.get("ts"), d.get("seq"), d.get("metrics")
    if (type(gateway) is not str or not gateway or type(domain) is not str
            or domain not in KINDS or type(sids) is not list or not sids
            or type(metrics_raw) is not dict or not metrics_raw
            or type(ts) is not list or type(seq) is not list):
        return None
    if set(map(type, sids)) != _STR or "" in sids:
        return None
    names = list(metrics_raw)
    if kind_of_metrics(domain, names) is None:
        return None
    cols = [ts, seq, *metrics_raw.values()]
    if set(map(type, cols)) != _LIST:
        return None
    # JSON booleans would become 1.0/0.0 in a numeric array (the checked path rejects them)
    if b"true" in raw or b"false" in raw:
        return None
    try:
        arr = np.array(cols)
    except (TypeError, ValueError, OverflowError):
        return None
    if arr.ndim != 2 or arr.shape[1] != len(sids):
        return None
    if arr.dtype != np.float64:
        if arr.dtype != np.int64:
            return None
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        return None
    t, s = arr[0], arr[1]
    if s.min() < 0 or s.max() >= 2.0**63 or (s != np.floor(s)).any():
        return None
    if t.min() < 0 or t.max() > 4_102_444_800:
        return None
    return Frame(
        gateway=gateway,
        domain=domain,
        ts=t,
        sensor_id=np.asarray(sids, dtype=object),
        seq=s.astype(np.int64),
        metrics=dict(zip(names, arr[2:], strict=True)),
    )


def _decode_checked(d: Any, raw: bytes) -> Frame:
    """Decoded JSON -> :class:`Frame`, checking everything in order for the exact reason."""
    if not isinstance(d, dict):
        raise FrameError("wrong_type", f"frame must be a JSON object, got {type(d).__name__}")
    v = d.get("v")
    if v != WIRE_VERSION:
        raise FrameError("unknown_version", f"unknown frame version {v!r}")
    for key in ("gateway", "domain", "ts", "sensor_id", "seq", "metrics"):
        if key not in d:
            raise FrameError("missing_field", f"frame lacks {key!r}")
    gateway, domain = d["gateway"], d["domain"]
    if not isinstance(gateway, str) or not gateway:
        raise FrameError("wrong_type", f"gateway must be a non-empty string, got {gateway!r}")
    if not isinstance(domain, str) or domain not in KINDS:
        raise FrameError("unknown_domain", f"gateway {gateway}: unknown domain {domain!r}")
    # JSON booleans become 1.0/0.0 in a numeric array: look for them only if the text has any
    bools = b"true" in raw or b"false" in raw
    ts = _num_array(d["ts"], "ts", np.float64, bools)
    seq = _num_array(d["seq"], "seq", np.float64, bools)
    sids = d["sensor_id"]
    if not isinstance(sids, list) or not all(isinstance(s, str) and s for s in sids):
        raise FrameError("wrong_type", f"gateway {gateway}: sensor_id must be a list of strings")
    n = len(sids)
    if n == 0:
        raise FrameError("empty", f"gateway {gateway}: frame has no readings")
    metrics_raw = d["metrics"]
    if not isinstance(metrics_raw, dict) or not metrics_raw:
        raise FrameError("wrong_type", f"gateway {gateway}: metrics must be a non-empty object")
    if kind_of_metrics(domain, list(metrics_raw)) is None:
        raise FrameError(
            "unknown_metrics",
            f"gateway {gateway}: metrics {sorted(metrics_raw)} match no {domain} sensor kind",
        )
    metrics = {
        k: _num_array(v, f"metrics.{k}", np.float64, bools) for k, v in metrics_raw.items()
    }
    for name, arr in (("ts", ts), ("seq", seq), *metrics.items()):
        if arr.shape[0] != n:
            raise FrameError(
                "ragged", f"gateway {gateway}: {name} has {arr.shape[0]} values, sensor_id has {n}"
            )
        if not np.isfinite(arr).all():
            raise FrameError("non_finite", f"gateway {gateway}: {name} holds NaN or infinity")
    if (seq < 0).any() or (seq != np.floor(seq)).any() or (seq >= 2.0**63).any():
        raise FrameError("wrong_type", f"gateway {gateway}: seq must be non-negative integers")
    if (ts < 0).any() or (ts > 4_102_444_800).any():  # 2100-01-01
        raise FrameError("bad_timestamp", f"gateway {gateway}: ts outside 1970..2100")
    return Frame(
        gateway=gateway,
        domain=domain,
        ts=ts,
        sensor_id=np.asarray(sids, dtype=object),
        seq=seq.astype(np.int64),
        metrics=metrics,
    )
