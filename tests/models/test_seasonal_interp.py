"""The seasonal profile interpolated between slot centres (``interpolate=True``)."""

from __future__ import annotations

import numpy as np

from models.base import Batch
from models.detectors.seasonal import SeasonalDetector
from sensors_sim import profiles

MONDAY = 1783900800.0  # 2026-07-13 00:00 UTC, a Monday


def _ramp_days(days: int, n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Loop flows on weekdays (the simulator's outbound traffic shape: the evening decline
    halves the flow between 23:00 and 24:00), every 30 s, with count noise; one column per
    sensor."""
    rng = np.random.default_rng(seed)
    t = MONDAY + np.arange(0.0, days * 86400.0, 30.0)
    h = (t % 86400.0) / 3600.0
    shape = profiles.traffic(h, np.zeros(h.shape, dtype=np.int64), inbound=False)
    q = shape[:, None] * 3240.0 * (0.8 + 0.4 * rng.random(n))[None, :]
    x = q + np.sqrt((0.03 * q) ** 2 + 12.0 * q) * rng.standard_normal(q.shape)
    return t, x


def _scores(det: SeasonalDetector, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    out = np.empty_like(x)
    for a in range(0, t.shape[0], 20):  # 20 intervals per batch
        tt = np.repeat(t[a : a + 20], n)
        ss = np.tile(np.arange(n), tt.shape[0] // n)
        out[a : a + 20] = det.update(Batch(ss, tt, x[a : a + 20].reshape(-1, 1))).score.reshape(
            -1, n
        )
    return out


def _det(interpolate: bool, n: int = 60) -> SeasonalDetector:
    return SeasonalDetector(
        [f"S{i}" for i in range(n)],
        n_metrics=1,
        metrics=("flow_vph",),
        calibration_scale=2.0,
        interpolate=interpolate,
    )


def test_slot_start_of_a_steep_ramp_scores_low_only_when_interpolated() -> None:
    t, x = _ramp_days(3)
    day3 = (t >= MONDAY + 2 * 86400 + 23 * 3600) & (t < MONDAY + 2 * 86400 + 23 * 3600 + 600)
    flat = _scores(_det(False), t, x)
    interp = _scores(_det(True), t, x)
    # one constant per slot: the first minutes of 23:00 sit in the tail of the slot's hour
    # (it learned the hour's median, half the flow at 23:00)
    assert np.mean(flat[day3] >= 0.7) > 0.03
    assert np.mean(interp[day3] >= 0.7) < 0.005
    # and a real drop (flow down to 30 % for 20 minutes, a closure) is still found through
    # the interpolated profile, at a slot boundary too, as with one constant per slot
    for start_h in (14.5, 15.0):
        cut = t < MONDAY + 2 * 86400 + start_h * 3600
        y = x[~cut].copy()
        y[:40] *= 0.3
        got = []
        for interpolate in (False, True):
            det = _det(interpolate)
            _scores(det, t[cut], x[cut])
            got.append(_scores(det, t[~cut], y)[5:40])
        assert np.mean(got[1] >= 0.7) > 0.95
        assert np.mean(got[1]) >= np.mean(got[0]) - 0.01


def test_interpolation_changes_scoring_only() -> None:
    t, x = _ramp_days(2, n=8)
    a, b = _det(False, 8), _det(True, 8)
    sa, sb = _scores(a, t, x), _scores(b, t, x)
    assert not np.array_equal(sa, sb)
    for name in ("med", "mad", "cnt", "lvl", "dev", "slope"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def test_block_and_gather_paths_agree() -> None:
    """Sensors in order (one contiguous block per round) and shuffled (gathers) give the
    same scores."""
    t, x = _ramp_days(2, n=6, seed=1)
    n = x.shape[1]
    rng = np.random.default_rng(2)
    det_a, det_b = _det(True, n), _det(True, n)
    for a in range(0, t.shape[0], 10):
        tt = np.repeat(t[a : a + 10], n)
        ss = np.tile(np.arange(n), tt.shape[0] // n)
        vv = x[a : a + 10].reshape(-1, 1)
        ra = det_a.update(Batch(ss, tt, vv)).score
        perm = rng.permutation(ss.shape[0])
        perm = perm[np.argsort(tt[perm], kind="stable")]  # keep each sensor's time order
        rb = np.empty_like(ra)
        rb[perm] = det_b.update(Batch(ss[perm], tt[perm], vv[perm])).score
        assert np.array_equal(ra, rb, equal_nan=True)


def test_neighbour_slot_crosses_day_type() -> None:
    det = SeasonalDetector(["S"], n_metrics=1, slots_per_day=24, weekly=True)
    friday = MONDAY + 4 * 86400
    ts = np.array(
        [
            friday + 23.75 * 3600,  # Friday 23:45: towards Saturday 00:00-01:00 (weekend)
            MONDAY + 7 * 86400 + 10 * 60,  # Monday 00:10: back to Sunday 23:00-24:00
            MONDAY + 12.5 * 3600,  # a slot centre: weight 0
            MONDAY + 12.25 * 3600,  # Monday 12:15: towards 11:00-12:00
        ]
    )
    other, w = det.neighbour_slot(ts)
    assert other.tolist() == [24, 47, 13, 11]
    assert np.allclose(w, [0.25, 0.5 - 10 / 60, 0.0, 0.25])


def test_snapshot_without_interpolation_restores_warm() -> None:
    """``interpolate`` changes scoring only: a snapshot taken with the constant profile (or by
    code from before the setting, without the key) restores into an interpolating detector,
    which then scores as one that interpolated all along once its smoothed z (the only
    scoring state) has forgotten the other history (half-life 45 s)."""
    t, x = _ramp_days(2, n=4)
    cut = t < MONDAY + 86400 + 22.5 * 3600
    a, b = _det(False, 4), _det(True, 4)
    _scores(a, t[cut], x[cut])
    _scores(b, t[cut], x[cut])
    snap = a.snapshot()
    old = {**snap, "params": {k: v for k, v in snap["params"].items() if k != "interpolate"}}
    for s in (snap, old):
        c = _det(True, 4)
        c.restore(s)
        assert np.array_equal(c.med, b.med, equal_nan=True)
    sc, sb = _scores(c, t[~cut], x[~cut]), _scores(b, t[~cut], x[~cut])
    assert np.allclose(sc[60:], sb[60:], rtol=0.0, atol=1e-9)
