"""The throughput shortcuts give exactly the results of the plain code they stand in for.

Each fast path (sweep batches, slices for ranges of sensors, skipped uniform masks, column-wise
reductions, the direct IsolationForest scorer) is checked bit for bit against a plain numpy
reference on random and adversarial inputs (NaN, -0.0, ties, repeated sensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.base import (
    Batch,
    all_rows,
    any_rows,
    contiguous,
    expand_cols,
    flat_rows,
    occurrence_rounds,
    put_rows,
    select,
    sweep_length,
    take_rows,
)
from models.detectors import seasonal
from models.detectors.calibration import calibrate, combine_calibrate, smooth_weight
from models.detectors.isolation import IsolationDetector
from models.detectors.spatial import nan_median_rows
from models.indicators.rolling import WindowAggregator


def _rounds_reference(sensor: np.ndarray) -> list[np.ndarray]:
    seen: dict[int, int] = {}
    rank = []
    for s in sensor.tolist():
        rank.append(seen.get(s, 0))
        seen[s] = rank[-1] + 1
    r = np.array(rank, dtype=np.int64)
    return [np.flatnonzero(r == i) for i in range(int(r.max()) + 1)] if len(r) else []


def _cases(rng: np.random.Generator) -> list[np.ndarray]:
    out = [
        np.tile(np.arange(7), 3),
        np.tile(rng.permutation(9), 4),
        np.array([3]),
        np.array([1, 1, 1]),
        np.array([2, 1, 2, 1, 2]),
        np.array([1, 2, 1, 1, 2, 1]),
        np.array([5, 4, 3]),
        np.array([0, 1, 0, 1, 2]),
    ]
    for _ in range(300):
        n = int(rng.integers(1, 30))
        out.append(rng.integers(0, int(rng.integers(1, 10)), n))
        head = rng.permutation(12)[: int(rng.integers(1, 6))]
        out.append(np.tile(head, int(rng.integers(1, 4))))
    return out


def test_occurrence_rounds_equal_reference() -> None:
    rng = np.random.default_rng(0)
    for sensor in _cases(rng):
        got = occurrence_rounds(sensor)
        want = _rounds_reference(sensor)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(np.arange(sensor.shape[0])[g], w), sensor


def test_flat_rows_equal_broadcast() -> None:
    for dt in (np.int64, np.int32):
        for m in (1, 2, 3, 8):
            idx = np.array([3, 0, 7, 7, 2], dtype=dt)
            want = (idx[:, None] * m + np.arange(m)).reshape(-1)
            got = flat_rows(idx, m)
            assert np.array_equal(got, want)
            assert got.dtype == want.dtype


def test_expand_cols_equals_broadcast() -> None:
    v = np.array([1.5, -0.0, np.nan, 3.0])
    for m in (1, 3):
        got = expand_cols(v, m)
        assert got.flags.c_contiguous
        assert np.array_equal(got, np.broadcast_to(v[:, None], (4, m)), equal_nan=True)


def test_sweep_length_and_contiguous() -> None:
    assert sweep_length(np.tile(np.array([4, 2, 9]), 3)) == 3
    assert sweep_length(np.array([4, 2, 9])) == 3
    assert sweep_length(np.array([4, 2, 4, 2, 4])) is None  # not whole sweeps
    assert sweep_length(np.array([4, 4, 2, 4, 4, 2])) is None  # repeats within a sweep
    assert sweep_length(np.array([1, 2, 1, 3])) is None  # different sweeps
    assert contiguous(np.arange(5, 9)) == slice(5, 9)
    assert contiguous(np.array([5, 7, 6, 8])) is None
    assert contiguous(np.array([5, 5, 7])) is None
    assert contiguous(np.array([3])) == slice(3, 4)


def test_row_reductions_and_select_equal_numpy() -> None:
    rng = np.random.default_rng(1)
    for m in (1, 2, 3, 8, 9):
        for p in (0.0, 0.3, 1.0):
            a = rng.random((50, m)) < p
            assert np.array_equal(any_rows(a), a.any(axis=1))
            assert np.array_equal(all_rows(a), a.all(axis=1))
    x = rng.normal(size=(40, 3))
    y = rng.normal(size=(40, 3))
    ints = rng.integers(0, 5, (40, 3))
    for cond in (np.ones((40, 3), bool), np.zeros((40, 3), bool), rng.random((40, 3)) < 0.5):
        for a, b in ((x, y), (x, np.nan), (0.0, y), (ints, 0.0), (ints, ints)):
            want = np.where(cond, a, b)
            got = select(cond, a, b)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want, equal_nan=True)
    col = np.ones((40, 1), bool)
    assert select(col, x, y).shape == (40, 3)


def test_combine_calibrate_equals_argmax() -> None:
    rng = np.random.default_rng(2)
    vals = np.array([np.nan, 0.0, -0.0, 1.0, -1.0, 2.0, 3.5, np.inf, -np.inf])
    for m in range(1, 11):
        u = rng.choice(vals, size=(200, m))
        a = np.abs(u)
        filled = np.where(np.isnan(a), -1.0, a)
        metric = np.argmax(filled, axis=1)
        best = filled[np.arange(200), metric]
        score, got_metric = combine_calibrate(u, 2.0)
        want = np.where(best < 0, np.nan, calibrate(best, 2.0))
        assert np.array_equal(score, want, equal_nan=True)
        assert np.array_equal(got_metric, np.where(best < 0, -1, metric))


def test_nan_median_rows_equals_nanmedian() -> None:
    rng = np.random.default_rng(3)
    for k in range(1, 12):
        a = rng.normal(size=(60, 3, k))
        a[rng.random(a.shape) < 0.3] = np.nan
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if np.isnan(
            a
        ).all(axis=-1).any() else _nullcontext():
            want = np.nanmedian(a, axis=-1)
        assert np.allclose(nan_median_rows(a), want, equal_nan=True, rtol=0, atol=1e-12)
        clean = rng.normal(size=(60, 3, k))
        assert np.allclose(nan_median_rows(clean), np.median(clean, axis=-1), rtol=0, atol=1e-12)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("ordered", [False, True])
def test_window_sums_of_a_sweep_batch_equal_the_general_path(ordered: bool) -> None:
    """Sweep batches take a shortcut in ``WindowAggregator._accumulate``; the same readings
    in an order that is not a sweep (each sensor's readings in the same relative order) take
    the bincount path. Sums, counts and every closed-window statistic must be identical."""
    rng = np.random.default_rng(4)
    n, m = 6, 3
    ids = [f"S{i}" for i in range(n)]
    a = WindowAggregator(ids, n_metrics=m, window_s=60.0, lateness_s=60.0, history=4)
    b = WindowAggregator(ids, n_metrics=m, window_s=60.0, lateness_s=60.0, history=4)
    order = np.arange(n) if ordered else rng.permutation(n)  # ordered: one strided block
    for step in range(40):
        reps = 2
        sensor = np.tile(order, reps)
        ts = np.repeat(1000.0 + 20.0 * (reps * step + np.arange(reps)), n)
        vals = rng.normal(100, 10, (n * reps, m)) * rng.choice([1.0, -1.0], (n * reps, m))
        vals[rng.random(vals.shape) < 0.1] = np.nan
        vals[rng.random(vals.shape) < 0.05] = -0.0
        # the same readings, not a sweep: move the second reading of one sensor earlier
        # while keeping every sensor's own order
        perm = np.arange(n * reps)
        perm = np.concatenate([[perm[0]], [perm[n]], perm[1:n], perm[n + 1 :]])
        assert sweep_length(sensor[perm]) is None
        ra = a.update(Batch(sensor, ts, vals))
        rb = b.update(Batch(sensor[perm], ts[perm], vals[perm]))
        assert np.array_equal(ra.late, rb.late[np.argsort(perm)])
        for f in ("sensor", "start", "count", "mean", "min", "max", "std", "ewma", "p50", "p90"):
            assert np.array_equal(getattr(ra.rows, f), getattr(rb.rows, f), equal_nan=True), f
        for f in ("cnt", "sum", "sumsq"):
            arr = getattr(a, f)
            assert np.array_equal(arr, getattr(b, f)), f
            assert not ((arr == 0) & np.signbit(arr)).any(), f  # no -0.0 in the sums


def test_direct_forest_scorer_equals_score_samples() -> None:
    det = IsolationDetector([f"S{i}" for i in range(4)], n_metrics=3, n_estimators=20,
                            max_samples=64, fit_after=32, buffer=128)
    rng = np.random.default_rng(5)
    det._fit(rng.normal(size=(128, 6)))
    assert det._scorer is not None
    x = rng.normal(size=(500, 6)) * rng.choice([1.0, 10.0], (500, 6))
    assert np.array_equal(det._scorer(x), -det._forest.score_samples(x))


class _SelectSeasonal(seasonal.SeasonalDetector):
    """The seasonal round before the counter shortcuts and shared sub-expressions (every
    mask computed and passed through ``select``): the reference the fast round must equal."""

    def _round(self, s: np.ndarray, t: np.ndarray, x: np.ndarray, slot: np.ndarray) -> np.ndarray:
        # one vectorised step for readings of distinct sensors; (sensor, slot) state is read
        # and written through a flat index (much cheaper than 2-D fancy indexing), per-sensor
        # state through slices when the round covers a range of sensors; np.where passes are
        # skipped when their condition is uniform (``select``)
        m = self.n_metrics
        sl = contiguous(s)
        fs = flat_rows(s, m) if sl is None else slice(sl.start * m, sl.stop * m)
        # a range of sensors in one profile slot (the usual round): (sensor, slot) state is
        # one contiguous block of the slot-major arrays, read and written without an index
        blk = int(slot[0]) if sl is not None and bool((slot == slot[0]).all()) else None
        if blk is None:
            fi = slot * len(self.ids) + s
            ff = flat_rows(fi, m)
        # the metric floors as a (k, m) block: a (m,) row broadcast over k rows is an order
        # of magnitude slower than an element-wise op on equal shapes
        ft = self.__dict__.get("_floor_tile")
        if ft is None or ft.shape[0] < s.shape[0]:
            ft = self.__dict__["_floor_tile"] = np.tile(self._floor, (len(self.ids), 1))
        floor_abs = ft[: s.shape[0]]
        if blk is not None:
            med = self._med_t[blk, sl].copy()
            mad = self._mad_t[blk, sl].copy()
            cnt = self._cnt_t[blk, sl].copy()
        else:
            med = self._med_t.reshape(-1, m).take(fi, axis=0)
            mad = self._mad_t.reshape(-1, m).take(fi, axis=0)
            cnt = self._cnt_t.reshape(-1, m).take(fi, axis=0)
        lvl = take_rows(self.lvl, s, sl)
        slope = take_rows(self.slope, s, sl)
        dev = take_rows(self.dev, s, sl)
        lcnt = take_rows(self.lcnt, s, sl)
        last = take_rows(self.last_ts, s, sl)
        first_seen = np.isnan(last)
        any_first = bool(first_seen.any())
        dt = np.where(first_seen, 0.0, t - last) if any_first else t - last
        # per-reading factors as (k, m) blocks: an op broadcasting a (k, 1) column runs
        # several times slower than one on equal shapes
        dtp = expand_cols(np.maximum(dt, 0.0), m)
        has = ~np.isnan(x)
        if self.skip:
            has &= self._active
        all_has = bool(has.all())
        started = lcnt > 0
        pred = select(started, lvl + slope * dtp, x)
        warm = cnt >= self.min_count
        all_warm = bool(warm.all())
        none_warm = not all_warm and not warm.any()
        if all_warm:
            base = med
            sig = seasonal.MAD_TO_SIGMA * mad
        elif none_warm:
            base = pred
            sig = seasonal.MEANDEV_TO_SIGMA * dev
        else:
            base = np.where(warm, med, pred)
            sig = np.where(warm, seasonal.MAD_TO_SIGMA * mad, seasonal.MEANDEV_TO_SIGMA * dev)
        sig += self.scale_floor * np.abs(base) + floor_abs
        scorable = warm | (lcnt >= self.min_count)
        if not all_has:
            scorable &= has
        z = np.minimum(np.maximum((x - base) / sig, -seasonal.Z_CLIP), seasonal.Z_CLIP)
        # exponential smoothing of z in event time, then standardisation of the smoothed value
        a1 = smooth_weight(dt, self.smooth_halflife_s)
        if any_first:
            a1[first_seen] = 1.0
        a = expand_cols(a1, m)
        zs_old = take_rows(self.zs, s, sl)
        zs_new = select(np.isnan(zs_old), z, zs_old + a * (z - zs_old))
        zs_new = select(scorable, zs_new, zs_old)
        a_eff = np.maximum(a1, 1e-6)
        u = zs_new * expand_cols(np.sqrt((2.0 - a_eff) / a_eff), m)
        out = select(scorable, u, np.nan)  # calibrated after the max over metrics
        put_rows(self.zs, fs, zs_new)

        # --- learn: short-term level (Holt, clipped) -----------------------------------
        eta_l = np.maximum(1.0 / (lcnt + 1.0), expand_cols(smooth_weight(dt, self.level_halflife_s), m))
        lim = seasonal.LEVEL_CLIP * (seasonal.MEANDEV_TO_SIGMA * dev + self.scale_floor * np.abs(pred) + floor_abs)
        res = x - pred
        rc = np.minimum(np.maximum(res, -lim), lim)
        new_lvl = pred + eta_l * rc
        trend = lcnt > 1
        if trend.any():
            new_slope = select(
                trend, slope + 0.5 * eta_l * eta_l * rc / np.maximum(dtp, 1.0), 0.0
            )
        else:
            new_slope = np.zeros_like(rc)
        if started.any():
            new_dev = select(started, dev + eta_l * (np.minimum(np.abs(res), lim) - dev), 0.0)
        else:
            new_dev = np.zeros_like(rc)

        # --- learn: stochastic-approximation median and MAD of the slot --------------------
        first = cnt == 0
        all_first = bool(first.all())
        if all_first:
            new_med = x
            new_mad = dev * (seasonal.MEANDEV_TO_SIGMA / seasonal.MAD_TO_SIGMA)
        else:
            eta = np.maximum(self.learning_rate, 1.0 / (cnt + 1.0))
            step = eta * (
                # (med is NaN only where cnt == 0, and those entries take the `first` branch)
                seasonal.MAD_TO_SIGMA * mad + self.scale_floor * np.abs(med) + floor_abs
            )
            r0 = x - med
            new_med = select(first, x, med + step * np.sign(r0))
            new_mad = select(
                first,
                dev * (seasonal.MEANDEV_TO_SIGMA / seasonal.MAD_TO_SIGMA),
                np.maximum(mad + step * np.sign(np.abs(r0) - mad), 0.0),
            )
        if not all_has:
            new_lvl = np.where(has, new_lvl, lvl)
            new_slope = np.where(has, new_slope, slope)
            new_dev = np.where(has, new_dev, dev)
            new_med = np.where(has, new_med, med)
            new_mad = np.where(has, new_mad, mad)
        ix = s if sl is None else sl
        put_rows(self.lvl, fs, new_lvl)
        put_rows(self.slope, fs, new_slope)
        put_rows(self.dev, fs, new_dev)
        put_rows(self.lcnt, fs, lcnt + has)
        if blk is not None:
            self._med_t[blk, sl] = new_med
            self._mad_t[blk, sl] = new_mad
            self._cnt_t[blk, sl] = cnt + has
        else:
            put_rows(self._med_t, ff, new_med)
            put_rows(self._mad_t, ff, new_mad)
            put_rows(self._cnt_t, ff, cnt + has)
        self.last_ts[ix] = (
            np.where(any_rows(has), np.fmax(last, t), last) if not all_has else np.fmax(last, t)
        )
        return out


def _seasonal_stream(rng: np.random.Generator, n: int, steps: int) -> list[Batch]:
    out = []
    t = 1e6
    for _ in range(steps):
        kind = int(rng.integers(0, 4))
        if kind == 0:  # sweeps of every sensor (one slot block per round)
            s = np.tile(np.arange(n), 3)
        elif kind == 1:  # random, repeated sensors
            s = rng.integers(0, n, 50)
        elif kind == 2:  # sweeps of a sub-range
            s = np.tile(np.arange(5, n - 5), 2)
        else:  # permuted sweeps
            s = np.tile(rng.permutation(n)[: int(rng.integers(1, n))], 2)
        if rng.random() < 0.3:  # out of order, across slots
            ts = t + np.sort(rng.uniform(-100, 100, s.shape[0]))
        else:
            ts = np.full(s.shape[0], t)
        x = rng.normal(100, 20, (s.shape[0], 3)) * rng.choice(
            [1.0, 0.0, -1.0], (s.shape[0], 3), p=[0.9, 0.05, 0.05]
        )
        r = rng.random(x.shape)
        x[r < 0.1] = np.nan
        x[(r > 0.1) & (r < 0.12)] = -0.0
        if rng.random() < 0.3:  # no missing value at all
            x = np.where(np.isnan(x), 5.0, x)
        t += float(rng.choice([30.0, 3600.0, 0.0, 20000.0]))
        out.append(Batch(s.astype(np.int64), ts, x))
    return out


def test_seasonal_round_equals_select_reference() -> None:
    """Scores, metrics and every state array (NaN and the sign of zero included) of the fast
    seasonal round equal the select-based reference: warm, cold and mixed profile slots,
    fresh and started levels, missing values, skipped metrics, ranges, repeats and gaps."""
    rng = np.random.default_rng(6)
    ids = [f"S{i}" for i in range(40)]
    for case in range(16):
        kw: dict[str, Any] = dict(
            n_metrics=3,
            metrics=("flow_vph", "speed_kmh", "occupancy_pct"),
            min_count=int(rng.integers(1, 8)),
            slots_per_day=int(rng.choice([1, 24, 96])),
            utc_offset_h=8.0,
            smooth_halflife_s=float(rng.choice([0.0, 45.0])),
            learning_rate=float(rng.choice([0.02, 0.5, 1.0])),
            skip=(1,) if case % 5 == 0 else (),
        )
        fast = seasonal.SeasonalDetector(ids, **kw)
        ref = _SelectSeasonal(ids, **kw)
        for step, b in enumerate(_seasonal_stream(rng, len(ids), 30)):
            with np.errstate(all="ignore"):
                rf = fast.update(b)
                rr = ref.update(b)
            assert np.array_equal(rf.score, rr.score, equal_nan=True), (case, step)
            assert np.array_equal(rf.metric, rr.metric), (case, step)
            for name in fast._state_arrays:
                a, w = getattr(fast, name), getattr(ref, name)
                assert np.array_equal(a, w, equal_nan=True), (case, step, name)
                if a.dtype.kind == "f":
                    assert np.array_equal(np.signbit(a), np.signbit(w)), (case, step, name)


def test_spatial_sweep_scoring_equals_the_gather_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweep chunks broadcast the per-sensor state instead of gathering it; forcing the
    gather path (no sweep recognised) must give the same scores and state, bit for bit."""
    from models.detectors import spatial

    rng = np.random.default_rng(7)
    n = 12
    ids = [f"S{i}" for i in range(n)]
    nb = np.array([[(i + 1) % n, (i + 2) % n, (i - 1) % n, -1] for i in range(n)])
    batches = []
    t = 1000.0
    for step in range(120):
        reps = int(rng.integers(1, 4))
        s = np.tile(np.arange(n) if step % 3 else np.arange(2, n - 3), reps)
        k = s.shape[0] // reps
        ts = np.repeat(t + 20.0 * np.arange(reps), k)
        x = rng.normal(100, 10, (s.shape[0], 3)) * rng.choice([1.0, -1.0], (s.shape[0], 3))
        x[rng.random(x.shape) < 0.05] = np.nan
        x[rng.random(x.shape) < 0.02] = -0.0
        batches.append(Batch(s.astype(np.int64), ts, x))
        t += 20.0 * reps

    def run() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        det = spatial.SpatialDetector(
            ids, n_metrics=3, neighbours=nb, window_s=60.0, lateness_s=30.0, min_count=2,
            skip=(2,),
        )
        out = []
        for b in batches:
            r = det.update(b)
            out += [r.score, r.metric]
        return out, {f: getattr(det, f).copy() for f in det._state_arrays}

    fast, fast_state = run()
    monkeypatch.setattr(spatial, "sweep_length", lambda a: None)
    slow, slow_state = run()
    for a, b in zip(fast, slow, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    for f, a in fast_state.items():
        assert np.array_equal(a, slow_state[f], equal_nan=True), f


def test_risk_observe_sweep_equals_the_sorted_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DistrictRisk.observe`` takes the last sweep when times are ordered; the sorted path
    (forced) must record the same score and time per sensor, ties going to the later one."""
    from models import risk as risk_mod
    from models.synthetic import loop_table

    table = loop_table(30, n_districts=3)
    rng = np.random.default_rng(8)
    batches = []
    for step in range(40):
        reps = int(rng.integers(1, 4))
        s = np.tile(rng.permutation(30)[: int(rng.integers(1, 31))], reps)
        k = s.shape[0] // reps
        gaps = rng.choice([0.0, 10.0], reps)  # equal times across sweeps: ties
        ts = np.repeat(100.0 * step + np.cumsum(gaps), k)
        if step % 7 == 0:
            ts = ts[::-1].copy()  # decreasing: not the sweep shortcut
        v = rng.random(s.shape[0])
        v[rng.random(v.shape) < (0.3 if step % 5 == 0 else 0.0)] = np.nan
        batches.append((s.astype(np.int64), ts, v))

    def run() -> tuple[np.ndarray, np.ndarray]:
        r = risk_mod.DistrictRisk(table, weights={"traffic": 1.0}, cutoffs={}, top_k=3)
        for s, ts, v in batches:
            r.observe(s, ts, v)
        return r.score.copy(), r.score_ts.copy()

    fast = run()
    monkeypatch.setattr(risk_mod, "sweep_length", lambda a: None)
    slow = run()
    assert np.array_equal(fast[0], slow[0], equal_nan=True)
    assert np.array_equal(fast[1], slow[1], equal_nan=True)
