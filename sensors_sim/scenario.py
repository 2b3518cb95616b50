"""Scenarios: YAML files in ``config/scenarios/`` that say what happens in a simulated run.

A scenario names a start (local time of the city), a duration, the weather, a demand scale,
and lists of incidents and sensor faults. Every value is validated on load; an error names the
file, the key path and the value::

    ScenarioError: config/scenarios/bad.yaml: incidents[0].severity=1.5: must be in (0, 1]

Times (``at``) are either a local clock time on the first simulated day (``"08:05"``,
``"08:05:30"``), an offset from the start (``"+45m"``), or, for faults, ``random`` (seeded).
Durations are seconds or strings such as ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1h30m"``.

>>> s = parse_scenario({"name": "x", "duration": "2h"}, source="<doc>")
>>> s.duration_s
7200.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sensors_sim.errors import ScenarioError
from sensors_sim.labels import FAULT_TYPES, INCIDENT_TYPES

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "config" / "scenarios"

_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$"
)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_KINDS = ("loop", "air", "noise", "weather", "water_flow", "water_pressure", "power")


def parse_duration(value: Any) -> float:
    """``"1h30m"`` -> 5400.0; numbers are seconds. Raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must be >= 0")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text in ("inf", "forever"):
            return float("inf")
        m = _DURATION.match(text)
        if text and m and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return d * 86400 + h * 3600 + mi * 60 + s
    raise ValueError("expected a duration such as 90, '90s', '15m', '2h', '1d' or '1h30m'")


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """When something starts: ``clock`` (seconds after local midnight of the first day),
    ``offset`` (seconds after the start) or ``random``."""

    mode: str
    seconds: float = 0.0

    def resolve(self, start: float, day0: float) -> float:
        """Epoch seconds; ``day0`` is the epoch of local midnight of the first day."""
        if self.mode == "clock":
            return day0 + self.seconds
        if self.mode == "offset":
            return start + self.seconds
        raise ValueError("a random time is resolved by the engine")


def parse_time(value: Any, *, allow_random: bool) -> TimeSpec:
    if isinstance(value, bool):
        raise ValueError("expected a time")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must be >= 0")
        return TimeSpec("offset", float(value))
    if isinstance(value, str):
        text = value.strip()
        if text == "random" and allow_random:
            return TimeSpec("random")
        if text.startswith("+"):
            return TimeSpec("offset", parse_duration(text[1:]))
        m = _CLOCK.match(text)
        if m:
            h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
            if h < 48 and mi < 60 and s < 60:
                return TimeSpec("clock", float(h * 3600 + mi * 60 + s))
    extra = ", 'random'" if allow_random else ""
    raise ValueError(f"expected a local time 'HH:MM[:SS]', an offset '+45m'{extra}")


@dataclass(frozen=True, slots=True)
class RainSpec:
    at: TimeSpec
    duration_s: float
    mmh: float


@dataclass(frozen=True, slots=True)
class WeatherSpec:
    temp_mean_c: float = 12.0
    temp_amplitude_c: float = 4.0
    humidity_pct: float = 72.0
    wind_ms: float = 4.0
    wind_dir_deg: float = 250.0
    #: ``"auto"``: seeded random showers; ``"none"``; or explicit showers
    rain: str = "auto"
    showers: tuple[RainSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentSpec:
    type: str
    at: TimeSpec
    params: dict[str, Any]
    #: key path in the file, for messages (``incidents[2]``)
    path: str


@dataclass(frozen=True, slots=True)
class FaultSpec:
    type: str
    at: TimeSpec
    duration_s: float
    count: int
    kind: str | None
    sensors: tuple[str, ...]
    params: dict[str, Any]
    path: str


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    #: local start time of the city, ISO 8601 (``2026-01-05T06:00``); ``None``: the default
    start: str | None = None
    duration_s: float = 86400.0
    demand: float = 1.0
    weather: WeatherSpec = field(default_factory=WeatherSpec)
    incidents: tuple[IncidentSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    source: str = "<memory>"

    def fail(self, path: str, value: Any, why: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}={value!r}: {why}")


# --- parameter schemas ----------------------------------------------------------------------
# name -> (type, default (... = required), check, message)
_Check = tuple[Any, Any, Any, str]  # (type or "duration", default, check, message)

_POS = (lambda v: v > 0, "must be > 0")
_FRAC = (lambda v: 0 < v <= 1, "must be in (0, 1]")
_NONNEG = (lambda v: v >= 0, "must be >= 0")
_ANY = (lambda v: True, "")

INCIDENT_PARAMS: dict[str, dict[str, _Check]] = {
    "crash": {
        "segment": (str, None, *_ANY),
        "district": (str, None, *_ANY),
        "severity": (float, 0.7, *_FRAC),
        "clear_after": ("duration", 1800.0, *_POS),
    },
    "pollution": {
        "district": (str, None, *_ANY),
        "duration": ("duration", 6 * 3600.0, *_POS),
        "magnitude": (float, 4.0, lambda v: v > 1, "must be > 1 (a PM multiplier)"),
        "spread_lag": ("duration", 3600.0, *_NONNEG),
        "ramp": ("duration", 3600.0, *_POS),
    },
    "burst": {
        "zone": (str, None, *_ANY),
        "district": (str, None, *_ANY),
        "duration": ("duration", 3 * 3600.0, *_POS),
        "flow_frac": (float, 0.6, lambda v: 0 < v <= 5, "must be in (0, 5]"),
    },
    "heatwave": {
        "districts": ((list, str), "all", *_ANY),
        "duration": ("duration", 2 * 86400.0, *_POS),
        "delta_c": (float, 9.0, lambda v: 0 < v <= 25, "must be in (0, 25]"),
        "ramp": ("duration", 6 * 3600.0, *_POS),
    },
    "event": {
        "venue": (str, None, *_ANY),
        "x": (float, None, *_ANY),
        "y": (float, None, *_ANY),
        "radius_km": (float, None, lambda v: 0 < v <= 10, "must be in (0, 10]"),
        "duration": ("duration", 3 * 3600.0, *_POS),
        "surge": (float, 0.8, lambda v: 0 < v <= 5, "must be in (0, 5]"),
        "arrival": ("duration", 5400.0, *_POS),
        "departure": ("duration", 3600.0, *_POS),
    },
}

FAULT_PARAMS: dict[str, dict[str, _Check]] = {
    "stuck": {},
    "dropout": {},
    "spike": {
        "magnitude": (
            float,
            0.25,
            lambda v: 0 < v <= 1,
            "must be in (0, 1] (share of the metric's range)",
        )
    },
    "drift": {
        "rate": (float, 0.3, lambda v: v != 0 and abs(v) <= 5, "must be non-zero, |rate| <= 5")
    },
    "out_of_range": {},
    "duplicate": {},
    "out_of_order": {},
    "late": {"delay": ("duration", 600.0, *_POS)},
}
_FAULT_COMMON = {"type", "at", "duration", "count", "kind", "sensors"}
_FAULT_DEFAULT_DURATION = {"spike": 0.0}
_TOP = {"name", "description", "start", "duration", "demand", "weather", "incidents", "faults"}
_WEATHER = {"temp_mean_c", "temp_amplitude_c", "humidity_pct", "wind_ms", "wind_dir_deg", "rain"}


class _R:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: Any, why: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}={value!r}: {why}")

    def keys(self, d: Any, path: str, known: set[str]) -> dict[str, Any]:
        if not isinstance(d, dict):
            raise self.fail(path, d, "expected a mapping")
        for k in d:
            if k not in known:
                raise self.fail(
                    f"{path}.{k}" if path else str(k),
                    d[k],
                    f"unknown key (known: {', '.join(sorted(known))})",
                )
        return d

    def value(self, d: dict[str, Any], key: str, path: str, spec: _Check) -> Any:
        typ, default, check, why = spec
        where = f"{path}.{key}" if path else key
        if key not in d or d[key] is None:
            if default is ...:
                raise ScenarioError(f"{self.source}: {where}: missing")
            return default
        v = d[key]
        if typ == "duration":
            try:
                v = parse_duration(v)
            except ValueError as exc:
                raise self.fail(where, v, str(exc)) from None
        else:
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if isinstance(v, bool) or not isinstance(v, typ):  # type: ignore[arg-type]
                tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)  # type: ignore[union-attr]
                raise self.fail(where, v, f"expected {tname}")
        if not check(v):
            raise self.fail(where, v, why)
        return v


def parse_scenario(doc: Any, *, source: str = "<memory>", name: str | None = None) -> Scenario:
    """Validate a scenario document (the parsed YAML)."""
    r = _R(source)
    if doc is None:
        doc = {}
    d = r.keys(doc, "", _TOP)
    sname = r.value(
        d,
        "name",
        "",
        (
            str,
            name or "scenario",
            lambda v: bool(re.match(r"^[A-Za-z0-9_.-]+$", v)),
            "must be letters, digits, _ . -",
        ),
    )
    start = r.value(d, "start", "", (str, None, *_ANY))
    if start is not None:
        from sensors_sim.timeutil import parse_local_iso

        try:
            parse_local_iso(start, 0.0)
        except ValueError as exc:
            raise r.fail("start", start, str(exc)) from None
    duration = r.value(d, "duration", "", ("duration", 86400.0, *_POS))
    demand = r.value(d, "demand", "", (float, 1.0, lambda v: 0 < v <= 3, "must be in (0, 3]"))

    w = r.keys(d.get("weather") or {}, "weather", _WEATHER)
    rain_raw = w.get("rain", "auto")
    showers: list[RainSpec] = []
    if isinstance(rain_raw, list):
        for i, item in enumerate(rain_raw):
            p = f"weather.rain[{i}]"
            item = r.keys(item, p, {"at", "duration", "mmh"})
            at = _time(r, item, "at", p, allow_random=False)
            showers.append(
                RainSpec(
                    at=at,
                    duration_s=r.value(item, "duration", p, ("duration", 3600.0, *_POS)),
                    mmh=r.value(
                        item, "mmh", p, (float, 3.0, lambda v: 0 < v <= 200, "must be in (0, 200]")
                    ),
                )
            )
        rain = "list"
    elif rain_raw in ("auto", "none"):
        rain = rain_raw
    else:
        raise r.fail("weather.rain", rain_raw, "expected 'auto', 'none' or a list of showers")
    weather = WeatherSpec(
        temp_mean_c=r.value(
            w,
            "temp_mean_c",
            "weather",
            (float, 12.0, lambda v: -40 <= v <= 45, "must be in [-40, 45]"),
        ),
        temp_amplitude_c=r.value(
            w,
            "temp_amplitude_c",
            "weather",
            (float, 4.0, lambda v: 0 <= v <= 20, "must be in [0, 20]"),
        ),
        humidity_pct=r.value(
            w,
            "humidity_pct",
            "weather",
            (float, 72.0, lambda v: 5 <= v <= 100, "must be in [5, 100]"),
        ),
        wind_ms=r.value(
            w, "wind_ms", "weather", (float, 4.0, lambda v: 0 <= v <= 40, "must be in [0, 40]")
        ),
        wind_dir_deg=r.value(
            w,
            "wind_dir_deg",
            "weather",
            (float, 250.0, lambda v: 0 <= v < 360, "must be in [0, 360)"),
        ),
        rain=rain,
        showers=tuple(showers),
    )

    incidents = []
    raw_inc = d.get("incidents") or []
    if not isinstance(raw_inc, list):
        raise r.fail("incidents", raw_inc, "expected a list")
    for i, item in enumerate(raw_inc):
        p = f"incidents[{i}]"
        if not isinstance(item, dict):
            raise r.fail(p, item, "expected a mapping")
        typ = item.get("type")
        if typ not in INCIDENT_PARAMS:
            raise r.fail(
                f"{p}.type", typ, f"unknown incident type (known: {', '.join(INCIDENT_TYPES)})"
            )
        schema = INCIDENT_PARAMS[typ]
        r.keys(item, p, {"type", "at", *schema})
        at = _time(r, item, "at", p, allow_random=False)
        params = {k: r.value(item, k, p, spec) for k, spec in schema.items()}
        if (
            typ == "heatwave"
            and isinstance(params["districts"], str)
            and params["districts"] != "all"
        ):
            params["districts"] = [params["districts"]]
        if (
            typ == "event"
            and params["venue"] is None
            and (params["x"] is None or params["y"] is None)
        ):
            raise r.fail(p, item, "an event needs a venue (id) or x and y")
        incidents.append(IncidentSpec(typ, at, params, p))

    faults = []
    raw_f = d.get("faults") or []
    if not isinstance(raw_f, list):
        raise r.fail("faults", raw_f, "expected a list")
    for i, item in enumerate(raw_f):
        p = f"faults[{i}]"
        if not isinstance(item, dict):
            raise r.fail(p, item, "expected a mapping")
        typ = item.get("type")
        if typ not in FAULT_PARAMS:
            raise r.fail(f"{p}.type", typ, f"unknown fault type (known: {', '.join(FAULT_TYPES)})")
        schema = FAULT_PARAMS[typ]
        r.keys(item, p, _FAULT_COMMON | set(schema))
        at = _time(r, item, "at", p, allow_random=True)
        dur = r.value(
            item, "duration", p, ("duration", _FAULT_DEFAULT_DURATION.get(typ, 1800.0), *_NONNEG)
        )
        if dur == float("inf"):
            raise r.fail(f"{p}.duration", item.get("duration"), "must be finite")
        kind = r.value(
            item,
            "kind",
            p,
            (str, None, lambda v: v in _KINDS, f"unknown kind (known: {', '.join(_KINDS)})"),
        )
        sensors = item.get("sensors") or []
        if not isinstance(sensors, list) or not all(isinstance(s, str) for s in sensors):
            raise r.fail(f"{p}.sensors", sensors, "expected a list of sensor ids")
        count = r.value(
            item,
            "count",
            p,
            (int, len(sensors) or 1, lambda v: 1 <= v <= 100_000, "must be in [1, 100000]"),
        )
        if sensors and count != len(sensors):
            raise r.fail(f"{p}.count", count, f"does not match the {len(sensors)} listed sensors")
        params = {k: r.value(item, k, p, spec) for k, spec in schema.items()}
        faults.append(FaultSpec(typ, at, dur, count, kind, tuple(sensors), params, p))

    return Scenario(
        name=sname,
        description=r.value(d, "description", "", (str, "", *_ANY)),
        start=start,
        duration_s=duration,
        demand=demand,
        weather=weather,
        incidents=tuple(incidents),
        faults=tuple(faults),
        source=source,
    )


def _time(r: _R, item: dict[str, Any], key: str, path: str, *, allow_random: bool) -> TimeSpec:
    if key not in item:
        raise ScenarioError(f"{r.source}: {path}.{key}: missing")
    try:
        return parse_time(item[key], allow_random=allow_random)
    except ValueError as exc:
        raise r.fail(f"{path}.{key}", item[key], str(exc)) from None


def list_scenarios(directory: str | Path | None = None) -> list[str]:
    """Names of the scenario files (``*.yaml``) in ``directory`` (default ``config/scenarios``)."""
    d = Path(directory) if directory else SCENARIO_DIR
    return sorted(p.stem for p in d.glob("*.yaml"))


def load_scenario(name_or_path: str | Path, *, directory: str | Path | None = None) -> Scenario:
    """Load a scenario by name (``rush_hour_crash``) or by path to a YAML file."""
    text = str(name_or_path)
    d = Path(directory) if directory else SCENARIO_DIR
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
    else:
        path = d / f"{text}.yaml"
        if not path.exists():
            known = ", ".join(list_scenarios(d)) or "none"
            raise ScenarioError(f"{d}: scenario={text!r}: no such scenario (known: {known})")
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    return parse_scenario(doc, source=str(path), name=path.stem)
