"""Baseline 2 for the evaluation: a plain rolling z-score per sensor and metric.

Exponentially weighted mean and variance over roughly the last ``span`` readings;
``z = (x - mean) / std`` scored with the same calibration as the real detectors. No seasonality,
no robustness, no smoothing -- the textbook detector the others are compared against.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from models.base import (
    Batch,
    DetectorResult,
    ModelsError,
    PerSensorState,
    check_int,
    occurrence_rounds,
)
from models.detectors.calibration import calibrate, combine_metrics


class RollingZScore(PerSensorState):
    """>>> d = RollingZScore(["S"], n_metrics=1, span=10)
    >>> r = d.update(Batch.of([0] * 30, np.arange(30.0), [1.0, 2.0] * 14 + [1.5, 9.0]))
    >>> bool(r.score[-1] > r.score[-2])
    True
    """

    _state_arrays: ClassVar[tuple[str, ...]] = ("mean", "var", "count")

    def __init__(
        self,
        ids: Any,
        *,
        n_metrics: int,
        span: int = 60,
        min_count: int = 10,
        calibration_scale: float = 1.0,
    ) -> None:
        self.n_metrics = check_int("n_metrics", n_metrics, 1)
        self.span = check_int("span", span, 2)
        self.min_count = check_int("min_count", min_count, 1)
        self.calibration_scale = float(calibration_scale)
        self._init_ids(ids)
        n = len(self.ids)
        self.mean = np.zeros((n, n_metrics))
        self.var = np.zeros((n, n_metrics))
        self.count = np.zeros((n, n_metrics), dtype=np.int64)

    def params(self) -> dict[str, Any]:
        return {"n_metrics": self.n_metrics, "span": self.span, "min_count": self.min_count}

    def update(self, batch: Batch) -> DetectorResult:
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(f"RollingZScore: expected {self.n_metrics} metrics")
        n = len(batch)
        scores = np.full((n, self.n_metrics), np.nan)
        alpha = 2.0 / (self.span + 1.0)
        for r in occurrence_rounds(batch.sensor):
            s = batch.sensor[r]
            x = batch.values[r]
            has = ~np.isnan(x)
            mu, var, c = self.mean[s], self.var[s], self.count[s]
            with np.errstate(invalid="ignore", divide="ignore"):
                z = (x - mu) / np.sqrt(var + 1e-12)
            scores[r] = np.where(
                has & (c >= self.min_count), calibrate(z, self.calibration_scale), np.nan
            )
            a = np.maximum(alpha, 1.0 / (c + 1.0))
            d = np.where(has, x - mu, 0.0)
            new_mu = mu + a * d
            new_var = (1 - a) * (var + a * d * d)
            self.mean[s] = np.where(has, new_mu, mu)
            self.var[s] = np.where(has, new_var, var)
            self.count[s] = c + has
        score, metric = combine_metrics(scores)
        return DetectorResult(score, metric)
