"""Fill a store with a simulated stretch of the city and plausible derived rows.

For the screen's tests, its benchmark, screenshots and offline demos: the readings come from
the simulator (exactly what the sink would store), and the derived tables (anomalies, sensor
health, district risk, alert events, ground truth) are drawn from the scenario's ground-truth
labels -- high anomaly scores at the labelled sensors while an incident lasts, raised district
risk, an alert per incident that opens, escalates and resolves, health flags for every fault.
They are *not* the stream workers' output; they have its shape, so the screen can be built and
measured while the workers are developed.

>>> from config.city import load_city  # doctest: +SKIP
>>> seed_store(store, load_city(), scenario="rush_hour_crash", duration_s=3600)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from config.city import City
from config.domains import DOMAINS
from store.base import Store

#: incident type -> (alert type, risk domain, main metric per kind)
INCIDENT_ALERT = {
    "crash": ("traffic", "traffic"),
    "event": ("traffic", "traffic"),
    "pollution": ("air_quality", "environment"),
    "burst": ("water", "utility"),
    "heatwave": ("power", "utility"),
}
MAIN_METRIC = {
    "loop": "speed_kmh",
    "air": "pm25",
    "noise": "noise_dba",
    "weather": "temp_c",
    "water_flow": "inflow_m3h",
    "water_pressure": "pressure_bar",
    "power": "load_mw",
}
FAULT_FLAG = {
    "out_of_range": 1, "stuck": 2, "spike": 4, "drift": 8, "dropout": 16,
    "duplicate": 32, "out_of_order": 64, "late": 128,
}


@dataclass(frozen=True)
class SeedInfo:
    start: int
    end: int
    readings: int
    rows: dict[str, int]


def seed_store(
    store: Store,
    city: City,
    *,
    scenario: str = "rush_hour_crash",
    seed: int = 1,
    start: float | None = None,
    duration_s: float | None = None,
    dimensions: bool = True,
    batch_rows: int = 1_000_000,
    progress: Callable[[str], None] | None = None,
) -> SeedInfo:
    """Simulate ``scenario`` and store its readings plus derived rows; see the module doc."""
    from sensors_sim.engine import Simulator
    from sensors_sim.scenario import load_scenario
    from sensors_sim.table import to_columns

    if dimensions:
        from store.dimensions import load_dimensions

        load_dimensions(store, city)
    sim = Simulator(city, load_scenario(scenario), seed=seed, start=start, duration=duration_s)
    pending: list = []
    n_pending = 0
    total = 0

    def flush() -> None:
        nonlocal pending, n_pending, total
        for domain in DOMAINS:
            cols = to_columns(pending, domain)
            if not len(cols["ts"]):
                continue
            cols.pop("delivered", None)
            cols["ts"] = np.floor(cols["ts"]).astype("datetime64[s]")
            cols["seq"] = cols["seq"].astype(np.uint64)
            total += store.insert(f"readings_{domain}", cols)
        pending, n_pending = [], 0
        if progress:
            progress(f"seeded {total:,} readings")

    for frames in sim.steps():
        pending.extend(frames)
        n_pending += sum(len(f) for f in frames)
        if n_pending >= batch_rows:
            flush()
    if pending:
        flush()
    rows = derived_rows(city, sim.labels, int(sim.start), int(sim.end), seed=seed)
    counts = {"readings": total}
    from store.queries import insert_rows

    for table, cols in rows.items():
        has_lists = any(c.dtype == object and len(c) and isinstance(c[0], list)
                        for c in cols.values())
        counts[table] = insert_rows(store, table, cols) if has_lists else store.insert(table, cols)
    return SeedInfo(int(sim.start), int(sim.end), total, counts)


def derived_rows(
    city: City, labels: list, start: int, end: int, *, seed: int = 1
) -> dict[str, dict[str, np.ndarray]]:
    """Anomalies, sensor health, district risk, alert events and ground truth from labels."""
    from models.params import load_params
    from models.risk import colour_of

    rng = np.random.default_rng(seed)
    sidx = city.sensor_index
    params = load_params()
    an: dict[str, list] = {k: [] for k in (
        "ts", "sensor_id", "kind", "district", "score", "seasonal", "spatial", "multivariate",
        "metric", "flags")}
    health: dict[str, list] = {k: [] for k in ("ts", "sensor_id", "district", "flags", "status")}
    alerts: dict[str, list] = {k: [] for k in (
        "ts", "alert_id", "district", "type", "event", "state", "severity", "peak", "sensors",
        "actor")}
    minutes = np.arange(start - start % 60 + 60, end, 60)
    districts = [d.id for d in city.districts]
    dpos = {d: i for i, d in enumerate(districts)}
    contrib = {dom: np.zeros((len(minutes), len(districts))) for dom in DOMAINS}
    # a calm city: small background risk everywhere
    contrib["traffic"] += rng.uniform(2, 8, size=contrib["traffic"].shape)
    contrib["environment"] += rng.uniform(1, 6, size=contrib["traffic"].shape)
    contrib["utility"] += rng.uniform(1, 5, size=contrib["traffic"].shape)
    top: dict[tuple[int, int], dict[str, list]] = {}

    def add_anomaly(ts: int, sid: str, score: float, flags: int = 0) -> None:
        s = sidx[sid]
        an["ts"].append(ts)
        an["sensor_id"].append(sid)
        an["kind"].append(s.kind)
        an["district"].append(s.district)
        an["score"].append(score)
        an["seasonal"].append(score * rng.uniform(0.9, 1.0))
        an["spatial"].append(score * rng.uniform(0.6, 1.0))
        an["multivariate"].append(score * rng.uniform(0.3, 0.9))
        an["metric"].append(MAIN_METRIC.get(s.kind, ""))
        an["flags"].append(flags)

    for lab in sorted(labels, key=lambda x: (x.start, x.id)):
        lo, hi = int(lab.start), int(min(lab.end, end))
        sensors = [s for s in lab.sensors if s in sidx]
        if lab.category == "fault":
            flag = FAULT_FLAG.get(lab.type, 0)
            for sid in sensors:
                d = sidx[sid].district
                health["ts"] += [lo, hi + 60]
                health["sensor_id"] += [sid, sid]
                health["district"] += [d, d]
                health["flags"] += [flag, 0]
                health["status"] += ["faulty", "ok"]
                if lab.type in ("spike", "out_of_range"):
                    add_anomaly(lo, sid, 0.99, flag)
            continue
        alert_type, domain = INCIDENT_ALERT.get(lab.type, ("traffic", "traffic"))
        strength = 0.92 + 0.07 * rng.random()
        for m in minutes[(minutes >= lo) & (minutes <= hi)]:
            ramp = min(1.0, (m - lo) / 300.0 + 0.2)
            for sid in sensors[:40]:
                add_anomaly(int(m), sid, float(min(0.999, strength * ramp + rng.normal(0, 0.01))))
        # risk: a ramp up over 5 minutes, a plateau, a decay over 10 minutes after the end
        d = lab.district if lab.district in dpos else (sidx[sensors[0]].district if sensors else "")
        if d not in dpos:
            continue
        j = dpos[d]
        up = np.clip((minutes - lo) / 300.0, 0, 1)
        down = np.clip(1 - (minutes - hi) / 600.0, 0, 1)
        level = np.where(minutes < lo, 0.0, np.minimum(up, down)) * rng.uniform(55, 80)
        contrib[domain][:, j] += level
        for i in np.flatnonzero(level > 0):
            top.setdefault((int(i), j), {}).setdefault(domain, []).extend(
                [[sid, round(strength, 3)] for sid in sensors[:3]]
            )
        # the alert: opened a minute in, escalated if nobody acknowledges, resolved later
        aid = f"AL-{d}-{alert_type}-{lo}"
        sev = 2 if len(sensors) >= 5 else 1
        peak = float(min(0.999, strength))
        events = [(lo + 60, "opened", "open", sev)]
        if hi - lo > 900:
            events.append((lo + 960, "escalated", "open", min(3, sev + 1)))
            sev = min(3, sev + 1)
        if hi + 600 < end:
            events.append((hi + 600, "resolved", "resolved", sev))
        for ts, ev, state, s in events:
            if ts >= end:
                continue
            alerts["ts"].append(ts)
            alerts["alert_id"].append(aid)
            alerts["district"].append(d)
            alerts["type"].append(alert_type)
            alerts["event"].append(ev)
            alerts["state"].append(state)
            alerts["severity"].append(s)
            alerts["peak"].append(peak)
            alerts["sensors"].append(sensors[:50])
            alerts["actor"].append("worker")

    w = params.risk.weights
    risk_cols: dict[str, list] = {k: [] for k in (
        "ts", "district", "risk", "colour", "contrib_traffic", "contrib_environment",
        "contrib_utility", "top_sensors")}
    scale = {dom: w.get(dom, 0.3) / max(w.values()) for dom in DOMAINS}
    total = sum(contrib[dom] * scale[dom] for dom in DOMAINS)
    risk = np.minimum(total, 100.0)
    colours = colour_of(risk.ravel(), params.risk.cutoffs).reshape(risk.shape)
    for i, m in enumerate(minutes.tolist()):  # type: ignore[assignment]
        for j, d in enumerate(districts):
            risk_cols["ts"].append(m)
            risk_cols["district"].append(d)
            risk_cols["risk"].append(float(risk[i, j]))
            risk_cols["colour"].append(str(colours[i, j]))
            for dom in DOMAINS:
                risk_cols[f"contrib_{dom}"].append(float(contrib[dom][i, j] * scale[dom]))
            risk_cols["top_sensors"].append(orjson.dumps(top.get((int(i), j), {})).decode())

    gt = {
        "id": [x.id for x in labels], "type": [x.type for x in labels],
        "category": [x.category for x in labels], "start": [int(x.start) for x in labels],
        "end": [int(x.end) for x in labels], "district": [x.district or "" for x in labels],
        "sensors": [list(x.sensors) for x in labels],
        "detail": [orjson.dumps(x.detail).decode() for x in labels],
    }
    return {
        "anomalies": _columns(an, {"ts": "t", "score": "f", "seasonal": "f", "spatial": "f",
                                   "multivariate": "f", "flags": np.uint16}),
        "sensor_health": _columns(health, {"ts": "t", "flags": np.uint16}),
        "district_risk": _columns(risk_cols, {"ts": "t", "risk": "f", "contrib_traffic": "f",
                                              "contrib_environment": "f", "contrib_utility": "f"}),
        "alert_events": _columns(alerts, {"ts": "t", "severity": np.uint8, "peak": "f",
                                          "sensors": "list"}),
        "groundtruth": _columns(gt, {"start": "t", "end": "t", "sensors": "list"}),
    }


def _columns(rows: dict[str, list], types: dict[str, object]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in rows.items():
        t = types.get(k)
        if t == "t":
            out[k] = np.asarray(v, dtype=np.int64).astype("datetime64[s]")
        elif t == "f":
            out[k] = np.asarray(v, dtype=np.float64)
        elif t == "list":
            arr = np.empty(len(v), dtype=object)
            arr[:] = v
            out[k] = arr
        elif t is not None:
            out[k] = np.asarray(v, dtype=t)  # type: ignore[call-overload]
        else:
            out[k] = np.asarray(v, dtype=object)
    return out
