"""The contract every detector honours: no input mutation, causal (scores on a prefix equal
the first scores on the whole stream, whatever the batch cuts), deterministic by seed,
snapshot round-trip through JSON, NaN and gaps handled."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from models.base import Batch, Detector
from models.detectors.isolation import IsolationDetector
from models.detectors.seasonal import SeasonalDetector
from models.detectors.spatial import SpatialDetector
from models.detectors.threshold import ThresholdDetector
from models.detectors.zscore import RollingZScore

IDS = [f"S{i}" for i in range(6)]
METRICS = ("flow_vph", "speed_kmh", "occupancy_pct")


def _nb() -> np.ndarray:
    n = len(IDS)
    return np.array([[(i + 1) % n, (i + 2) % n, (i - 1) % n] for i in range(n)])


FACTORIES: dict[str, Callable[[int], Any]] = {
    "seasonal": lambda seed: SeasonalDetector(
        IDS, n_metrics=3, metrics=METRICS, min_count=5, slots_per_day=24, utc_offset_h=8.0
    ),
    "seasonal_interp": lambda seed: SeasonalDetector(
        IDS,
        n_metrics=3,
        metrics=METRICS,
        min_count=5,
        slots_per_day=48,
        utc_offset_h=8.0,
        interpolate=True,
    ),
    "spatial": lambda seed: SpatialDetector(
        IDS,
        n_metrics=3,
        metrics=METRICS,
        neighbours=_nb(),
        window_s=60.0,
        lateness_s=60.0,
        min_count=3,
    ),
    "isolation": lambda seed: IsolationDetector(
        IDS,
        n_metrics=3,
        window_s=120.0,
        lateness_s=60.0,
        n_estimators=10,
        max_samples=32,
        fit_after=30,
        refit_every_s=1800.0,
        buffer=64,
        seed=seed,
    ),
    "zscore": lambda seed: RollingZScore(IDS, n_metrics=3, span=20, min_count=5),
    "threshold": lambda seed: ThresholdDetector(IDS, metrics=METRICS),
}


def stream(seed: int = 3, n_ticks: int = 240) -> Batch:
    """Readings of 6 sensors every 30 s with jitter, shuffled within ticks, a few late ones,
    NaN values, a sensor gap and an anomaly."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_ticks):
        order = rng.permutation(len(IDS))
        for s in order:
            if s == 2 and 100 <= k < 130:  # a gap
                continue
            t = 1_700_000_000.0 + 30.0 * k + rng.uniform(0, 5)
            base = np.array([1000.0 + 300 * np.sin(k / 40), 50.0, 10.0]) * (1 + 0.02 * s)
            x = base * (1 + 0.03 * rng.standard_normal(3))
            if s == 4 and 180 <= k < 190:
                x[1] = 8.0  # anomaly
            if rng.random() < 0.03:
                x[rng.integers(0, 3)] = np.nan
            rows.append((s, t, x))
    # a few out-of-order readings: swap neighbours
    for i in range(50, len(rows) - 1, 97):
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
    s = np.array([r[0] for r in rows])
    t = np.array([r[1] for r in rows])
    v = np.vstack([r[2] for r in rows])
    return Batch.of(s, t, v, seq=np.arange(len(rows)))


def run(det: Any, batch: Batch, cuts: list[int]) -> np.ndarray:
    out = []
    bounds = [0, *cuts, len(batch)]
    for a, b in itertools.pairwise(bounds):
        out.append(det.update(batch.take(slice(a, b))).score)
    return np.concatenate(out)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


@pytest.fixture(params=sorted(FACTORIES))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_protocol(name: str) -> None:
    assert isinstance(FACTORIES[name](0), Detector)


def test_no_input_mutation(name: str) -> None:
    b = stream()
    copies = [x.copy() for x in (b.sensor, b.ts, b.values)]
    FACTORIES[name](0).update(b)
    for orig, c in zip((b.sensor, b.ts, b.values), copies, strict=True):
        assert np.array_equal(orig, c, equal_nan=True)


def test_scores_in_unit_interval(name: str) -> None:
    r = FACTORIES[name](0).update(stream())
    sc = r.score[~np.isnan(r.score)]
    assert sc.size > 0
    assert ((sc >= 0) & (sc <= 1)).all()
    assert r.metric.shape == r.score.shape


def test_causal_prefix_and_batch_independent(name: str) -> None:
    b = stream()
    whole = run(FACTORIES[name](0), b, [])
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = sorted(set(rng.integers(1, len(b), 12).tolist()))
        assert same(run(FACTORIES[name](0), b, cuts), whole)
    k = len(b) * 2 // 3
    prefix = run(FACTORIES[name](0), b.take(slice(0, k)), [k // 3])
    assert same(prefix, whole[:k])


def test_deterministic_by_seed(name: str) -> None:
    b = stream()
    assert same(run(FACTORIES[name](7), b, [500]), run(FACTORIES[name](7), b, [500]))


def test_snapshot_round_trip(name: str) -> None:
    b = stream()
    k = len(b) // 2
    whole = run(FACTORIES[name](1), b, [k])
    first = FACTORIES[name](1)
    first.update(b.take(slice(0, k)))
    snap = orjson.loads(orjson.dumps(first.snapshot()))
    second = FACTORIES[name](1)
    second.restore(snap)
    assert same(second.update(b.take(slice(k, None))).score, whole[k:])


def test_snapshot_per_gateway(name: str) -> None:
    """State restored from per-gateway snapshots equals the whole state."""
    b = stream()
    k = len(b) // 2
    whole = run(FACTORIES[name](1), b, [k])
    first = FACTORIES[name](1)
    first.update(b.take(slice(0, k)))
    parts = [
        orjson.loads(orjson.dumps(first.snapshot(IDS[:3]))),
        orjson.loads(orjson.dumps(first.snapshot(IDS[3:]))),
    ]
    second = FACTORIES[name](1)
    for p in parts:
        second.restore(p)
    assert same(second.update(b.take(slice(k, None))).score, whole[k:])


def test_nan_and_empty_batches(name: str) -> None:
    det = FACTORIES[name](0)
    empty = Batch.of(np.zeros(0), np.zeros(0), np.zeros((0, 3)))
    assert det.update(empty).score.shape == (0,)
    allnan = Batch.of([0, 1], [1.7e9, 1.7e9], np.full((2, 3), np.nan))
    r = det.update(allnan)
    assert np.isnan(r.score).all()
    r = det.update(stream())
    assert np.isfinite(r.score[~np.isnan(r.score)]).all()


def test_detects_the_injected_anomaly() -> None:
    b = stream()
    r = FACTORIES["seasonal"](0).update(b)
    hit = (b.sensor == 4) & (b.values[:, 1] == 8.0)
    assert np.nanmin(r.score[hit]) > 0.9
    assert np.nanquantile(r.score[~hit], 0.99) < 0.9


def test_bad_hyperparameters_are_named() -> None:
    with pytest.raises(ValueError, match=r"learning_rate must be in \(0, 1\], got 1.5"):
        SeasonalDetector(IDS, n_metrics=3, learning_rate=1.5)
    with pytest.raises(ValueError, match="min_count must be an integer >= 1, got 0"):
        SeasonalDetector(IDS, n_metrics=3, min_count=0)


def test_isolation_on_a_schedule_is_batch_independent_and_round_trips() -> None:
    """With ``score_every`` > 1 the forest scores each sensor every k-th window: the
    scores still do not depend on batch cuts, and snapshots carry the schedule."""

    def make() -> IsolationDetector:
        return IsolationDetector(
            IDS,
            n_metrics=3,
            window_s=120.0,
            lateness_s=60.0,
            n_estimators=10,
            max_samples=32,
            fit_after=30,
            refit_every_s=1800.0,
            buffer=64,
            score_every=3,
            seed=2,
        )

    b = stream()
    whole = run(make(), b, [])
    assert np.isfinite(whole).sum() > 100
    assert same(run(make(), b, [17, 400, 401, 900]), whole)
    k = len(b) // 2
    first = make()
    first.update(b.take(slice(0, k)))
    second = make()
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    assert same(second.update(b.take(slice(k, None))).score, whole[k:])
