"""The throughput shortcuts give exactly the results of the plain code they stand in for.

Each fast path (sweep batches, slices for ranges of sensors, skipped uniform masks, column-wise
reductions, the direct IsolationForest scorer) is checked bit for bit against a plain numpy
reference on random and adversarial inputs (NaN, -0.0, ties, repeated sensors).
"""

from __future__ import annotations

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
    select,
    sweep_length,
)
from models.detectors.calibration import calibrate, combine_calibrate
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
