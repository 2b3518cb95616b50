"""Quick, plausible warehouse data for tests and the warehouse benchmark.

The simulator (``sensors_sim``) is the realistic source and ``citybrain backfill`` loads its
recordings at full rate; a month of that is ~420 M readings. For query tests and the raw-vs-
rollup benchmark we need a month of the default city's *shape* fast, so this module writes
readings every ``step_s`` seconds for every sensor (daily traffic rush hours, a water minimum
night flow with a slow leak in one DMA, an air pollution episode, feeder load following the day)
plus a few derived rows (alerts with acknowledgements, anomalies, risk, health, AQI,
ground truth). Deterministic by seed.

>>> from config.city import load_city  # doctest: +SKIP
>>> synth_store(store, load_city(), start=1767225600, days=2, step_s=600)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from config.city import City
from config.domains import DOMAIN_METRICS, DOMAINS, KINDS
from store.base import Store

#: the DMA whose night flow creeps up (a slowly growing leak) and the polluted district
LEAK_ZONE_INDEX = 0
POLLUTED_DISTRICT_INDEX = 4


@dataclass
class SynthInfo:
    start: int
    end: int
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        return sum(v for k, v in self.rows.items() if k.startswith("readings_"))


def _bump(h: np.ndarray, at: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((h - at) / width) ** 2)


def reading_chunks(
    city: City, *, start: int, days: float, step_s: int, seed: int = 1, chunk_s: int = 86400
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """``(table, columns)`` per domain and chunk of ``chunk_s`` seconds, in time order."""
    rng = np.random.default_rng(seed)
    end = start + int(days * 86400)
    off = city.utc_offset_s
    by_domain = {d: [s for s in city.sensors if s.domain == d] for d in DOMAINS}
    seg = {s.id: s for s in city.segments}
    districts = [d.id for d in city.districts]
    zones = sorted({s.zone for s in city.sensors if s.kind == "water_flow" and s.zone})
    for c0 in range(start, end, chunk_s):
        t = np.arange(c0, min(c0 + chunk_s, end), step_s, dtype=np.int64)
        if not t.size:
            continue
        hour = ((t + off) % 86400) / 3600.0
        day = (t - start) / 86400.0
        weekday = ((t + off) // 86400 + 3) % 7 < 5  # 1970-01-01 was a Thursday
        for domain in DOMAINS:
            sensors = by_domain[domain]
            if not sensors:
                continue
            n, m = len(sensors), t.size
            ids = np.array([s.id for s in sensors], dtype=object)
            cols: dict[str, np.ndarray] = {
                "ts": np.tile(t, n).astype("datetime64[s]"),
                "sensor_id": np.repeat(ids, m),
                "gateway": np.repeat(np.array([s.gateway for s in sensors], dtype=object), m),
                "seq": (np.tile(t, n) // np.repeat(
                    np.array([max(1, int(s.interval_s)) for s in sensors]), m)).astype(np.uint64),
            }
            metrics = {k: np.full((n, m), np.nan) for k in DOMAIN_METRICS[domain]}
            kinds = np.array([s.kind for s in sensors])
            noise = rng.standard_normal((n, m))
            if domain == "traffic":
                rush = np.where(weekday, _bump(hour, 8, 1.0) + _bump(hour, 17.5, 1.2),
                                0.6 * _bump(hour, 13, 3))
                base = 0.04 + 0.25 * _bump(hour, 13, 5) + 0.7 * rush  # share of capacity
                cap = np.array([seg[s.segment].capacity_vph if s.segment in seg else 1800.0
                                for s in sensors])
                vf = np.array([seg[s.segment].free_speed_kmh if s.segment in seg else 50.0
                               for s in sensors])
                # a few segments are bottlenecks that congest in the rush hours
                hot = (np.arange(n) % 37 == 0)[:, None]
                load = np.clip(base[None, :] * (1.0 + 0.6 * hot) + 0.03 * noise, 0.01, 1.4)
                speed = vf[:, None] * np.where(load < 0.9, 1 - 0.3 * load, 0.45 / load)
                metrics["flow_vph"] = np.round(cap[:, None] * np.minimum(load, 1.0), 0)
                metrics["speed_kmh"] = np.round(np.clip(speed + 1.5 * noise, 3, None), 1)
                metrics["occupancy_pct"] = np.round(np.clip(load * 22 + noise, 0, 100), 1)
            elif domain == "environment":
                dist = np.array([districts.index(s.district) for s in sensors])
                episode = ((dist == POLLUTED_DISTRICT_INDEX)[:, None]
                           & ((day % 7) >= 2)[None, :] & ((day % 7) < 3.5)[None, :])
                air = kinds == "air"
                pm = 28 + 18 * _bump(hour, 8.5, 2)[None, :] + 4 * noise + 90 * episode
                pm = np.clip(pm, 2, None)
                for name, scale in (("pm25", 1.0), ("pm10", 1.6), ("no2", 1.2), ("so2", 0.2),
                                    ("co", 0.02)):
                    metrics[name][air] = np.round(pm[air] * scale, 2)
                metrics["o3"][air] = np.round(np.clip(40 + 50 * _bump(hour, 14, 3)[None, :]
                                                      + 5 * noise[air], 0, None), 1)
                nz = kinds == "noise"
                metrics["noise_dba"][nz] = np.round(52 + 12 * (hour[None, :] > 6)
                                                    * (hour[None, :] < 22) + 2 * noise[nz], 1)
                wx = kinds == "weather"
                metrics["temp_c"][wx] = np.round(6 + 5 * np.sin((hour - 9) / 24 * 2 * np.pi)
                                                 [None, :] + 0.5 * noise[wx], 1)
                metrics["humidity_pct"][wx] = np.round(70 + 3 * noise[wx], 1)
                metrics["wind_ms"][wx] = np.round(np.clip(3 + noise[wx], 0, None), 1)
                metrics["wind_dir_deg"][wx] = np.round((250 + 20 * noise[wx]) % 360, 0)
                metrics["rain_mmh"][wx] = 0.0
            else:
                wf = kinds == "water_flow"
                zone_idx = np.array([zones.index(s.zone) if s.zone in zones else -1
                                     for s in sensors])
                demand = 0.4 + 0.9 * _bump(hour, 7.5, 1.5) + 0.7 * _bump(hour, 19.5, 2)
                leak = ((zone_idx == LEAK_ZONE_INDEX)[:, None] * 4.0 * day[None, :])
                metrics["inflow_m3h"][wf] = np.round(
                    np.clip(60 * demand[None, :] + leak[wf] + 2 * noise[wf], 0, None), 2)
                wp = kinds == "water_pressure"
                metrics["pressure_bar"][wp] = np.round(3.4 - 0.4 * demand[None, :]
                                                       + 0.03 * noise[wp], 3)
                pw = kinds == "power"
                load = 2.0 + 1.5 * _bump(hour, 18.5, 2.5) + 0.6 * _bump(hour, 9, 2)
                metrics["load_mw"][pw] = np.round(load[None, :] + 0.05 * noise[pw], 3)
                metrics["voltage_kv"][pw] = np.round(10.5 - 0.1 * load[None, :]
                                                     + 0.02 * noise[pw], 3)
            for k, v in metrics.items():
                cols[k] = v.reshape(-1)
            # a few sensors are offline for part of each day (availability < 100 %)
            keep = ~((np.arange(n) % 50 == 7)[:, None] & (hour[None, :] < 6)).reshape(-1)
            yield f"readings_{domain}", {k: v[keep] for k, v in cols.items()}


def derived_rows(city: City, *, start: int, days: float, seed: int = 1
                 ) -> dict[str, dict[str, np.ndarray]]:
    """Alerts (opened → acknowledged → resolved), anomalies, risk, health, AQI, ground truth."""
    rng = np.random.default_rng(seed + 1)
    districts = [d.id for d in city.districts]
    loops = [s for s in city.sensors if s.kind == "loop"]
    n_days = max(1, int(np.ceil(days)))
    ev: dict[str, list] = {k: [] for k in ("ts", "alert_id", "district", "type", "event", "state",
                                           "severity", "peak", "sensors", "actor")}
    an: dict[str, list] = {k: [] for k in ("ts", "sensor_id", "kind", "district", "score",
                                           "seasonal", "spatial", "multivariate", "metric",
                                           "flags")}
    gt: dict[str, list] = {k: [] for k in ("id", "type", "category", "start", "end", "district",
                                           "sensors", "detail")}
    for d in range(n_days):
        for k in range(3):
            opened = start + d * 86400 + int(rng.integers(6 * 3600, 20 * 3600))
            dist = districts[(d * 3 + k) % len(districts)]
            sens = [s.id for s in loops if s.district == dist][:3]
            aid = f"A{d:03d}{k}"
            ack = opened + int(rng.integers(60, 1800))
            res = ack + int(rng.integers(600, 3600))
            steps = [(opened, "opened", "open", "worker"), (ack, "acknowledged", "acknowledged",
                                                            "operator"),
                     (res, "resolved", "resolved", "worker")]
            if k == 2:  # one a day escalates and is never acknowledged
                steps = [(opened, "opened", "open", "worker"),
                         (opened + 900, "escalated", "open", "worker"),
                         (opened + 2400, "resolved", "resolved", "worker")]
            for ts, event, state, actor in steps:
                ev["ts"].append(ts)
                ev["alert_id"].append(aid)
                ev["district"].append(dist)
                ev["type"].append("traffic")
                ev["event"].append(event)
                ev["state"].append(state)
                ev["severity"].append(2 if event == "escalated" else 1)
                ev["peak"].append(0.97)
                ev["sensors"].append(sens)
                ev["actor"].append(actor)
            for j, sid in enumerate(sens):
                an["ts"].append(opened + 30 * j)
                an["sensor_id"].append(sid)
                an["kind"].append("loop")
                an["district"].append(dist)
                for c in ("score", "seasonal", "spatial", "multivariate"):
                    an[c].append(0.96 + 0.01 * j)
                an["metric"].append("speed_kmh")
                an["flags"].append(0)
            gt["id"].append(f"L{d:03d}{k}")
            gt["type"].append("crash")
            gt["category"].append("incident")
            gt["start"].append(opened - 120)
            gt["end"].append(res)
            gt["district"].append(dist)
            gt["sensors"].append(sens)
            gt["detail"].append("{}")
    hours = np.arange(start, start + int(days * 86400), 3600, dtype=np.int64)
    nd = len(districts)
    risk = {
        "ts": np.repeat(hours, nd).astype("datetime64[s]"),
        "district": np.tile(np.array(districts, dtype=object), hours.size),
        "risk": np.round(rng.uniform(5, 60, hours.size * nd), 1),
        "colour": np.full(hours.size * nd, "none", dtype=object),
        "contrib_traffic": rng.uniform(0, 20, hours.size * nd),
        "contrib_environment": rng.uniform(0, 20, hours.size * nd),
        "contrib_utility": rng.uniform(0, 20, hours.size * nd),
        "top_sensors": np.full(hours.size * nd, "[]", dtype=object),
    }
    health = {
        "ts": np.array([start + 3600, start + 7200], dtype="datetime64[s]"),
        "sensor_id": np.array([loops[0].id, loops[0].id], dtype=object),
        "district": np.array([loops[0].district] * 2, dtype=object),
        "flags": np.array([2, 0], dtype=np.uint16),
        "status": np.array(["stuck", "ok"], dtype=object),
    }

    def obj(values: list) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            out[i] = v
        return out

    alerts = {
        "ts": np.array(ev["ts"], dtype="datetime64[s]"),
        **{c: obj(ev[c]) for c in ("alert_id", "district", "type", "event", "state", "sensors",
                                    "actor")},
        "severity": np.array(ev["severity"], dtype=np.uint8),
        "peak": np.array(ev["peak"], dtype=np.float64),
    }
    anomalies = {
        "ts": np.array(an["ts"], dtype="datetime64[s]"),
        **{c: obj(an[c]) for c in ("sensor_id", "kind", "district", "metric")},
        **{c: np.array(an[c], dtype=np.float64) for c in ("score", "seasonal", "spatial",
                                                           "multivariate")},
        "flags": np.array(an["flags"], dtype=np.uint16),
    }
    groundtruth = {
        **{c: obj(gt[c]) for c in ("id", "type", "category", "district", "sensors", "detail")},
        "start": np.array(gt["start"], dtype="datetime64[s]"),
        "end": np.array(gt["end"], dtype="datetime64[s]"),
    }
    return {"alert_events": alerts, "anomalies": anomalies, "district_risk": risk,
            "sensor_health": health, "groundtruth": groundtruth}


def aqi_rows(store: Store) -> None:
    """Hourly district AQI indicators from the PM2.5 rollup (a simple stand-in for the
    workers' AQI: the China IAQI breakpoints for PM2.5 only)."""
    aqi = (
        "multiIf(pm < 35, pm / 35 * 50, pm < 75, 50 + (pm - 35) / 40 * 50, "
        "pm < 115, 100 + (pm - 75) / 40 * 50, pm < 150, 150 + (pm - 115) / 35 * 50, "
        "pm < 250, 200 + (pm - 150) / 100 * 100, pm < 350, 300 + (pm - 250) / 100 * 100, "
        "400 + (pm - 350) / 150 * 100)"
    )
    store.command(
        "INSERT INTO indicators (ts, entity_type, entity_id, name, value, window_s) "
        f"SELECT ts, 'district', district, 'aqi', {aqi}, 3600 FROM (SELECT ts, district, "
        "sum(pm25_sum) / sum(pm25_count) AS pm FROM rollup_environment_district_1h "
        "GROUP BY ts, district HAVING sum(pm25_count) > 0)"
    )


def synth_store(
    store: Store,
    city: City,
    *,
    start: int,
    days: float,
    step_s: int = 300,
    seed: int = 1,
    derived: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> SynthInfo:
    """Insert synthetic readings (and derived rows) for ``days`` from ``start`` (epoch s)."""
    info = SynthInfo(start, start + int(days * 86400))
    total = int(np.ceil(days)) * len(DOMAINS)
    chunks = reading_chunks(city, start=start, days=days, step_s=step_s, seed=seed)
    for done, (table, cols) in enumerate(chunks, start=1):
        info.rows[table] = info.rows.get(table, 0) + store.insert(table, cols)
        if progress:
            progress(done, total)
    if derived:
        for table, cols in derived_rows(city, start=start, days=days, seed=seed).items():
            info.rows[table] = store.insert(table, cols)
        aqi_rows(store)
    return info


assert set(KINDS) == set(DOMAINS)
