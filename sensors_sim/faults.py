"""Sensor faults: what a broken sensor or a flaky link does to the data.

*Value faults* act on one sensor's readings: ``stuck`` (every metric frozen at its first value in
the window), ``dropout`` (no readings: a gap in ``seq``), ``spike`` (the kind's first metric
jumps by a share of its physical range), ``drift`` (a growing bias, reset at the end) and
``out_of_range`` (a physically impossible value). *Delivery faults* act on a gateway's frames:
``duplicate`` (each frame sent twice), ``out_of_order`` (every other frame held back one
interval) and ``late`` (frames delivered ``delay`` after their event time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from config.domains import KINDS, METRIC_INFO
from sensors_sim.errors import ScenarioError
from sensors_sim.generators.base import Cohort
from sensors_sim.labels import DELIVERY_FAULTS, Label
from sensors_sim.world import STREAM_FAULT, World

_FIRST_DAY = 86400.0


@dataclass(eq=False)
class ValueFault:
    type: str
    label: Label
    col: int
    start: float
    end: float
    metric: str
    params: dict[str, float]
    sign: float = 1.0
    stuck: dict[str, float] | None = field(default=None)

    def apply(
        self, t: np.ndarray, arrays: dict[str, np.ndarray], present: np.ndarray, interval: float
    ) -> None:
        rows = np.flatnonzero((t >= self.start) & (t <= self.end))
        if not len(rows):
            return
        c = self.col
        if self.type == "stuck":
            if self.stuck is None:
                self.stuck = {m: float(a[rows[0], c]) for m, a in arrays.items()}
            for m, a in arrays.items():
                a[rows, c] = self.stuck[m]
            return
        if self.type == "dropout":
            present[rows, c] = False
            return
        _, lo, hi = METRIC_INFO[self.metric]
        a = arrays[self.metric]
        v = a[rows, c]
        if self.type == "spike":
            s = self.params["magnitude"] * (hi - lo)
            a[rows, c] = np.where(v + s <= hi, v + s, np.maximum(v - s, lo))
        elif self.type == "drift":
            frac = (t[rows] - self.start + interval) / (self.end - self.start + interval)
            rate = self.params["rate"]
            if lo < 0:  # a temperature: drift in degrees
                a[rows, c] = v + 10.0 * rate * frac
            else:
                a[rows, c] = v * (1.0 + rate * frac) + 0.01 * (hi - lo) * rate * frac
        elif self.type == "out_of_range":
            a[rows, c] = hi + 0.5 * (hi - lo) if self.sign > 0 else lo - 0.25 * (hi - lo) - 1.0


@dataclass(eq=False)
class DeliveryFault:
    type: str
    label: Label
    gateway: str
    start: float
    end: float
    delay_s: float = 0.0


def _align(t: float, start: float, interval: float) -> float:
    return start + float(np.ceil((t - start) / interval - 1e-9)) * interval


def build_faults(
    world: World, cohorts: list[Cohort]
) -> tuple[dict[str, list[ValueFault]], dict[str, list[DeliveryFault]], list[Label]]:
    """Resolve the scenario's faults against the city: which sensors, when."""
    city = world.city
    sc = world.scenario
    cohort_of = {}
    for co in cohorts:
        for col, g in enumerate(co.gidx.tolist()):
            cohort_of[g] = (co, col)
    gateways = {g.id: g for g in city.gateways}
    value: dict[str, list[ValueFault]] = {}
    delivery: dict[str, list[DeliveryFault]] = {}
    labels: list[Label] = []
    # random times spread over the scenario's duration, not the run's: a shorter or longer run
    # of the same scenario and seed sees the same faults at the same times
    horizon = world.start + (sc.duration_s if np.isfinite(sc.duration_s) else _FIRST_DAY)
    for i, spec in enumerate(sc.faults):
        rng = np.random.default_rng([STREAM_FAULT, world.seed, i])

        def fail(key: str, value: object, why: str, spec_path: str = spec.path) -> ScenarioError:
            return sc.fail(f"{spec_path}.{key}", value, why)

        if spec.type in DELIVERY_FAULTS:
            if spec.sensors:
                targets = []
                for s in spec.sensors:
                    if s not in world.sensor_pos:
                        raise fail("sensors", s, "unknown sensor")
                    targets.append(city.sensors[world.sensor_pos[s]].gateway)
                targets = list(dict.fromkeys(targets))
            else:
                pool = [g.id for g in city.gateways if spec.kind in (None, g.kind)]
                if spec.count > len(pool):
                    raise fail("count", spec.count, f"only {len(pool)} gateways to choose from")
                targets = [
                    pool[j]
                    for j in sorted(rng.choice(len(pool), spec.count, replace=False).tolist())
                ]
            for k, gid in enumerate(targets):
                gw = gateways[gid]
                iv = gw.sensors[0].interval_s
                t0 = _pick_start(spec.at, world, horizon, spec.duration_s, rng)
                t0 = _align(t0, world.start, iv)
                end = t0 + spec.duration_s
                lab = Label(
                    f"{spec.type}-{i + 1}" + (f".{k + 1}" if len(targets) > 1 else ""),
                    spec.type,
                    t0,
                    end,
                    tuple(s.id for s in gw.sensors),
                    gw.district,
                    {
                        "gateway": gid,
                        **({"delay_s": spec.params["delay"]} if spec.type == "late" else {}),
                    },
                )
                labels.append(lab)
                delivery.setdefault(gid, []).append(
                    DeliveryFault(
                        spec.type, lab, gid, t0, end, float(spec.params.get("delay", 0.0))
                    )
                )
            continue

        if spec.sensors:
            chosen = []
            for s in spec.sensors:
                if s not in world.sensor_pos:
                    raise fail("sensors", s, "unknown sensor")
                chosen.append(world.sensor_pos[s])
        else:
            pool_a = (
                np.flatnonzero(world.sensor_kind == spec.kind)
                if spec.kind
                else np.arange(len(city.sensors))
            )
            if spec.count > len(pool_a):
                raise fail("count", spec.count, f"only {len(pool_a)} sensors to choose from")
            chosen = sorted(rng.choice(pool_a, spec.count, replace=False).tolist())
        for k, g in enumerate(chosen):
            co, col = cohort_of[g]
            t0 = _pick_start(spec.at, world, horizon, spec.duration_s, rng)
            t0 = _align(t0, world.start, co.interval)
            end = t0 + spec.duration_s
            sensor = city.sensors[g]
            metric = KINDS[co.domain][co.kind][0]
            sign = 1.0 if rng.random() < 0.5 else -1.0
            detail: dict[str, object] = {"kind": co.kind}
            if spec.type in ("spike", "drift", "out_of_range"):
                detail["metric"] = metric
            lab = Label(
                f"{spec.type}-{i + 1}" + (f".{k + 1}" if len(chosen) > 1 else ""),
                spec.type,
                t0,
                end,
                (sensor.id,),
                sensor.district,
                detail,
            )
            labels.append(lab)
            value.setdefault(co.key, []).append(
                ValueFault(spec.type, lab, col, t0, end, metric, dict(spec.params), sign)
            )
    return value, delivery, labels


def _pick_start(
    at: object, world: World, horizon: float, duration: float, rng: np.random.Generator
) -> float:
    from sensors_sim.scenario import TimeSpec

    assert isinstance(at, TimeSpec)
    if at.mode == "random":
        latest = max(world.start, horizon - duration - 60.0)
        return float(rng.uniform(world.start, latest))
    return at.resolve(world.start, world.day0)
