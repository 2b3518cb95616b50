"""Streaming, causal, per-sensor anomaly detectors (see :class:`models.base.Detector`).

* :class:`~models.detectors.seasonal.SeasonalDetector` -- robust time-of-day/week baseline.
* :class:`~models.detectors.spatial.SpatialDetector` -- a sensor against its neighbours.
* :class:`~models.detectors.isolation.IsolationDetector` -- IsolationForest on window features.
* Baselines for the evaluation: :class:`~models.detectors.threshold.ThresholdDetector` and
  :class:`~models.detectors.zscore.RollingZScore`.
"""
