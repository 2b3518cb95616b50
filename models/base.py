"""The shapes every model shares: the batch it is called with, the detector protocol, state.

A :class:`Batch` is what a Faust agent holds after decoding frames of one sensor *kind*: equal
length arrays of local sensor indices, event times and an ``(n, m)`` block of metric values in
the kind's metric order (``config.domains.KINDS``). ``NaN`` means "not measured".

Every stateful model keeps its state in dense numpy arrays whose first axis is the sensor, so
state is per sensor by construction. :class:`PerSensorState` turns that into plain-data snapshots
keyed by sensor id (JSON-safe, ``orjson`` round-trips them), so a worker can store one snapshot
per gateway in a Faust table and restore only the gateways it is assigned::

    snap = detector.snapshot(["TR-S0001", "TR-S0002"])   # one gateway's sensors
    other.restore(orjson.loads(orjson.dumps(snap)))       # same state, other process
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

SNAPSHOT_VERSION = 1


class ModelsError(Exception):
    """Root exception of :mod:`models`; the message names the culprit (sensor, key, value)."""


class ParamsChanged(ModelsError):
    """A snapshot was taken with other parameters than the model now has (a config change).

    Raised by :meth:`PerSensorState.restore` before anything is modified, so the caller can let
    that one model start cold instead of failing (see :meth:`models.stack.KindModels.restore`).
    """


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings of one sensor kind: ``sensor`` (int64 local index), ``ts`` (float64 epoch s),
    ``values`` (float64, shape ``(n, m)``), optional ``seq`` (int64 per-sensor sequence)."""

    sensor: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    seq: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.sensor.shape[0]
        if self.ts.shape != (n,):
            raise ModelsError(f"batch: ts has shape {self.ts.shape}, sensor has {n} values")
        if self.values.ndim != 2 or self.values.shape[0] != n:
            raise ModelsError(f"batch: values has shape {self.values.shape}, expected ({n}, m)")
        if self.seq is not None and self.seq.shape != (n,):
            raise ModelsError(f"batch: seq has shape {self.seq.shape}, sensor has {n} values")

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @classmethod
    def of(
        cls,
        sensor: Any,
        ts: Any,
        values: Any,
        seq: Any = None,
    ) -> Batch:
        """Coerce array-likes (a 1-D ``values`` is one metric)."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1:
            v = v[:, None]
        return cls(
            np.asarray(sensor, dtype=np.int64),
            np.asarray(ts, dtype=np.float64),
            v,
            None if seq is None else np.asarray(seq, dtype=np.int64),
        )

    def take(self, idx: np.ndarray | slice) -> Batch:
        return Batch(
            self.sensor[idx],
            self.ts[idx],
            self.values[idx],
            None if self.seq is None else self.seq[idx],
        )


@dataclass(frozen=True, slots=True)
class DetectorResult:
    """Per reading: ``score`` in [0, 1] (NaN = could not score, e.g. all metrics missing or the
    detector is still learning) and ``metric``, the column that drove the score (-1 if none)."""

    score: np.ndarray
    metric: np.ndarray


@runtime_checkable
class Detector(Protocol):
    """A streaming, causal, per-sensor anomaly detector.

    ``update`` scores every reading against the state built from the readings *before* it (in
    batch order), then learns from it; the scores do not depend on how the stream is cut into
    batches. It never mutates its input.
    """

    ids: np.ndarray
    n_metrics: int

    def update(self, batch: Batch) -> DetectorResult: ...

    def snapshot(
        self, sensors: Iterable[str] | None = None, *, arrays: bool = False
    ) -> dict[str, Any]: ...

    def restore(self, snap: dict[str, Any]) -> None: ...


def check_range(
    name: str, value: float, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    """Validate a hyperparameter; the message names it and the value."""
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (ok_lo and ok_hi):
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {lb}{lo:g}, {hi:g}{rb}, got {value!r}")
    return float(value)


def check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_int(name: str, value: int, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def flat_rows(idx: np.ndarray, m: int) -> np.ndarray:
    """Flat positions of rows ``idx`` of a C-contiguous ``(n, m)`` array (for :func:`put_rows`).
    Built column by column: ``idx[:, None] * m + arange(m)`` broadcasts over a short last axis,
    which numpy runs several times slower."""
    base = idx * m
    out = np.empty((idx.shape[0], m), dtype=np.result_type(base, np.int64))
    for j in range(m):
        np.add(base, j, out=out[:, j])
    return out.reshape(-1)


def put_rows(arr: np.ndarray, flat: np.ndarray | slice, values: np.ndarray) -> None:
    """``arr[idx] = values`` for a C-contiguous ``arr`` through :func:`flat_rows` positions
    (or a :func:`row_index` slice): numpy's row-wise fancy assignment is several times slower
    than a flat one."""
    arr.reshape(-1)[flat] = values.reshape(-1)


def contiguous(idx: np.ndarray) -> slice | None:
    """``slice(a, a + k)`` when ``idx`` is exactly ``a, a+1, ..., a+k-1``, else None. Cheap to
    ask: most non-ranges are rejected by their end points."""
    k = idx.shape[0]
    if k == 0:
        return None
    a = int(idx[0])
    if int(idx[-1]) - a != k - 1:
        return None
    if k > 2 and not bool((idx[1:] - idx[:-1] == 1).all()):
        return None
    return slice(a, a + k)


def row_index(idx: np.ndarray, m: int) -> np.ndarray | slice:
    """Positions of rows ``idx`` in a flattened C-contiguous ``(n, m)`` array for
    :func:`put_rows`: a slice when ``idx`` is a contiguous range (a plain copy, no gather),
    else :func:`flat_rows`."""
    sl = contiguous(idx)
    if sl is None:
        return flat_rows(idx, m)
    return slice(sl.start * m, sl.stop * m)


def take_rows(arr: np.ndarray, idx: np.ndarray, sl: slice | None) -> np.ndarray:
    """``arr[idx]`` (a fresh array) for a C-contiguous ``arr``; ``sl`` = :func:`contiguous`
    of ``idx`` turns the gather into a slice copy."""
    if sl is not None:
        return arr[sl].copy()
    return arr.take(idx, axis=0)


def expand_cols(v: np.ndarray, m: int) -> np.ndarray:
    """``v[:, None]`` materialised as a C-contiguous ``(k, m)`` block (worth it when it takes
    part in more than one operation: broadcasting a column is slow on narrow arrays)."""
    out = np.empty((v.shape[0], m), dtype=v.dtype)
    for j in range(m):
        out[:, j] = v
    return out


def any_rows(a: np.ndarray) -> np.ndarray:
    """``a.any(axis=1)`` for a 2-D bool array; column by column when it is narrow (numpy's
    reduction along a short last axis is an order of magnitude slower)."""
    m = a.shape[1]
    if m == 0 or m > 8:
        return np.asarray(a.any(axis=1))
    out = a[:, 0].copy()
    for j in range(1, m):
        out |= a[:, j]
    return out


def all_rows(a: np.ndarray) -> np.ndarray:
    """``a.all(axis=1)`` for a 2-D bool array (see :func:`any_rows`)."""
    m = a.shape[1]
    if m == 0 or m > 8:
        return np.asarray(a.all(axis=1))
    out = a[:, 0].copy()
    for j in range(1, m):
        out &= a[:, j]
    return out


def select(cond: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """``np.where(cond, a, b)``, skipping the element-wise pass when ``cond`` is all True or
    all False (the usual case in a stream). The result may be ``a`` or ``b`` itself (not a
    copy): callers must not write into it."""
    if cond.all():
        r, other = a, b
    elif not cond.any():
        r, other = b, a
    else:
        return np.where(cond, a, b)
    if (
        isinstance(r, np.ndarray)
        and r.shape == cond.shape
        and (np.ndim(other) == 0 or np.shape(other) == r.shape)
        and r.dtype == np.result_type(a, b)
    ):
        return r
    shape = np.broadcast_shapes(np.shape(cond), np.shape(a), np.shape(b))
    dtype = np.result_type(a, b)
    if not isinstance(r, np.ndarray) or r.shape != shape or r.dtype != dtype:
        r = np.broadcast_to(np.asarray(r, dtype=dtype), shape).copy()
    return r


Rows = np.ndarray | slice


def sweep_length(a: np.ndarray) -> int | None:
    """``k`` when ``a`` (non-empty) is ``n / k`` repetitions of the same ``k`` distinct values
    in the same order (a batch of consecutive reporting intervals of the same sensors), else
    None."""
    n = a.shape[0]
    if n == 0:
        return None
    first = np.flatnonzero(a == a[0])
    k = int(first[1]) if first.shape[0] > 1 else n
    if n % k or first.shape[0] != n // k:
        return None
    head = a[:k]
    if k < n and not bool((a.reshape(-1, k) == head).all()):
        return None
    if k > 1 and contiguous(head) is None:  # (a range is distinct without sorting)
        srt = np.sort(head)
        if not bool((srt[1:] != srt[:-1]).all()):
            return None
    return k


def occurrence_rounds(sensor: np.ndarray) -> list[Rows]:
    """Split positions into rounds in which every sensor occurs at most once.

    Round ``r`` holds, in batch order, the ``r``-th reading of every sensor that has more than
    ``r`` readings in the batch. Processing the rounds in order with vectorised per-sensor
    updates gives exactly the result of processing the readings one by one: this is what makes
    every detector independent of batch boundaries.

    A round is a ``slice`` when its positions are contiguous (a batch made of consecutive
    reporting intervals of the same sensors: every round is one interval), else an index
    array; both index arrays the same way.
    """
    n = sensor.shape[0]
    if n == 0:
        return []
    k = sweep_length(sensor)
    if k is not None:  # fast path: every round is one sweep
        return [slice(a, a + k) for a in range(0, n, k)]
    order = np.argsort(sensor, kind="stable")
    s = sensor[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    if new.all():
        return [slice(0, n)]
    starts = np.flatnonzero(new)
    group_start = np.repeat(starts, np.diff(np.append(starts, n)))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    by_rank = np.argsort(rank, kind="stable")
    counts = np.bincount(rank)
    out: list[Rows] = []
    a = 0
    for c in counts.tolist():
        r = by_rank[a : a + c]
        a += c
        # positions of a round ascend: contiguous exactly when last - first == size - 1
        out.append(slice(int(r[0]), int(r[0]) + c) if int(r[-1]) - int(r[0]) == c - 1 else r)
    return out


class PerSensorState:
    """Mixin: snapshot/restore of per-sensor arrays (axis 0 = sensor) plus shared plain data.

    Subclasses list the attribute names of their per-sensor arrays in ``_state_arrays`` and may
    override :meth:`_shared_state` / :meth:`_restore_shared` for state that is not per sensor
    (a fitted model, a watermark).
    """

    _state_arrays: ClassVar[tuple[str, ...]] = ()
    ids: np.ndarray
    _pos: dict[str, int]

    def _init_ids(self, ids: Sequence[str] | np.ndarray | int) -> None:
        if isinstance(ids, int):
            ids = [str(i) for i in range(ids)]
        self.ids = np.asarray(list(ids), dtype=object)
        self._pos = {str(s): i for i, s in enumerate(self.ids)}
        if len(self._pos) != len(self.ids):
            raise ModelsError(f"{type(self).__name__}: duplicate sensor ids")

    def params(self) -> dict[str, Any]:
        """Hyperparameters (plain data), stored in snapshots to catch mismatched restores."""
        return {}

    def _shared_state(self) -> dict[str, Any]:
        return {}

    def _restore_shared(self, shared: dict[str, Any]) -> None:
        return None

    def positions(self, sensors: Iterable[str]) -> np.ndarray:
        """Local indices of sensor ids; unknown ids raise :class:`ModelsError` naming them."""
        try:
            return np.fromiter((self._pos[str(s)] for s in sensors), dtype=np.int64)
        except KeyError as exc:
            raise ModelsError(f"{type(self).__name__}: unknown sensor {exc.args[0]!r}") from None

    def snapshot(
        self, sensors: Iterable[str] | None = None, *, arrays: bool = False
    ) -> dict[str, Any]:
        """Plain data (lists) that round-trip through JSON. ``arrays=True`` leaves the per-sensor
        state as numpy arrays (copies) for a caller that serialises them itself (orjson's
        ``OPT_SERIALIZE_NUMPY`` writes the same JSON ~3x faster than building lists first:
        the worker's checkpoints); :meth:`restore` accepts either."""
        idx = np.arange(len(self.ids)) if sensors is None else self.positions(sensors)
        return {
            "type": type(self).__name__,
            "version": SNAPSHOT_VERSION,
            "params": self.params(),
            "sensors": [str(s) for s in self.ids[idx]],
            "state": {
                name: getattr(self, name)[idx] if arrays else getattr(self, name)[idx].tolist()
                for name in self._state_arrays
            },
            "shared": self._shared_state(),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        name = type(self).__name__
        if snap.get("type") != name:
            raise ModelsError(f"{name}: cannot restore a snapshot of {snap.get('type')!r}")
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ModelsError(f"{name}: unknown snapshot version {snap.get('version')!r}")
        if snap.get("params") != self.params():
            raise ParamsChanged(
                f"{name}: snapshot params {snap.get('params')!r} differ from {self.params()!r}"
            )
        idx = self.positions(snap["sensors"])
        for key in self._state_arrays:
            arr = getattr(self, key)
            if len(idx) == 0 or key not in snap["state"]:
                continue  # (a key added after the snapshot was taken keeps its initial value)
            vals = np.asarray(snap["state"][key], dtype=arr.dtype)
            if vals.shape != (len(idx), *arr.shape[1:]):
                raise ModelsError(f"{name}: snapshot state {key!r} has shape {vals.shape}")
            arr[idx] = vals
        self._restore_shared(snap.get("shared") or {})
