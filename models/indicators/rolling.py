"""Event-time tumbling windows per sensor and metric, closed by a watermark.

:class:`WindowAggregator` is the indicator workhorse: it folds readings into windows of
``window_s`` seconds per sensor, closes a window once the watermark (the largest event time
seen minus ``lateness_s``) passes its end, and reports each closed window's count, mean, min,
max, an EWMA of window means and rolling percentiles over the last ``history`` windows.
A reading whose window is already closed is *late*: it is not counted, and ``late`` marks it
so the agent can send it to the dead-letter topic with reason ``late``.

The result does not depend on how the stream is cut into batches: reading ``i`` is late exactly
when the windows closed by readings ``0..i-1`` include its window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from models.base import (
    Batch,
    ModelsError,
    PerSensorState,
    check_int,
    check_positive,
    check_range,
    contiguous,
    flat_rows,
    occurrence_rounds,
    put_rows,
    sweep_length,
    take_rows,
)

NO_WINDOW = np.iinfo(np.int64).min // 4


@dataclass(frozen=True, slots=True)
class WindowRows:
    """Closed windows, one row per (sensor, window), ordered by window then sensor."""

    sensor: np.ndarray  # int64 local index
    start: np.ndarray  # float64 window start, epoch s
    count: np.ndarray  # int64 (k, m) readings per metric
    mean: np.ndarray  # float64 (k, m), NaN where count is 0
    min: np.ndarray
    max: np.ndarray  # NaN when the aggregator runs without min/max
    std: np.ndarray  # population standard deviation within the window
    ewma: np.ndarray  # EWMA of window means
    p50: np.ndarray  # rolling percentiles of the last `history` window means
    p90: np.ndarray

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @staticmethod
    def empty(m: int) -> WindowRows:
        e = np.empty((0, m))
        i = np.empty(0, dtype=np.int64)
        return WindowRows(i, np.empty(0), e.astype(np.int64), e, e, e, e, e, e, e)

    @staticmethod
    def concat(parts: list[WindowRows], m: int) -> WindowRows:
        parts = [p for p in parts if len(p)]
        if not parts:
            return WindowRows.empty(m)
        if len(parts) == 1:
            return parts[0]
        return WindowRows(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in WindowRows.__slots__)
        )


def nan_quantiles(a: np.ndarray, qs: tuple[float, ...], axis: int = 1) -> list[np.ndarray]:
    """Linear-interpolated quantiles along ``axis`` ignoring NaN (vectorised; NaN if none)."""
    s = np.sort(a, axis=axis)  # NaN sort last
    n = np.sum(~np.isnan(a), axis=axis, keepdims=True)
    out = []
    for q in qs:
        pos = (n - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        lo = np.maximum(lo, 0)
        vlo = np.take_along_axis(s, lo, axis=axis)
        vhi = np.take_along_axis(s, hi, axis=axis)
        r = vlo + (vhi - vlo) * (pos - np.floor(pos))
        r = np.where(n > 0, r, np.nan)
        out.append(np.squeeze(r, axis=axis))
    return out


class WindowAggregator(PerSensorState):
    """Tumbling event-time windows per sensor; see the module docstring.

    >>> agg = WindowAggregator(["S1"], n_metrics=1, window_s=60.0, lateness_s=0.0)
    >>> r = agg.update(Batch.of([0, 0, 0], [0.0, 30.0, 61.0], [1.0, 3.0, 5.0]))
    >>> r.rows.mean.ravel().tolist(), r.late.tolist()
    ([2.0], [False, False, False])
    """

    _state_arrays: ClassVar[tuple[str, ...]] = (
        "wid",
        "cnt",
        "sum",
        "sumsq",
        "vmin",
        "vmax",
        "hist",
        "hpos",
        "ewma_",
    )

    def __init__(
        self,
        ids: Any,
        *,
        n_metrics: int,
        window_s: float = 60.0,
        lateness_s: float = 120.0,
        history: int = 15,
        ewma_alpha: float = 0.3,
        minmax: bool = True,
    ) -> None:
        self.n_metrics = check_int("n_metrics", n_metrics, 1)
        self.window_s = check_positive("window_s", window_s)
        self.lateness_s = check_range("lateness_s", lateness_s, 0, math.inf, hi_open=True)
        self.history = check_int("history", history, 1)
        self.ewma_alpha = check_range("ewma_alpha", ewma_alpha, 0, 1, lo_open=True)
        self.minmax = bool(minmax)
        self._init_ids(ids)
        n, m = len(self.ids), self.n_metrics
        self.slots = math.ceil(self.lateness_s / self.window_s) + 3
        w = self.slots
        # the window slots are stored slot-major, ``(slots, n[, m])``, and exposed as the
        # ``(n, slots[, m])`` views below (per-sensor snapshots index those): one window of
        # a range of sensors is then a contiguous block; flat positions are slot * n + sensor
        self._wid_t = np.full((w, n), NO_WINDOW, dtype=np.int64)
        self._cnt_t = np.zeros((w, n, m), dtype=np.int64)
        self._sum_t = np.zeros((w, n, m))
        self._sumsq_t = np.zeros((w, n, m))
        self._vmin_t = np.full((w, n, m), np.inf)
        self._vmax_t = np.full((w, n, m), -np.inf)
        self.wid = self._wid_t.T
        self.cnt = self._cnt_t.transpose(1, 0, 2)
        self.sum = self._sum_t.transpose(1, 0, 2)
        self.sumsq = self._sumsq_t.transpose(1, 0, 2)
        self.vmin = self._vmin_t.transpose(1, 0, 2)
        self.vmax = self._vmax_t.transpose(1, 0, 2)
        self.hist = np.full((n, self.history, m), np.nan)
        self.hpos = np.zeros(n, dtype=np.int64)
        self.ewma_ = np.full((n, m), np.nan)
        self.watermark = -math.inf  # largest event time seen
        self.closed_upto = NO_WINDOW  # windows with id < closed_upto are closed

    def params(self) -> dict[str, Any]:
        return {
            "n_metrics": self.n_metrics,
            "minmax": self.minmax,
            "window_s": self.window_s,
            "lateness_s": self.lateness_s,
            "history": self.history,
            "ewma_alpha": self.ewma_alpha,
        }

    def _shared_state(self) -> dict[str, Any]:
        return {"watermark": None if self.watermark == -math.inf else self.watermark}

    def _restore_shared(self, shared: dict[str, Any]) -> None:
        wm = shared.get("watermark")
        if wm is not None and wm > self.watermark:
            self.watermark = float(wm)
            self.closed_upto = self._cu(self.watermark)

    def _cu(self, wm: float) -> int:
        if wm == -math.inf:
            return NO_WINDOW
        return math.floor((wm - self.lateness_s) / self.window_s)

    def update(self, batch: Batch) -> WindowUpdate:
        late = np.zeros(len(batch), dtype=bool)
        rows = [closed for _, closed in self.iter_chunks(batch, late) if closed is not None]
        return WindowUpdate(late, WindowRows.concat(rows, self.n_metrics))

    def iter_chunks(
        self, batch: Batch, late: np.ndarray
    ) -> Iterator[tuple[slice, WindowRows | None]]:
        """Walk ``batch`` in chunks; yields ``(chunk, windows closed just before it)``.

        A chunk starts at every reading that moves the watermark past a window boundary, so
        the windows closed before a chunk are exactly those closed by the readings before it
        (callers that score readings against closed windows stay batch-independent). The
        chunk's readings are accumulated after the caller resumes the generator; ``late`` is
        filled in place.
        """
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(
                f"WindowAggregator: batch has {batch.values.shape[1]} metrics, "
                f"expected {self.n_metrics}"
            )
        n = len(batch)
        if n == 0:
            return
        ts = batch.ts
        cm = np.maximum.accumulate(np.maximum(ts, self.watermark))
        prev = np.empty(n)
        prev[0] = self.watermark
        prev[1:] = cm[:-1]
        with np.errstate(invalid="ignore"):
            cu_prev = np.floor((prev - self.lateness_s) / self.window_s)
            cu_cm = np.floor((cm - self.lateness_s) / self.window_s)
        cu_prev = np.where(np.isfinite(cu_prev), cu_prev, NO_WINDOW).astype(np.int64)
        cu_cm = cu_cm.astype(np.int64)
        w_i = np.floor(ts / self.window_s).astype(np.int64)
        late[:] = w_i < cu_prev
        mw = np.floor(cm / self.window_s).astype(np.int64)
        change = np.zeros(n, dtype=bool)
        change[1:] = (np.diff(cu_cm) != 0) | (np.diff(mw) != 0)
        change[0] = True
        starts = np.flatnonzero(change).tolist()
        for a, b in zip(starts, [*starts[1:], n], strict=True):
            # reading a's arrival closes windows < cu(cm[a]); it cannot close its own window
            new_cu = int(cu_cm[a])
            closed = None
            if new_cu > self.closed_upto:
                closed = self._close(new_cu)
                self.closed_upto = new_cu
            yield slice(a, b), closed
            self._accumulate(batch, slice(a, b), w_i, late)
            self.watermark = float(cm[b - 1])

    def _accumulate(self, batch: Batch, sl: slice, w_i: np.ndarray, late: np.ndarray) -> None:
        ok = ~late[sl]
        s = batch.sensor[sl]
        w = w_i[sl]
        v = batch.values[sl]
        if not ok.all():
            s, w, v = s[ok], w[ok], v[ok]
        if s.size == 0:
            return
        slot = np.mod(w, self.slots)
        n_s = self._wid_t.shape[1]
        flat = slot * n_s + s
        self._wid_t.reshape(-1)[flat] = w  # a new window takes over a (closed, cleared) slot
        valid = ~np.isnan(v)
        all_valid = bool(valid.all())
        vz = v if all_valid else np.where(valid, v, 0.0)
        m = self.n_metrics
        size = self._wid_t.size
        cnt = self._cnt_t.reshape(-1)
        sm = self._sum_t.reshape(-1)
        sq = self._sumsq_t.reshape(-1)
        k = sweep_length(flat)
        if k is not None:
            # sweeps over the same slots (consecutive intervals of the same sensors): sum
            # each slot's readings in batch order starting from 0.0 -- exactly what bincount
            # does -- then add to the state once, touching only those slots
            reps = flat.shape[0] // k
            c = contiguous(s[:k])
            one_slot = c is not None and bool((slot[:k] == slot[0]).all())
            pos: Any = (int(slot[0]), c) if one_slot else flat_rows(flat[:k], m)
            # a range of sensors in one slot: a contiguous (k, m) block of the state
            tc, tsm, tsq = (
                (self._cnt_t, self._sum_t, self._sumsq_t) if one_slot else (cnt, sm, sq)
            )
            v3 = vz.reshape(reps, k, m)
            acc_s = 0.0 + v3[0]
            acc_q = 0.0 + v3[0] * v3[0]
            for i in range(1, reps):
                vi = v3[i]
                acc_s += vi
                acc_q += vi * vi
            shape = (k, m) if one_slot else (k * m,)
            if all_valid:
                tc[pos] += reps
            else:
                tc[pos] += valid.reshape(reps, k * m).sum(axis=0).reshape(shape)
            tsm[pos] += acc_s.reshape(shape)
            tsq[pos] += acc_q.reshape(shape)
        elif s.size * 4 < size:  # sparse: touch only the slots that changed
            uniq, inv = np.unique(flat, return_inverse=True)
            k = uniq.shape[0]
            pos = flat_rows(uniq, m)
            idx = flat_rows(inv, m)
            cnt[pos] += np.bincount(idx, weights=valid.reshape(-1), minlength=k * m).astype(
                np.int64
            )
            sm[pos] += np.bincount(idx, weights=vz.reshape(-1), minlength=k * m)
            sq[pos] += np.bincount(idx, weights=(vz * vz).reshape(-1), minlength=k * m)
        else:  # dense: one bincount per quantity and metric over every slot
            cnt2 = cnt.reshape(size, m)
            sm2 = sm.reshape(size, m)
            sq2 = sq.reshape(size, m)
            if all_valid:
                cnt2 += np.bincount(flat, minlength=size)[:, None]
            for j in range(m):
                if not all_valid:
                    cnt2[:, j] += np.bincount(flat[valid[:, j]], minlength=size)
                col = vz[:, j]
                sm2[:, j] += np.bincount(flat, weights=col, minlength=size)
                sq2[:, j] += np.bincount(flat, weights=col * col, minlength=size)
        if self.minmax:
            np.minimum.at(self._vmin_t, (slot, s), np.where(valid, v, np.inf))
            np.maximum.at(self._vmax_t, (slot, s), np.where(valid, v, -np.inf))

    def _close(self, new_cu: int) -> WindowRows:
        m = self.n_metrics
        wid = self._wid_t.reshape(-1)
        n_s = self._wid_t.shape[1]
        if self.closed_upto == NO_WINDOW:
            mask = (wid != NO_WINDOW) & (wid < new_cu)
        else:
            mask = (wid >= self.closed_upto) & (wid < new_cu)
        fi = np.flatnonzero(mask)  # (slot, sensor) flat positions
        if fi.size == 0:
            return WindowRows.empty(m)
        wids = wid[fi]
        s = fi % n_s
        blk = None
        if wids.min() != wids.max():
            order = np.lexsort((s, wids))
            fi, s, wids = fi[order], s[order], wids[order]
        else:  # one window (one slot, positions ascending by sensor): a range of sensors
            c = contiguous(s)  # is a contiguous block of the slot
            if c is not None:
                blk = (int(fi[0]) // n_s, c)

        def gather(arr: np.ndarray) -> np.ndarray:
            if blk is not None:
                return arr[blk].copy()
            return arr.reshape(-1, m).take(fi, axis=0)

        cnt = gather(self._cnt_t)
        has = cnt > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = gather(self._sum_t) / cnt
            var = gather(self._sumsq_t) / cnt - mean * mean
        if not has.all():
            mean = np.where(has, mean, np.nan)
            var = np.where(has, var, np.nan)
        std = np.sqrt(np.maximum(var, 0.0))
        if self.minmax:
            vmin = np.where(has, gather(self._vmin_t), np.nan)
            vmax = np.where(has, gather(self._vmax_t), np.nan)
        else:
            vmin = vmax = np.full_like(mean, np.nan)
        # clear the slots
        wid[fi] = NO_WINDOW
        if blk is not None:
            self._cnt_t[blk] = 0
            self._sum_t[blk] = 0.0
            self._sumsq_t[blk] = 0.0
            if self.minmax:
                self._vmin_t[blk] = np.inf
                self._vmax_t[blk] = -np.inf
        else:
            ff = flat_rows(fi, m)
            zero = np.zeros(ff.shape[0])
            self._cnt_t.reshape(-1)[ff] = 0
            self._sum_t.reshape(-1)[ff] = zero
            self._sumsq_t.reshape(-1)[ff] = zero
            if self.minmax:
                self._vmin_t.reshape(-1)[ff] = np.inf
                self._vmax_t.reshape(-1)[ff] = -np.inf
        # history ring and EWMA, in window order (a sensor may close several windows at once)
        ewma = np.empty_like(mean)
        p50 = np.empty_like(mean)
        p90 = np.empty_like(mean)
        a = self.ewma_alpha
        hist = self.hist.reshape(-1, m)
        for r in occurrence_rounds(s):
            rs = s[r]
            sl = contiguous(rs)
            fr = flat_rows(rs, m) if sl is None else slice(sl.start * m, sl.stop * m)
            mr = mean[r]
            old = take_rows(self.ewma_, rs, sl)
            nan_old = np.isnan(old)
            nan_mr = np.isnan(mr)
            new = a * mr + (1 - a) * old
            if nan_old.any() or nan_mr.any():
                new = np.where(nan_old, mr, np.where(nan_mr, old, new))
            put_rows(self.ewma_, fr, new)
            ewma[r] = new
            hpos = take_rows(self.hpos, rs, sl)
            if self.history == 1:
                put_rows(hist, fr, mr)
            else:
                put_rows(hist, flat_rows(rs * self.history + hpos % self.history, m), mr)
            self.hpos[rs if sl is None else sl] = hpos + 1
            if self.history == 1:
                p50[r] = mr
                p90[r] = mr
                continue
            q50, q90 = nan_quantiles(self.hist[rs], (0.5, 0.9), axis=1)
            p50[r] = q50
            p90[r] = q90
        return WindowRows(
            sensor=s.astype(np.int64),
            start=wids.astype(np.float64) * self.window_s,
            count=cnt,
            mean=mean,
            min=vmin,
            max=vmax,
            std=std,
            ewma=ewma,
            p50=p50,
            p90=p90,
        )

    def flush(self) -> WindowRows:
        """Close every open window (end of a replay or of a CSV)."""
        if self.watermark == -math.inf:
            return WindowRows.empty(self.n_metrics)
        rows = self._close(int(np.max(self.wid)) + 1)
        return rows


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    late: np.ndarray  # bool per reading: its window was already closed (dead letter "late")
    rows: WindowRows
