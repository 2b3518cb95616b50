"""Multivariate detector: scikit-learn's IsolationForest on per-sensor window features.

Readings are folded into event-time windows (``window_s``, default 5 min). When a window
closes, the sensor's feature vector is built -- per metric the window mean and standard deviation,
standardised by that sensor's own slowly-learned mean and spread, so one forest serves every
sensor of a kind -- and scored by the forest, always on the batch of rows that closed together.
The forest is fitted on a baseline period (the first ``fit_after`` rows) and refitted every
``refit_every_s`` of event time on the most recent ``buffer`` rows, with
``random_state = seed + number of fits`` (deterministic by seed).

Raw forest scores (``-score_samples``, about 0.4-0.5 for ordinary points) are calibrated
against the training rows' own scores: ``u = (s - median) / (1.4826 MAD)``, then the shared
arctan calibration. A reading's score is the score of its sensor's last scored window (NaN
before the first fit). With ``score_every = k`` > 1 the forest runs on a schedule: a sensor's
window is scored every ``k``-th window (round robin over sensors, so each close scores about
1/k of the rows), which divides the forest's cost -- the largest part of this detector -- by
``k``; the normalisation and the training buffer still learn from every window.

Snapshots are plain data: the training rows of the current forest and the seed, so a restore
refits the identical forest.

Inside the stack the detector does not fold readings itself: :meth:`feed_rows` builds its
windows from the 1-minute windows the spatial detector closes (count, mean and standard
deviation combine exactly into the 5-minute ones), at the same stream positions, so the
readings are aggregated once. Readings too late for the 1-minute windows are then left out of
the 5-minute ones too (they go to the dead letters anyway).
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
    contiguous,
    expand_cols,
    flat_rows,
    select,
)
from models.detectors.calibration import calibrate
from models.indicators.rolling import NO_WINDOW, WindowAggregator, WindowRows

NORM_ALPHA = 0.05


def _direct_scorer(forest: Any, n_features: int) -> Any:
    """A function equal to ``-forest.score_samples(X)`` computed directly: the same per-tree
    path lengths summed in the same order, without joblib dispatch and input validation on
    every call (most of the cost of scoring a few thousand rows). None when the fitted forest
    does not expose what it needs (another scikit-learn version); :meth:`IsolationDetector.
    _fit` also checks it against ``score_samples`` on the training rows before using it."""
    try:
        from sklearn.ensemble._iforest import _average_path_length

        trees = list(forest.estimators_)
        paths = list(forest._decision_path_lengths)
        avgs = list(forest._average_path_length_per_tree)
        if forest._max_features != n_features or len(paths) != len(trees):
            return None
        denom = len(trees) * _average_path_length([forest._max_samples])
    except (AttributeError, ImportError, TypeError, ValueError):
        return None

    # per node: path length + average path length of its samples - 1, the same sum
    # score_samples forms per row (element-wise, so gathering it gives the same values)
    node_depth = [pl + al - 1.0 for pl, al in zip(paths, avgs, strict=True)]

    def score(x: np.ndarray) -> np.ndarray:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        depths = np.zeros(x32.shape[0])
        for tree, nd in zip(trees, node_depth, strict=True):
            depths += nd.take(tree.apply(x32, check_input=False))
        out: np.ndarray = 2 ** (
            -np.divide(depths, denom, out=np.ones_like(depths), where=denom != 0)
        )
        return out

    return score


class IsolationDetector(PerSensorState):
    _state_arrays: ClassVar[tuple[str, ...]] = (
        "fmean",
        "fdev",
        "fcount",
        "last_score",
        "acc_w",
        "acc_cnt",
        "acc_sum",
        "acc_sq",
    )

    def __init__(
        self,
        ids: Any,
        *,
        n_metrics: int,
        window_s: float = 300.0,
        lateness_s: float = 120.0,
        n_estimators: int = 50,
        max_samples: int = 256,
        fit_after: int = 256,
        refit_every_s: float = 21600.0,
        buffer: int = 2048,
        min_sensor_windows: int = 3,
        calibration_scale: float = 1.0,
        score_every: int = 1,
        seed: int = 0,
    ) -> None:
        self.n_metrics = check_int("n_metrics", n_metrics, 1)
        self.n_estimators = check_int("n_estimators", n_estimators, 1)
        self.max_samples = check_int("max_samples", max_samples, 2)
        self.fit_after = check_int("fit_after", fit_after, 2)
        self.refit_every_s = check_positive("refit_every_s", refit_every_s)
        self.buffer = check_int("buffer", buffer, 2)
        self.min_sensor_windows = check_int("min_sensor_windows", min_sensor_windows, 1)
        self.calibration_scale = check_positive("calibration_scale", calibration_scale)
        self.seed = check_int("seed", seed, 0)
        self.score_every = check_int("score_every", score_every, 1)
        self._init_ids(ids)
        n, m = len(self.ids), self.n_metrics
        self.windows = WindowAggregator(
            self.ids,
            n_metrics=m,
            window_s=window_s,
            lateness_s=lateness_s,
            history=1,
            minmax=False,
        )
        self.fmean = np.full((n, 2 * m), np.nan)
        self.fdev = np.zeros((n, 2 * m))
        self.fcount = np.zeros(n, dtype=np.int64)
        self.last_score = np.full(n, np.nan)
        # windows built from closed sub-windows (feed_rows), a small ring per sensor
        # stored ring-slot-major, ``(ring, n[, m])``, exposed as ``(n, ring[, m])`` views
        # (per-sensor snapshots index those); flat positions are slot * n + sensor, so one
        # sub-window of a range of sensors is a contiguous block
        ring = self.windows.slots
        self._acc_w_t = np.full((ring, n), NO_WINDOW, dtype=np.int64)
        self._acc_cnt_t = np.zeros((ring, n, m))
        self._acc_sum_t = np.zeros((ring, n, m))
        self._acc_sq_t = np.zeros((ring, n, m))
        self.acc_w = self._acc_w_t.T
        self.acc_cnt = self._acc_cnt_t.transpose(1, 0, 2)
        self.acc_sum = self._acc_sum_t.transpose(1, 0, 2)
        self.acc_sq = self._acc_sq_t.transpose(1, 0, 2)
        self._fed_upto = NO_WINDOW  # windows with id < this are closed (feed_rows mode)
        self._buf = np.full((self.buffer, 2 * m), np.nan)
        self._buf_n = 0  # rows ever added
        self._train: np.ndarray | None = None
        self._forest: Any = None
        self._scorer: Any = None  # -score_samples without the per-call overhead (_fit)
        self._n_fits = 0
        self._next_refit = np.nan
        self._cal = (0.0, 1.0)

    def params(self) -> dict[str, Any]:
        return {
            "n_metrics": self.n_metrics,
            "window_s": self.windows.window_s,
            "n_estimators": self.n_estimators,
            "max_samples": self.max_samples,
            "fit_after": self.fit_after,
            "refit_every_s": self.refit_every_s,
            "buffer": self.buffer,
            "seed": self.seed,
            **({"score_every": self.score_every} if self.score_every > 1 else {}),
        }

    # --- shared state: windows, buffer, forest (as its training rows) ------------------
    def snapshot(self, sensors: Any = None, *, arrays: bool = False) -> dict[str, Any]:
        snap = super().snapshot(sensors, arrays=arrays)
        snap["shared"]["windows"] = self.windows.snapshot(sensors, arrays=arrays)
        return snap

    def _shared_state(self) -> dict[str, Any]:
        return {
            "buf": self._buf.tolist(),
            "buf_n": self._buf_n,
            "train": None if self._train is None else self._train.tolist(),
            "n_fits": self._n_fits,
            "next_refit": None if np.isnan(self._next_refit) else self._next_refit,
            "fed_upto": int(self._fed_upto),
        }

    def _restore_shared(self, shared: dict[str, Any]) -> None:
        if "windows" in shared:
            self.windows.restore(shared["windows"])
        self._fed_upto = max(self._fed_upto, int(shared.get("fed_upto", NO_WINDOW)))
        if "buf" not in shared or shared["buf_n"] <= self._buf_n:
            return  # keep the more advanced shared state (several gateways restore in turn)
        self._buf = np.asarray(shared["buf"], dtype=np.float64).reshape(self.buffer, -1)
        self._buf_n = int(shared["buf_n"])
        nr = shared.get("next_refit")
        self._next_refit = np.nan if nr is None else float(nr)
        if shared.get("train") is not None and shared["n_fits"] > 0:
            self._n_fits = int(shared["n_fits"]) - 1
            self._fit(np.asarray(shared["train"], dtype=np.float64))

    def _fit(self, train: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        self._train = train
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, train.shape[0]),
            random_state=self.seed + self._n_fits,
        )
        forest.fit(train)
        self._forest = forest
        self._n_fits += 1
        raw = -forest.score_samples(train)
        scorer = _direct_scorer(forest, train.shape[1])
        try:
            same = scorer is not None and np.array_equal(scorer(train), raw)
        except Exception:  # an unexpected scikit-learn internals change: keep the public API
            same = False
        self._scorer = scorer if same else None
        med = float(np.median(raw))
        mad = float(np.median(np.abs(raw - med))) * 1.4826
        self._cal = (med, max(mad, 1e-6))

    @property
    def fitted(self) -> bool:
        return self._forest is not None

    # --- streaming -----------------------------------------------------------------------
    def update(self, batch: Batch) -> DetectorResult:
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(f"IsolationDetector: expected {self.n_metrics} metrics")
        n = len(batch)
        score = np.full(n, np.nan)
        late = np.zeros(n, dtype=bool)
        for sl, closed in self.windows.iter_chunks(batch, late):
            if closed is not None and len(closed):
                self._learn(closed)
            score[sl] = self.last_score[batch.sensor[sl]]
        metric = np.where(np.isnan(score), -1, 0).astype(np.int64)
        return DetectorResult(score, metric)

    def feed_rows(
        self, rows: WindowRows | None, closed_before_s: float, sensor: np.ndarray
    ) -> np.ndarray:
        """Shared-window mode: fold closed sub-windows ``rows`` (e.g. the spatial detector's
        1-minute windows; ``window_s`` must be a multiple of theirs), close the windows that
        end at or before ``closed_before_s`` (every sub-window before it is closed), learn
        from them and return the scores of readings of ``sensor`` at this stream position."""
        m = self.n_metrics
        ws = self.windows.window_s
        ring, n_s = self._acc_w_t.shape
        if rows is not None and len(rows):
            w = np.floor(rows.start / ws).astype(np.int64)
            fi = np.mod(w, ring) * n_s + rows.sensor
            self._acc_w_t.reshape(-1)[fi] = w
            c = rows.count.astype(np.float64)
            some = c > 0  # (usually all: the masked passes are then skipped)
            mu = select(some, rows.mean, 0.0)
            sd = select(some, rows.std, 0.0)
            parts = (
                (self._acc_cnt_t, c),
                (self._acc_sum_t, mu * c),
                (self._acc_sq_t, (sd * sd + mu * mu) * c),
            )
            rng_s = contiguous(rows.sensor) if rows.start[0] == rows.start[-1] else None
            if rng_s is not None:
                # one sub-window of a range of sensors: a contiguous block of one ring slot
                slot0 = int(fi[0]) // n_s
                for acc, v in parts:
                    acc[slot0, rng_s] += v
            elif rows.start[0] == rows.start[-1]:
                # one sub-window per sensor (rows come ordered by window): no position
                # repeats, so a plain fancy add equals np.add.at (which is much slower)
                ff = flat_rows(fi, m)
                for acc, v in parts:
                    acc.reshape(-1)[ff] += v.reshape(-1)
            else:
                ff = flat_rows(fi, m)
                for acc, v in parts:
                    np.add.at(acc.reshape(-1), ff, v.reshape(-1))
        if math.isfinite(closed_before_s):
            cu = math.floor(closed_before_s / ws + 1e-9)
            if cu > self._fed_upto:
                closed = self._close_fed(cu)
                self._fed_upto = cu
                if len(closed):
                    self._learn(closed)
        return self.last_score[sensor]

    def _close_fed(self, cu: int) -> WindowRows:
        m = self.n_metrics
        wid = self._acc_w_t.reshape(-1)
        fi = np.flatnonzero((wid != NO_WINDOW) & (wid < cu))
        if fi.size == 0:
            return WindowRows.empty(m)
        wids = wid[fi]
        s = fi % self._acc_w_t.shape[1]
        order = np.lexsort((s, wids))
        fi, s, wids = fi[order], s[order], wids[order]
        cnt = self._acc_cnt_t.reshape(-1, m).take(fi, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._acc_sum_t.reshape(-1, m).take(fi, axis=0) / cnt
            var = self._acc_sq_t.reshape(-1, m).take(fi, axis=0) / cnt - mean * mean
        mean = np.where(cnt > 0, mean, np.nan)
        std = np.sqrt(np.maximum(np.where(cnt > 0, var, np.nan), 0.0))
        wid[fi] = NO_WINDOW
        ff = flat_rows(fi, m)
        zero = np.zeros(ff.shape[0])
        self._acc_cnt_t.reshape(-1)[ff] = zero
        self._acc_sum_t.reshape(-1)[ff] = zero
        self._acc_sq_t.reshape(-1)[ff] = zero
        nan = np.full_like(mean, np.nan)
        return WindowRows(
            s.astype(np.int64),
            wids.astype(np.float64) * self.windows.window_s,
            cnt.astype(np.int64),
            mean,
            nan,
            nan,
            std,
            nan,
            nan,
            nan,
        )

    def _features(self, rows: WindowRows) -> np.ndarray:
        return np.concatenate([rows.mean, rows.std], axis=1)

    def _learn(self, rows: WindowRows) -> None:
        s = rows.sensor
        f = self._features(rows)
        mu, dev, c = self.fmean[s], self.fdev[s], self.fcount[s]
        sig = 1.2533 * dev + 1e-6 * (1.0 + np.abs(np.nan_to_num(mu)))
        z = np.clip((f - mu) / sig, -20.0, 20.0)
        z = np.where(np.isnan(z), 0.0, z)
        ready = c >= self.min_sensor_windows
        # on a schedule: a sensor's window is scored every `score_every` windows (round robin
        # by window and sensor index, so the forest sees 1/score_every of the rows per close)
        due = ready
        if self.score_every > 1:
            w = np.floor(rows.start / self.windows.window_s).astype(np.int64)
            due = ready & ((w + s) % self.score_every == 0)
        if self._forest is not None and due.any():
            zd = z[due]
            raw = self._scorer(zd) if self._scorer is not None else -self._forest.score_samples(zd)
            u = (raw - self._cal[0]) / self._cal[1]
            self.last_score[s[due]] = calibrate(np.maximum(u, 0.0), self.calibration_scale)
        # learn the per-sensor normalisation (clipped, so one anomaly does not reset it)
        # (the per-sensor rate as a (rows, features) block: a broadcast column is slow)
        a = expand_cols(np.maximum(NORM_ALPHA, 1.0 / (c + 1.0)), f.shape[1])
        first = np.isnan(mu)
        d = np.where(first, 0.0, f - mu)
        dc = np.clip(d, -3 * sig, 3 * sig)
        self.fmean[s] = np.where(first, f, np.where(np.isnan(f), mu, mu + a * dc))
        self.fdev[s] = np.where(np.isnan(f) | first, dev, dev + a * (np.abs(dc) - dev))
        self.fcount[s] = c + 1
        # the training buffer holds rows of sensors whose normalisation has settled
        zr = z[ready]
        k = zr.shape[0]
        if k:
            keep = zr[-self.buffer :]
            pos = (self._buf_n + (k - keep.shape[0]) + np.arange(keep.shape[0])) % self.buffer
            self._buf[pos] = keep
            self._buf_n += k
        t = float(rows.start.max()) + self.windows.window_s
        if (self._forest is None and self._buf_n >= self.fit_after) or (
            self._forest is not None and t >= self._next_refit
        ):
            self._fit(self._buffer_rows())
            self._next_refit = t + self.refit_every_s

    def _buffer_rows(self) -> np.ndarray:
        k = min(self._buf_n, self.buffer)
        return self._buf[:k].copy()
