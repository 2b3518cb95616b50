"""Mapping standardised residuals to scores in [0, 1].

``score = (2 / pi) * arctan(|u| / scale)`` is the two-sided distribution function of a
half-Cauchy with ``scale``: a heavy-tailed null that suits robust residuals of real sensors
(a Gaussian null calls far too much anomalous). Unlike ``erf``, it keeps distinguishing
large residuals in float64 (up to |u| ~ 1e15), so rankings by score survive being written out.

>>> round(float(calibrate(np.array([0.0, 1.0, np.inf]))[1]), 3)
0.5
"""

from __future__ import annotations

import numpy as np

TWO_OVER_PI = 2.0 / np.pi


def calibrate(u: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return TWO_OVER_PI * np.arctan(np.abs(u) / scale)


def uncalibrate(score: float, scale: float = 1.0) -> float:
    """The |u| at which :func:`calibrate` reaches ``score`` (for reading thresholds)."""
    return float(np.tan(score / TWO_OVER_PI) * scale)


def smooth_weight(dt: np.ndarray, halflife_s: float) -> np.ndarray:
    """Weight of a new observation after ``dt`` seconds in an exponential smoother."""
    if halflife_s <= 0:
        return np.ones_like(dt)
    return 1.0 - np.exp2(-np.maximum(dt, 0.0) / halflife_s)


def combine_metrics(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-reading max over metrics (NaN-aware) and the argmax column (-1 where all NaN)."""
    filled = np.where(np.isnan(scores), -1.0, scores)
    metric = np.argmax(filled, axis=1)
    best = filled[np.arange(scores.shape[0]), metric]
    none = best < 0
    return np.where(none, np.nan, best), np.where(none, -1, metric).astype(np.int64)


def combine_calibrate(u: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`combine_metrics` of ``calibrate(u, scale)`` (NaN = not scored), computed on
    ``|u|`` first: calibration is monotonic, so only the best metric is calibrated."""
    a = np.abs(u)
    nan = np.isnan(a)
    filled = np.where(nan, -1.0, a) if nan.any() else a
    m = filled.shape[1]
    if 1 <= m <= 8:  # argmax column by column: numpy's reduction over a short axis is slow
        best = filled[:, 0].copy()
        metric = np.zeros(filled.shape[0], dtype=np.int64)
        for j in range(1, m):
            col = filled[:, j]
            # where(col > best, j, metric) without a masked pass (slow on mixed masks): j is
            # above every column index so far; strict >, so the first maximum wins
            metric = np.maximum(metric, (col > best) * j)
            np.maximum(best, col, out=best)
    else:
        metric = np.argmax(filled, axis=1)
        best = np.take_along_axis(filled, metric[:, None], axis=1)[:, 0]
    none = best < 0
    score = calibrate(best, scale)
    if none.any():
        score[none] = np.nan
        metric = np.where(none, -1, metric)
    return score, metric.astype(np.int64)
