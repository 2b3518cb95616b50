"""Model parameters from ``config/models.yaml``: thresholds per domain, risk weights and
cut-offs, the AQI standard, detector settings.

Every key is optional (the defaults are the shipped file's values); unknown keys and bad values
fail at load with :class:`ParamsError` naming the file, the key and the value::

    ParamsError: config/models.yaml: thresholds.traffic=1.5: must be in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from config.domains import DOMAINS
from config.errors import ConfigError
from models.base import ModelsError

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "models.yaml"
COLOURS = ("blue", "yellow", "orange", "red")


class ParamsError(ModelsError, ConfigError):
    """A bad model parameter; the message names file, key and value."""


@dataclass(frozen=True)
class TimeParams:
    utc_offset_h: float = 8.0


@dataclass(frozen=True)
class AqiParams:
    standard: str = "china"


@dataclass(frozen=True)
class WindowParams:
    window_s: float = 60.0
    lateness_s: float = 120.0
    history: int = 15
    ewma_alpha: float = 0.3


@dataclass(frozen=True)
class SeasonalParams:
    slots_per_day: int = 24
    weekly: bool = True
    min_count: int = 40
    learning_rate: float = 0.02
    level_halflife_s: float = 1800.0
    smooth_halflife_s: float = 45.0
    scale_floor: float = 0.02
    calibration_scale: float = 2.0
    interpolate: bool = True


@dataclass(frozen=True)
class SpatialParams:
    neighbours: int = 4
    learning_rate: float = 0.005
    same_district: bool = False


@dataclass(frozen=True)
class MultivariateParams:
    enabled: bool = True
    window_s: float = 300.0
    n_estimators: int = 50
    max_samples: int = 256
    fit_after: int = 256
    refit_every_s: float = 21600.0
    buffer: int = 2048
    calibration_scale: float = 3.0
    min_sensor_windows: int = 6
    in_score: bool = False
    score_every: int = 3


@dataclass(frozen=True)
class HealthParams:
    stuck_readings: int = 6
    dropout_intervals: float = 5.0
    spike_k: float = 10.0
    drift_halflife_s: float = 1800.0
    drift_z: float = 4.0
    drift_rel: float = 0.1
    drift_window_s: float = 300.0
    drift_baseline_s: float = 21600.0
    drift_persist: int = 6
    drift_rise: int = 5


@dataclass(frozen=True)
class RiskParams:
    weights: dict[str, float] = field(
        default_factory=lambda: {"traffic": 0.4, "environment": 0.3, "utility": 0.3}
    )
    top_k: int = 3
    stale_s: float = 300.0
    cutoffs: dict[str, float] = field(
        default_factory=lambda: {"blue": 25.0, "yellow": 50.0, "orange": 70.0, "red": 85.0}
    )


@dataclass(frozen=True)
class AlertParams:
    close_ratio: float = 0.7
    open_after_s: float = 60.0
    resolve_after_s: float = 600.0
    escalate_after_s: float = 900.0
    min_sensors: int = 1
    corroborate_sensors: int = 3
    warmup_s: float = 3600.0
    aqi_level: float = 150.0
    aqi_ratio: float = 1.3
    aqi_excess: float = 15.0
    collective_level: float = 0.7
    collective_sensors: int = 5
    collective_share: float = 0.1
    collective_ratio: float = 3.0
    power_min_kv: float = 10.5


@dataclass(frozen=True)
class ModelParams:
    time: TimeParams = field(default_factory=TimeParams)
    aqi: AqiParams = field(default_factory=AqiParams)
    windows: WindowParams = field(default_factory=WindowParams)
    seasonal: SeasonalParams = field(default_factory=SeasonalParams)
    spatial: SpatialParams = field(default_factory=SpatialParams)
    multivariate: MultivariateParams = field(default_factory=MultivariateParams)
    thresholds: dict[str, float] = field(
        default_factory=lambda: {"traffic": 0.9, "environment": 0.9, "utility": 0.9}
    )
    health: HealthParams = field(default_factory=HealthParams)
    risk: RiskParams = field(default_factory=RiskParams)
    alerts: AlertParams = field(default_factory=AlertParams)
    source: str = "<defaults>"

    def threshold(self, domain: str) -> float:
        return self.thresholds[domain]


# (key path) -> (lo, hi, lo_open): numeric ranges checked at load
_RANGES: dict[str, tuple[float, float, bool]] = {
    "time.utc_offset_h": (-14, 14, False),
    "windows.window_s": (0, 86400, True),
    "windows.lateness_s": (0, 86400, False),
    "windows.history": (1, 1440, False),
    "windows.ewma_alpha": (0, 1, True),
    "seasonal.slots_per_day": (1, 1440, False),
    "seasonal.min_count": (1, 10**6, False),
    "seasonal.learning_rate": (0, 1, True),
    "seasonal.level_halflife_s": (0, 10**7, True),
    "seasonal.smooth_halflife_s": (0, 10**7, False),
    "seasonal.scale_floor": (0, 1, False),
    "seasonal.calibration_scale": (0, 1000, True),
    "spatial.neighbours": (1, 64, False),
    "spatial.learning_rate": (0, 1, True),
    "multivariate.window_s": (0, 86400, True),
    "multivariate.n_estimators": (1, 1000, False),
    "multivariate.max_samples": (2, 10**6, False),
    "multivariate.fit_after": (2, 10**7, False),
    "multivariate.refit_every_s": (0, 10**8, True),
    "multivariate.buffer": (2, 10**7, False),
    "multivariate.calibration_scale": (0, 1000, True),
    "multivariate.min_sensor_windows": (1, 10**6, False),
    "multivariate.score_every": (1, 10**6, False),
    "health.stuck_readings": (2, 10**6, False),
    "health.dropout_intervals": (0, 10**6, True),
    "health.spike_k": (0, 10**6, True),
    "health.drift_halflife_s": (0, 10**8, True),
    "health.drift_z": (0, 10**6, True),
    "health.drift_rel": (0, 10**6, True),
    "health.drift_window_s": (0, 10**8, True),
    "health.drift_baseline_s": (0, 10**8, True),
    "health.drift_persist": (1, 10**6, False),
    "health.drift_rise": (0, 10**6, False),
    "risk.top_k": (1, 10**6, False),
    "risk.stale_s": (0, 10**8, True),
    "alerts.close_ratio": (0, 1, True),
    "alerts.open_after_s": (0, 10**8, False),
    "alerts.resolve_after_s": (0, 10**8, False),
    "alerts.escalate_after_s": (0, 10**8, True),
    "alerts.min_sensors": (1, 10**6, False),
    "alerts.warmup_s": (0, 10**8, False),
    "alerts.corroborate_sensors": (0, 10**6, False),
    "alerts.aqi_level": (0, 500, False),
    "alerts.aqi_ratio": (1, 100, False),
    "alerts.aqi_excess": (0, 500, False),
    "alerts.collective_level": (0, 1, False),
    "alerts.collective_sensors": (1, 10**6, False),
    "alerts.collective_share": (0, 1, False),
    "alerts.collective_ratio": (0, 10**6, False),
    "alerts.power_min_kv": (0, 10**4, False),
}


def load_params(path: str | Path | None = None) -> ModelParams:
    """Load and validate ``config/models.yaml`` (or ``path``)."""
    p = Path(path) if path else DEFAULT_PATH
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ParamsError(f"{p}: cannot read the model parameters ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{p}: not valid YAML: {exc}") from exc
    return parse_params(doc or {}, source=str(p))


def parse_params(doc: Any, *, source: str = "<memory>") -> ModelParams:
    def fail(key: str, value: Any, why: str) -> ParamsError:
        return ParamsError(f"{source}: {key}={value!r}: {why}")

    if not isinstance(doc, dict):
        raise fail("(top)", type(doc).__name__, "expected a mapping")
    base = ModelParams()
    out: dict[str, Any] = {}
    known = {f.name for f in fields(ModelParams) if f.name != "source"}
    for key in doc:
        if key not in known:
            raise fail(str(key), doc[key], f"unknown section (known: {', '.join(sorted(known))})")
    for section in known:
        default = getattr(base, section)
        given = doc.get(section, {})
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise fail(section, given, "expected a mapping")
        if isinstance(default, dict):
            out[section] = _number_map(section, default, given, fail)
            continue
        kwargs: dict[str, Any] = {}
        names = {f.name: f for f in fields(default)}
        for k, v in given.items():
            path = f"{section}.{k}"
            if k not in names:
                raise fail(path, v, f"unknown key (known: {', '.join(names)})")
            dv = getattr(default, k)
            if isinstance(dv, dict):
                kwargs[k] = _number_map(path, dv, v, fail)
                continue
            kwargs[k] = _coerce(path, dv, v, fail)
        out[section] = type(default)(**kwargs)
    params = ModelParams(**out, source=source)
    _check_semantics(params, fail)
    return params


def _coerce(path: str, default: Any, v: Any, fail: Any) -> Any:
    given = v
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise fail(path, v, "expected true or false")
        return v
    if isinstance(default, int):
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(path, v, "expected an integer")
    elif isinstance(default, float):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise fail(path, v, "expected a number")
        v = float(v)
    elif isinstance(default, str) and not isinstance(v, str):
        raise fail(path, v, "expected a string")
    if path in _RANGES:
        lo, hi, lo_open = _RANGES[path]
        if not ((v > lo if lo_open else v >= lo) and v <= hi):
            raise fail(path, given, f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return v


def _number_map(path: str, default: dict[str, float], given: Any, fail: Any) -> dict[str, float]:
    if not isinstance(given, dict):
        raise fail(path, given, "expected a mapping")
    out = dict(default)
    for k, v in given.items():
        if k not in default:
            raise fail(f"{path}.{k}", v, f"unknown key (known: {', '.join(default)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise fail(f"{path}.{k}", v, "expected a number")
        out[k] = float(v)
    return out


def _check_semantics(p: ModelParams, fail: Any) -> None:
    if p.aqi.standard not in ("china", "us"):
        raise fail("aqi.standard", p.aqi.standard, "must be 'china' or 'us'")
    for d in DOMAINS:
        t = p.thresholds[d]
        if not 0.0 <= t <= 1.0:
            raise fail(f"thresholds.{d}", t, "must be in [0, 1]")
        w = p.risk.weights[d]
        if w < 0:
            raise fail(f"risk.weights.{d}", w, "must be >= 0")
    if sum(p.risk.weights.values()) <= 0:
        raise fail("risk.weights", p.risk.weights, "at least one weight must be > 0")
    prev = 0.0
    for c in COLOURS:
        v = p.risk.cutoffs[c]
        if not prev < v <= 100.0:
            raise fail(f"risk.cutoffs.{c}", v, f"must be in ({prev:g}, 100] and increasing")
        prev = v
