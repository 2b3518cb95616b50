"""Wire codecs of the derived topics (indicators, dead letters).

Readings frames are in :mod:`models.frame`. Derived messages are columnar JSON too::

    {"v": 1, "kind": "indicators", "window_s": 300,
     "ts": [...], "entity_type": [...], "entity_id": [...], "name": [...], "value": [...]}

Sensor window means use the *wide* layout (one row per window end and sensor, one value per
metric; :func:`encode_sensor_means`); :func:`decode_indicators` reads both. Worker state
snapshots (changelog records) are binary: :func:`encode_snapshot`.
"""

from __future__ import annotations

import base64
import functools
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import zstandard

from models.frame import FrameError

OPT = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True, eq=False)
class IndicatorBatch:
    ts: np.ndarray  # float64 epoch s (window end)
    entity_type: np.ndarray  # object
    entity_id: np.ndarray  # object
    name: np.ndarray  # object
    value: np.ndarray  # float64
    window_s: int

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def encode_indicators(b: IndicatorBatch) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "kind": "indicators",
            "window_s": int(b.window_s),
            "ts": np.ascontiguousarray(b.ts, dtype=np.float64),
            "entity_type": b.entity_type.tolist(),
            "entity_id": b.entity_id.tolist(),
            "name": b.name.tolist(),
            "value": np.ascontiguousarray(b.value, dtype=np.float64),
        },
        option=OPT,
    )


def encode_sensor_means(
    ts: np.ndarray, entity_id: np.ndarray, names: list[str], values: np.ndarray, window_s: int
) -> bytes:
    """Window means of sensors in the *wide* layout: one row per (window end, sensor) and one
    column per metric (``values[k, m]``), ``entity_type`` ``sensor`` for all. It stands for the
    ``k * m`` long rows ``(ts[i], "sensor", entity_id[i], names[j], values[i, j])`` that
    :func:`decode_indicators` returns, in that order (row-major). A third of the bytes of the
    long layout, which repeats ts, entity type, id and name on every row: the worker sent more
    indicator bytes than it read readings (bench pipeline: 1.3 M indicator rows per million
    readings), and each byte costs the worker, the broker and the sink.
    """
    return orjson.dumps(
        {
            "v": 1,
            "kind": "indicators",
            "window_s": int(window_s),
            "layout": "wide",
            "entity_type": "sensor",
            "names": list(names),
            "ts": np.ascontiguousarray(ts, dtype=np.float64),
            "entity_id": entity_id.tolist(),
            "values": np.ascontiguousarray(values, dtype=np.float64),
        },
        option=OPT,
    )


def _wide(d: dict[str, Any]) -> IndicatorBatch:
    names = d["names"]
    m = len(names)
    ts = np.asarray(d["ts"], dtype=np.float64)
    k = len(ts)
    ids = np.empty(len(d["entity_id"]), dtype=object)
    ids[:] = d["entity_id"]
    # (null -> NaN; a ragged or non-numeric matrix raises ValueError: malformed)
    values = np.asarray(d["values"], dtype=np.float64)
    if not isinstance(d["entity_type"], str) or not all(isinstance(x, str) for x in names):
        raise FrameError("malformed_indicators", "wide indicators: entity_type/names not text")
    if len(ids) != k or values.size != k * m or (k and values.shape != (k, m)):
        raise FrameError("ragged", "wide indicator columns differ in length")
    values = values.reshape(k * m)
    name_col = np.empty(m, dtype=object)
    name_col[:] = names
    return IndicatorBatch(
        ts=np.repeat(ts, m),
        entity_type=np.full(k * m, d["entity_type"], dtype=object),
        entity_id=np.repeat(ids, m),
        name=np.tile(name_col, k),
        value=values,
        window_s=int(d["window_s"]),
    )


def decode_indicators(raw: bytes) -> IndicatorBatch:
    """An indicators message, long layout (:func:`encode_indicators`) or wide
    (:func:`encode_sensor_means`), as long rows."""
    try:
        d = orjson.loads(raw)
        if d.get("v") != 1 or d.get("kind") != "indicators":
            raise FrameError("unknown_version", "not an indicators v1 message")
        if d.get("layout") == "wide":
            return _wide(d)
        n = len(d["ts"])
        batch = IndicatorBatch(
            ts=np.asarray(d["ts"], dtype=np.float64),
            entity_type=np.asarray(d["entity_type"], dtype=object),
            entity_id=np.asarray(d["entity_id"], dtype=object),
            name=np.asarray(d["name"], dtype=object),
            value=np.asarray(d["value"], dtype=np.float64),
            window_s=int(d["window_s"]),
        )
    except FrameError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FrameError("malformed_indicators", f"bad indicator message: {exc}") from None
    for col in (batch.entity_type, batch.entity_id, batch.name, batch.value):
        if len(col) != n:
            raise FrameError("ragged", "indicator columns differ in length")
    return batch


def encode_deadletter(
    *, raw: bytes, reason: str, error: str, topic: str, partition: int, offset: int, at: float
) -> bytes:
    """A dead letter keeps the original bytes (base64), the reason and where it came from."""
    body: dict[str, Any] = {
        "v": 1,
        "reason": reason,
        "error": error[:2000],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "at": at,
        "raw_b64": base64.b64encode(raw).decode(),
    }
    return orjson.dumps(body)


def decode_deadletter(raw: bytes) -> dict[str, Any]:
    d: dict[str, Any] = orjson.loads(raw)
    d["raw"] = base64.b64decode(d.pop("raw_b64"))
    return d


# --- derived tables: anomalies, sensor health, district risk, alert events ----------------------
#: message kind -> (ClickHouse table, column -> numpy dtype on decode). ``ts`` columns are epoch
#: seconds on the wire and ``datetime64[s]`` in the sink.
TABLE_COLUMNS: dict[str, tuple[str, dict[str, Any]]] = {
    "anomalies": ("anomalies", {
        "ts": np.float64, "sensor_id": object, "kind": object, "district": object,
        "score": np.float64, "seasonal": np.float64, "spatial": np.float64,
        "multivariate": np.float64, "metric": object, "flags": np.uint16,
    }),
    "health": ("sensor_health", {
        "ts": np.float64, "sensor_id": object, "district": object, "flags": np.uint16,
        "status": object,
    }),
    "risk": ("district_risk", {
        "ts": np.float64, "district": object, "risk": np.float64, "colour": object,
        "contrib_traffic": np.float64, "contrib_environment": np.float64,
        "contrib_utility": np.float64, "top_sensors": object,
    }),
    "alerts": ("alert_events", {
        "ts": np.float64, "alert_id": object, "district": object, "type": object,
        "event": object, "state": object, "severity": np.uint8, "peak": np.float64,
        "sensors": object, "actor": object,
    }),
}


def encode_table(kind: str, columns: dict[str, Any]) -> bytes:
    """A columnar message of one derived table (``kind`` in :data:`TABLE_COLUMNS`).

    NaN floats travel as JSON ``null`` and come back as NaN.
    """
    spec = TABLE_COLUMNS[kind][1]
    missing = set(spec) - set(columns)
    if missing:
        raise ValueError(f"{kind}: missing column(s) {sorted(missing)}")
    cols: dict[str, Any] = {}
    for name in spec:
        v = columns[name]
        cols[name] = (
            np.ascontiguousarray(v, dtype=np.float64)
            if spec[name] is np.float64
            else (v.tolist() if isinstance(v, np.ndarray) else list(v))
        )
    return orjson.dumps({"v": 1, "kind": kind, "columns": cols}, option=OPT)


def decode_table(raw: bytes) -> tuple[str, dict[str, np.ndarray]]:
    """``(table, columns)`` of a derived message, ready for ``Store.insert``."""
    try:
        d = orjson.loads(raw)
        kind = d["kind"]
        if d.get("v") != 1 or kind not in TABLE_COLUMNS:
            raise FrameError("unknown_version", f"unknown derived message {kind!r} v{d.get('v')}")
        table, spec = TABLE_COLUMNS[kind]
        raw_cols = d["columns"]
        out: dict[str, np.ndarray] = {}
        n = None
        for name, dtype in spec.items():
            values = raw_cols[name]
            if dtype is np.float64:
                arr = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
            elif dtype is object:
                arr = np.empty(len(values), dtype=object)
                arr[:] = values
            else:
                arr = np.asarray(values, dtype=dtype)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise FrameError("ragged", f"{kind}: column {name} has {len(arr)} values, not {n}")
            out[name] = arr
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, FrameError):
            raise
        raise FrameError("malformed_derived", f"bad derived message: {exc}") from None
    out["ts"] = np.floor(out["ts"]).astype("datetime64[s]")
    return table, out


# --- state snapshots (the worker's changelog records) ---------------------------------------------
#: A binary snapshot: this magic, then zstd of ``<u32 skeleton length><u32 array count>``, the
#: skeleton (JSON of the state with every numeric numpy array replaced by
#: ``{"__nd__": i, "dtype": ..., "shape": [...]}``) and the arrays' raw bytes in order ``i``.
#: JSON text of the arrays plus zlib were 85 % of a checkpoint's CPU (0.47 CPU-s for the 267
#: gateways of the default city); raw bytes + zstd level 1 are exact (NaN, -0.0 and every bit
#: of a float survive; JSON turned NaN into null) and several times cheaper.
SNAPSHOT_MAGIC = b"CBS2"
_SNAP_HEAD = struct.Struct("<II")
_ZSTD_LEVEL = 1


@functools.cache
def _zstd_c() -> Any:
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL)


@functools.cache
def _zstd_d() -> Any:
    return zstandard.ZstdDecompressor()


def encode_snapshot(body: dict[str, Any]) -> bytes:
    """State (plain data with numpy arrays anywhere) -> compact bytes; see :data:`SNAPSHOT_MAGIC`.

    >>> s = decode_snapshot(encode_snapshot({"a": np.array([1.5, np.nan]), "b": [1, None]}))
    >>> s["a"].tolist()[0], s["b"]
    (1.5, [1, None])
    """
    arrays: list[np.ndarray] = []

    def default(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            if x.dtype.kind in "biuf":
                arrays.append(x)  # tobytes() below writes C order whatever the strides
                return {"__nd__": len(arrays) - 1, "dtype": x.dtype.str, "shape": x.shape}
            return x.tolist()
        if isinstance(x, np.generic):
            return x.item()
        raise TypeError(f"cannot serialise {type(x).__name__} in a snapshot")

    skeleton = orjson.dumps(body, default=default)
    payload = b"".join(
        [_SNAP_HEAD.pack(len(skeleton), len(arrays)), skeleton,
         *(a.tobytes() for a in arrays)]
    )
    return SNAPSHOT_MAGIC + _zstd_c().compress(payload)


def decode_snapshot(blob: bytes) -> dict[str, Any]:
    """Bytes of :func:`encode_snapshot` -> state (numeric arrays as writeable numpy arrays).

    Snapshots written before the binary format (zlib of JSON, numbers as lists) are still read,
    so a worker upgraded in place restores its changelog; anything else raises ``ValueError``.
    """
    if not blob.startswith(SNAPSHOT_MAGIC):
        try:
            old: dict[str, Any] = orjson.loads(zlib.decompress(blob))
        except (zlib.error, orjson.JSONDecodeError) as exc:
            raise ValueError(f"not a state snapshot ({len(blob)} bytes): {exc}") from None
        return old
    try:
        payload = _zstd_d().decompress(blob[len(SNAPSHOT_MAGIC):])
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt state snapshot: {exc}") from None
    n_skel, n_arr = _SNAP_HEAD.unpack_from(payload)
    start = _SNAP_HEAD.size
    body: dict[str, Any] = orjson.loads(payload[start:start + n_skel])
    markers: dict[int, dict[str, Any]] = {}

    def find(x: Any) -> None:
        if isinstance(x, dict):
            if "__nd__" in x:
                markers[int(x["__nd__"])] = x
            else:
                for v in x.values():
                    find(v)
        elif isinstance(x, list):
            for v in x:
                find(v)

    find(body)
    if sorted(markers) != list(range(n_arr)):
        raise ValueError(f"corrupt state snapshot: {len(markers)} array markers, {n_arr} arrays")
    arrays: list[np.ndarray] = []
    off = start + n_skel
    for i in range(n_arr):
        m = markers[i]
        dtype = np.dtype(m["dtype"])
        shape = tuple(int(d) for d in m["shape"])
        size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if off + size > len(payload):
            raise ValueError("corrupt state snapshot: arrays end early")
        arrays.append(np.frombuffer(payload, dtype, int(np.prod(shape, dtype=np.int64)),
                                    off).reshape(shape).copy())
        off += size

    def put(x: Any) -> Any:
        if isinstance(x, dict):
            if "__nd__" in x:
                return arrays[int(x["__nd__"])]
            return {k: put(v) for k, v in x.items()}
        if isinstance(x, list):
            return [put(v) for v in x]
        return x

    out: dict[str, Any] = put(body)
    return out
