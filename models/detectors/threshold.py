"""Baseline 1 for the evaluation: a fixed-threshold rule per metric (what a SCADA alarm does).

A reading scores 1 when any metric is beyond its fixed limit and 0 otherwise; metrics without
a limit are not judged. Stateless, so trivially causal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import numpy as np

from models.base import Batch, DetectorResult, ModelsError, PerSensorState, check_int

#: metric -> (low limit, high limit); None = no limit on that side
DEFAULT_LIMITS: Final[dict[str, tuple[float | None, float | None]]] = {
    "speed_kmh": (15.0, None),
    "occupancy_pct": (None, 40.0),
    "pm25": (None, 115.0),
    "pm10": (None, 250.0),
    "no2": (None, 200.0),
    "o3": (None, 200.0),
    "so2": (None, 500.0),
    "co": (None, 10.0),
    "noise_dba": (None, 85.0),
    "pressure_bar": (1.5, None),
    "temp_c": (None, 38.0),
}


class ThresholdDetector(PerSensorState):
    _state_arrays: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        ids: Any,
        *,
        metrics: tuple[str, ...],
        limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    ) -> None:
        self.n_metrics = check_int("n_metrics", len(metrics), 1)
        self.metrics = tuple(metrics)
        lim = dict(DEFAULT_LIMITS if limits is None else limits)
        self.lo = np.array([(lim.get(m, (None, None))[0] or -np.inf) for m in metrics])
        self.hi = np.array([(lim.get(m, (None, None))[1] or np.inf) for m in metrics])
        self._init_ids(ids)

    def params(self) -> dict[str, Any]:
        def plain(a: np.ndarray) -> list[float | None]:
            return [float(x) if np.isfinite(x) else None for x in a]

        return {"metrics": list(self.metrics), "lo": plain(self.lo), "hi": plain(self.hi)}

    def update(self, batch: Batch) -> DetectorResult:
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(f"ThresholdDetector: expected {self.n_metrics} metrics")
        x = batch.values
        judged = np.isfinite(self.lo) | np.isfinite(self.hi)
        beyond = ((x < self.lo) | (x > self.hi)) & judged
        valid = ~np.isnan(x) & judged
        per = np.where(valid, beyond.astype(np.float64), np.nan)
        any_valid = valid.any(axis=1)
        score = np.where(any_valid, np.nanmax(np.where(valid, per, -1.0), axis=1), np.nan)
        score = np.where(score < 0, np.nan, score)
        metric = np.where(any_valid, np.argmax(np.where(valid, per, -1.0), axis=1), -1)
        return DetectorResult(score, metric.astype(np.int64))
