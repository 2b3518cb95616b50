"""Spatial consistency: a sensor against its neighbours.

Neighbours are the ``k`` nearest sensors of the same kind (:meth:`models.sensors.SensorTable.
neighbours`). The detector keeps event-time windows per sensor (a
:class:`~models.indicators.rolling.WindowAggregator`); when the watermark closes a window,
every sensor's window mean is compared with the median of its neighbours' means *of the same
window*, and the sensor learns its usual offset from them (clipped exponential mean and mean
absolute deviation). A reading is scored against ``neighbour median of the last closed window
+ usual offset``, standardised by the learned deviation and calibrated to [0, 1].

``drift`` (per sensor and metric) is a slow exponential average of the window-level
standardised deviation: a sensor that creeps away from its neighbours shows a large |drift|
long before single readings look odd; :mod:`models.health` reads it.

Scores depend on closed windows only, and windows close at exact positions in the stream, so
scores are independent of batch boundaries.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from models.base import (
    Batch,
    DetectorResult,
    ModelsError,
    PerSensorState,
    check_int,
    check_positive,
    check_range,
    contiguous,
    expand_cols,
    flat_rows,
    occurrence_rounds,
    put_rows,
    select,
    sweep_length,
    take_rows,
)
from models.detectors.calibration import combine_calibrate, smooth_weight
from models.detectors.seasonal import MEANDEV_TO_SIGMA, Z_CLIP, metric_floors
from models.indicators.rolling import NO_WINDOW, WindowAggregator, WindowRows

CLIP = 3.0
DRIFT_CLIP = 6.0


def nan_median_rows(a: np.ndarray) -> np.ndarray:
    """Median along the last axis ignoring NaN, vectorised (NaN where a row has no value).

    Rows of up to 8 values (the usual neighbour counts) go through an odd-even transposition
    sorting network of ``minimum``/``maximum`` (NaN as +inf), far cheaper than ``np.sort`` on
    many tiny rows; longer rows are sorted."""
    k = a.shape[-1]
    if k == 0:
        return np.full(a.shape[:-1], np.nan)
    if k > 8:
        nan = np.isnan(a)
        n = k - np.sum(nan, axis=-1)
        srt = np.sort(a, axis=-1)
        return _median_of_sorted([srt[..., i] for i in range(k)], n)
    return nan_median_cols([np.ascontiguousarray(a[..., i]) for i in range(k)])


def nan_median_cols(cols: list[np.ndarray]) -> np.ndarray:
    """:func:`nan_median_rows` of the values given as ``k`` equal-shape arrays (contiguous
    columns: the sorting network runs on whole arrays instead of strided views)."""
    k = len(cols)
    nans = [np.isnan(c) for c in cols]
    if not any(bool(x.any()) for x in nans):
        n = None
    else:
        cols = [np.where(x, np.inf, c) for x, c in zip(nans, cols, strict=True)]
        n = np.full(cols[0].shape, k, dtype=np.int64)
        for x in nans:
            n -= x
    for rnd in range(k):
        for i in range(rnd % 2, k - 1, 2):
            lo = np.minimum(cols[i], cols[i + 1])
            cols[i + 1] = np.maximum(cols[i], cols[i + 1])
            cols[i] = lo
    return _median_of_sorted(cols, n)


def _median_of_sorted(cols: list[np.ndarray], n: np.ndarray | None) -> np.ndarray:
    """Median of rows sorted column-wise (NaN/+inf last) with ``n`` values each (None: all)."""
    k = len(cols)
    if n is None or (n == k).all():
        return 0.5 * (cols[(k - 1) // 2] + cols[k // 2])
    stacked = np.stack(cols, axis=0)
    lo_i = np.maximum((n - 1) // 2, 0)
    hi_i = np.minimum(n // 2, np.maximum(n - 1, 0))
    v = 0.5 * (
        np.take_along_axis(stacked, lo_i[None], axis=0)[0]
        + np.take_along_axis(stacked, hi_i[None], axis=0)[0]
    )
    return np.where(n > 0, v, np.nan)


class SpatialDetector(PerSensorState):
    """See the module docstring. ``neighbours``: int array ``(n, k)`` of local indices, -1 pads."""

    _state_arrays: ClassVar[tuple[str, ...]] = (
        "ref",
        "off",
        "odev",
        "ocnt",
        "drift",
        "last_w",
        "drift_ts",
        "rsum",
        "rcnt",
    )

    def __init__(
        self,
        ids: Any,
        *,
        n_metrics: int,
        neighbours: np.ndarray,
        metrics: tuple[str, ...] | None = None,
        window_s: float = 60.0,
        lateness_s: float = 120.0,
        history: int = 1,
        minmax: bool = False,
        learning_rate: float = 0.02,
        min_count: int = 10,
        drift_halflife_s: float = 1800.0,
        scale_floor: float = 0.02,
        calibration_scale: float = 1.0,
        skip: tuple[int, ...] = (),
    ) -> None:
        self.n_metrics = check_int("n_metrics", n_metrics, 1)
        self.metrics = tuple(metrics) if metrics is not None else None
        self.learning_rate = check_range("learning_rate", learning_rate, 0, 1, lo_open=True)
        self.min_count = check_int("min_count", min_count, 1)
        self.drift_halflife_s = check_positive("drift_halflife_s", drift_halflife_s)
        self.scale_floor = check_range("scale_floor", scale_floor, 0, 1)
        self.calibration_scale = check_positive("calibration_scale", calibration_scale)
        self.skip = tuple(sorted(set(skip)))
        self._init_ids(ids)
        n, m = len(self.ids), self.n_metrics
        nb = np.asarray(neighbours, dtype=np.int64)
        if nb.ndim != 2 or nb.shape[0] != n or (nb >= n).any():
            raise ValueError(f"neighbours must be an int array of shape ({n}, k), got {nb.shape}")
        self.neighbours = nb
        self.windows = WindowAggregator(
            self.ids,
            n_metrics=m,
            window_s=window_s,
            lateness_s=lateness_s,
            history=history,
            minmax=minmax,
        )
        self.ref = np.full((n, m), np.nan)  # neighbour median of the last closed window
        self.off = np.zeros((n, m))  # usual offset from the neighbour median
        self.odev = np.zeros((n, m))  # mean absolute deviation of that offset
        self.ocnt = np.zeros((n, m), dtype=np.int64)
        self.drift = np.zeros((n, m))  # slow average of window-level z
        self.last_w = np.full(n, -1, dtype=np.int64)
        self.drift_ts = np.full(n, np.nan)
        # reading-level |residual| accumulated until the next window closes (scale learning)
        self.rsum = np.zeros((n, m))
        self.rcnt = np.zeros((n, m), dtype=np.int64)
        self._floor = metric_floors(self.metrics, m)
        self._active = np.ones(m, dtype=bool)
        self._active[list(self.skip)] = False
        #: windows closed by the last update (reused as indicator input by the stack)
        self.last_rows: WindowRows = WindowRows.empty(m)
        self.last_late = np.zeros(0, dtype=bool)
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def params(self) -> dict[str, Any]:
        return {
            "n_metrics": self.n_metrics,
            "neighbours": int(self.neighbours.shape[1]),
            "window_s": self.windows.window_s,
            "lateness_s": self.windows.lateness_s,
            "learning_rate": self.learning_rate,
            "min_count": self.min_count,
            "drift_halflife_s": self.drift_halflife_s,
            "scale_floor": self.scale_floor,
            "calibration_scale": self.calibration_scale,
            "skip": list(self.skip),
        }

    def snapshot(self, sensors: Any = None, *, arrays: bool = False) -> dict[str, Any]:
        snap = super().snapshot(sensors, arrays=arrays)
        snap["shared"]["windows"] = self.windows.snapshot(sensors, arrays=arrays)
        return snap

    def restore(self, snap: dict[str, Any]) -> None:
        self._cache = None
        super().restore(snap)

    def _restore_shared(self, shared: dict[str, Any]) -> None:
        if "windows" in shared:
            self.windows.restore(shared["windows"])

    def _sigma(self, s: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return MEANDEV_TO_SIGMA * self.odev[s] + self.scale_floor * np.abs(ref) + self._floor

    def update(self, batch: Batch, *, on_chunk: Any = None) -> DetectorResult:
        """Score a batch. ``on_chunk(sl, closed_rows_or_None, closed_before_s)`` is called at
        every stream position where windows may close (to share the windows, e.g. with
        :meth:`~models.detectors.isolation.IsolationDetector.feed_rows`)."""
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(
                f"SpatialDetector: batch has {batch.values.shape[1]} metrics, "
                f"expected {self.n_metrics}"
            )
        n = len(batch)
        scores = np.full((n, self.n_metrics), np.nan)
        late = np.zeros(n, dtype=bool)
        rows: list[WindowRows] = []
        for sl, closed in self.windows.iter_chunks(batch, late):
            if closed is not None and len(closed):
                self._learn(closed)
                rows.append(closed)
            if on_chunk is not None:
                cu = self.windows.closed_upto
                on_chunk(sl, closed, -math.inf if cu == NO_WINDOW else cu * self.windows.window_s)
            s = batch.sensor[sl]
            x = batch.values[sl]
            pred, sig, ocnt, clip_sig = self._scoring_state()
            k = sweep_length(s)
            c = contiguous(s[:k]) if k is not None else None
            if c is not None:
                # sweeps of a range of sensors: the per-sensor state broadcast over the sweeps
                # (slices and a leading axis) instead of gathered per reading
                shape = (s.shape[0] // (c.stop - c.start), c.stop - c.start, x.shape[1])
                res3 = x.reshape(shape) - pred[c]
                res = res3.reshape(x.shape)
                z = (res3 / sig[c]).reshape(x.shape)
                ocnt_c = ocnt[c]
                ok_n = np.broadcast_to(ocnt_c >= self.min_count, shape).reshape(x.shape)
                ok_l = np.broadcast_to(ocnt_c > 0, shape).reshape(x.shape)
                capped = np.minimum(np.abs(res3), clip_sig[c]).reshape(x.shape)
            else:
                res = x - pred.take(s, axis=0)
                z = res / sig.take(s, axis=0)
                ocnt_s = ocnt.take(s, axis=0)
                ok_n = ocnt_s >= self.min_count
                ok_l = ocnt_s > 0
                capped = np.minimum(np.abs(res), clip_sig.take(s, axis=0))
            z = np.minimum(np.maximum(z, -Z_CLIP), Z_CLIP)
            valid = ~np.isnan(res)
            if self.skip:
                valid &= self._active
            ok = ok_n & valid
            scores[sl] = select(ok, z, np.nan)  # calibrated after the max over metrics
            # the reading-level spread is learned when the next window closes
            learn = valid & ok_l
            w = select(learn, capped, 0.0)
            self._add_rows(s, w, learn)
        self.last_rows = WindowRows.concat(rows, self.n_metrics)
        self.last_late = late
        score, metric = combine_calibrate(scores, self.calibration_scale)
        return DetectorResult(score, metric)

    def _scoring_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per sensor: prediction ``ref + off``, sigma, the offset count and the residual cap
        ``CLIP * sigma``, which change only when windows close (cached until the next close
        or restore)."""
        if self._cache is None:
            sig = MEANDEV_TO_SIGMA * self.odev + self.scale_floor * np.abs(self.ref) + self._floor
            self._cache = (self.ref + self.off, sig, self.ocnt, CLIP * sig)
        return self._cache

    def _add_rows(self, s: np.ndarray, w: np.ndarray, learn: np.ndarray) -> None:
        """``rsum[s] += w``, ``rcnt[s] += learn`` in batch order (as ``np.add.at`` would, so
        the sums do not depend on batch cuts), one round of distinct sensors at a time."""
        m = self.n_metrics
        rs = self.rsum.reshape(-1)
        rc = self.rcnt.reshape(-1)
        for r in occurrence_rounds(s):
            sr = s[r]
            c = contiguous(sr)
            fs = flat_rows(sr, m) if c is None else slice(c.start * m, c.stop * m)
            rs[fs] += w[r].reshape(-1)
            rc[fs] += learn[r].reshape(-1)

    def _learn(self, rows: WindowRows) -> None:
        self._cache = None
        starts = rows.start
        # rows come ordered by window: one window when the first and last start agree
        cut: list[int] = []
        if starts[0] != starts[-1]:
            cut = (np.flatnonzero(np.diff(starts)) + 1).tolist()
        m = self.n_metrics
        # neighbour means by sensor, NaN where absent (last row: the -1 pad); kept between
        # calls, every row written below is set back to NaN
        scratch = self.__dict__.get("_scratch")
        if scratch is None:
            scratch = self.__dict__["_scratch"] = np.full((len(self.ids) + 1, m), np.nan)
        for a, b in zip([0, *cut], [*cut, len(rows)], strict=True):
            s = rows.sensor[a:b]
            x = rows.mean[a:b]
            t = float(starts[a])
            c = contiguous(s)  # a range of sensors: slices instead of gathers
            ix = s if c is None else c
            fs = flat_rows(s, m) if c is None else slice(c.start * m, c.stop * m)
            scratch[ix] = x
            nb = self.neighbours[c] if c is not None else self.neighbours.take(s, axis=0)
            if 0 < nb.shape[1] <= 8:  # one contiguous (rows, m) block per neighbour rank
                med = nan_median_cols(
                    [scratch.take(nb[:, i], axis=0) for i in range(nb.shape[1])]
                )  # -1 pads index the NaN row
            else:
                med = nan_median_rows(scratch.take(nb, axis=0).transpose(0, 2, 1))
            scratch[ix] = np.nan
            d = x - med
            ok = ~np.isnan(d)
            cnt = take_rows(self.ocnt, s, c)
            off = take_rows(self.off, s, c)
            odev = take_rows(self.odev, s, c)
            drift = take_rows(self.drift, s, c)
            ft = self.__dict__.get("_floor_tile")  # the floors as a (rows, m) block
            if ft is None or ft.shape[0] < s.shape[0]:
                ft = self.__dict__["_floor_tile"] = np.tile(self._floor, (len(self.ids), 1))
            sig = MEANDEV_TO_SIGMA * odev + self.scale_floor * np.abs(med) + ft[: s.shape[0]]
            res = d - off
            z = np.minimum(np.maximum(res / sig, -Z_CLIP), Z_CLIP)
            warm = cnt >= self.min_count
            # drift: slow average of the (moderately clipped) window z, once the offset is known
            zd = np.minimum(np.maximum(z, -DRIFT_CLIP), DRIFT_CLIP)
            dts_prev = take_rows(self.drift_ts, s, c)
            dts = np.where(np.isnan(dts_prev), 0.0, t - dts_prev)
            # (the per-sensor weight as a (rows, m) block: a broadcast column is slow)
            wd = expand_cols(smooth_weight(dts, self.drift_halflife_s), m)
            put_rows(self.drift, fs, select(ok & warm, drift + wd * (zd - drift), drift))
            self.drift_ts[ix] = t
            inv_n = 1.0 / (cnt + 1.0)
            eta = np.maximum(self.learning_rate, inv_n)
            lim = CLIP * sig
            rc = np.minimum(np.maximum(res, -lim), lim)
            new_off = select(cnt == 0, d, off + eta * rc)
            rc_n = take_rows(self.rcnt, s, c)
            mean_abs = take_rows(self.rsum, s, c) / np.maximum(rc_n, 1)
            eta_d = np.maximum(self.learning_rate * 5, inv_n)
            put_rows(self.odev, fs, select(rc_n > 0, odev + eta_d * (mean_abs - odev), odev))
            put_rows(self.rsum, fs, np.zeros_like(x))
            put_rows(self.rcnt, fs, np.zeros_like(rc_n))
            put_rows(self.off, fs, select(ok, new_off, off))
            put_rows(self.ocnt, fs, cnt + ok)
            put_rows(self.ref, fs, med)
            self.last_w[ix] = math.floor(t / self.windows.window_s)
