"""What one refresh of the screen knows: the city's state at one moment, from the store.

:class:`Geometry` is the static city (from the config, read once when the app is built);
:func:`snapshot` runs the refresh's queries (``store.queries``) and derives the KPIs. A
:class:`SnapshotCache` shares one snapshot per moment between all open browsers, so ten
operators cost one set of queries per refresh.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from config.city import City
from store import queries
from store.base import Store

STATUS = ("ok", "anomalous", "faulty", "silent")
VALUE_FAULTS = 1 | 2 | 4 | 8 | 16  # out of range, stuck, spike, drift, dropout (models.health)
POLLUTANTS = ("pm25", "pm10", "no2", "o3", "so2", "co")
#: a sensor is "silent" when its newest reading is older than this
SILENT_S = 300
ANOMALY_THRESHOLD = 0.9


@dataclass
class Geometry:
    """The static city: districts, road segments, sensors (coordinates in km)."""

    districts: pd.DataFrame  # district, name, name_zh, x (list), y (list), cx, cy
    segments: pd.DataFrame  # segment, district, length_km, free_speed_kmh, x0, y0, x1, y1 ...
    seg_coords: list[tuple[tuple[float, float], ...]]
    sensors: pd.DataFrame  # sensor_id, kind, domain, district, segment, x, y (index: position)
    sensor_pos: dict[str, int]
    counts: dict[str, int]  # sensors per kind
    index: pd.Index = field(default_factory=lambda: pd.Index([]))  # sensor ids -> position
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    district_code: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sensor_seg: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seg_vf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seg_len: np.ndarray = field(default_factory=lambda: np.zeros(0))
    readings_per_minute: float = 0.0
    sensor_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sensor_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sensor_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    sensor_hover: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    #: all segments' points in one pair of arrays, NaN after each segment; segment i is
    #: ``[starts[i], starts[i + 1])``
    seg_xy: tuple[np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0), np.zeros(0), np.zeros(1, dtype=np.int64)))

    @classmethod
    def from_city(cls, city: City) -> Geometry:
        rows = []
        for d in city.districts:
            xs = [p[0] for p in d.polygon]
            ys = [p[1] for p in d.polygon]
            # area-weighted centroid of the polygon (shoelace)
            x, y = np.asarray(xs), np.asarray(ys)
            cross = x[:-1] * y[1:] - x[1:] * y[:-1]
            area = cross.sum() / 2
            if abs(area) > 1e-9:
                cx = float(((x[:-1] + x[1:]) * cross).sum() / (6 * area))
                cy = float(((y[:-1] + y[1:]) * cross).sum() / (6 * area))
            else:
                cx, cy = float(x.mean()), float(y.mean())
            rows.append({"district": d.id, "name": d.name, "name_zh": d.name_zh,
                         "x": xs, "y": ys, "cx": cx, "cy": cy})
        segs = pd.DataFrame({
            "segment": [s.id for s in city.segments],
            "district": [s.district for s in city.segments],
            "length_km": [s.length_km for s in city.segments],
            "free_speed_kmh": [s.free_speed_kmh for s in city.segments],
        })
        st = city.sensor_table()
        sensors = pd.DataFrame({
            "sensor_id": st["sensor_id"], "kind": st["kind"], "domain": st["domain"],
            "district": st["district"], "segment": st["segment"],
            "x": st["x_km"], "y": st["y_km"],
        })
        counts = sensors["kind"].value_counts().to_dict()
        dpos = {d.id: i for i, d in enumerate(city.districts)}
        spos = {sg.id: i for i, sg in enumerate(city.segments)}
        return cls(
            districts=pd.DataFrame(rows),
            segments=segs,
            seg_coords=[s.coords for s in city.segments],
            sensors=sensors,
            sensor_pos={s: i for i, s in enumerate(sensors["sensor_id"].tolist())},
            counts={str(k): int(v) for k, v in counts.items()},
            index=pd.Index(sensors["sensor_id"]),
            kinds=sensors["kind"].to_numpy(dtype=object),
            district_code=np.array([dpos.get(d, 0) for d in sensors["district"]],
                                   dtype=np.int64),
            sensor_seg=np.array([spos.get(sg, -1) for sg in sensors["segment"]],
                                dtype=np.int64),
            seg_vf=segs["free_speed_kmh"].to_numpy(dtype=np.float64),
            seg_len=segs["length_km"].to_numpy(dtype=np.float64),
            readings_per_minute=float(sum(60.0 / s.interval_s for s in city.sensors)),
            sensor_x=sensors["x"].to_numpy(dtype=np.float64),
            sensor_y=sensors["y"].to_numpy(dtype=np.float64),
            sensor_ids=sensors["sensor_id"].to_numpy(dtype=object),
            sensor_hover=("<b>" + sensors["sensor_id"] + "</b> " + sensors["kind"] + " · "
                          + sensors["district"]).to_numpy(dtype=object),
            seg_xy=_segment_arrays([sg.coords for sg in city.segments]),
        )

    def district_name(self, district: str, lang: str) -> str:
        names = self.districts.attrs.get("names")
        if names is None:
            names = {(r.district, "en"): r.name for r in self.districts.itertuples()}
            names.update({(r.district, "zh"): r.name_zh for r in self.districts.itertuples()})
            self.districts.attrs["names"] = names
        return str(names.get((district, "zh" if lang == "zh" else "en"), district))


def _segment_arrays(coords: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs: list[float] = []
    ys: list[float] = []
    starts = [0]
    for c in coords:
        for x, y in c:
            xs.append(x)
            ys.append(y)
        xs.append(float("nan"))
        ys.append(float("nan"))
        starts.append(len(xs))
    return np.asarray(xs), np.asarray(ys), np.asarray(starts, dtype=np.int64)


@dataclass
class Snapshot:
    """The city at event time ``t`` (epoch s). ``live``: ``t`` is the newest data."""

    t: int
    live: bool
    newest: int
    arrived: int
    lag_s: float
    stale: bool
    ci: float
    ci_district: dict[str, float]
    ci_trend: pd.DataFrame
    aqi: float
    aqi_level: int
    aqi_primary: str
    aqi_district: dict[str, float]
    aqi_trend: pd.DataFrame
    water_inflow: float
    water_pressure: float
    water_trend: pd.DataFrame
    grid_load: float
    grid_voltage_min: float
    grid_trend: pd.DataFrame
    alerts: pd.DataFrame
    active_by_severity: dict[int, int]
    alerts_trend: pd.DataFrame
    availability: float
    reporting: int
    faulty: int
    total_sensors: int
    avail_trend: pd.DataFrame
    status: np.ndarray  # per sensor (Geometry order): index into STATUS
    value: np.ndarray  # per sensor: its main value in the window (NaN if none)
    score: np.ndarray  # per sensor: max anomaly score in the window (NaN if none)
    flags: np.ndarray  # per sensor: quality flags (0 healthy)
    seg_ratio: np.ndarray  # per segment: mean speed / free speed (NaN: no loop data)
    risk: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def active_alerts(self) -> pd.DataFrame:
        a = self.alerts
        return a[a["state"] != "resolved"] if len(a) else a


def empty_frame(*cols: str) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in cols})


def effective_state(alerts: pd.DataFrame) -> pd.Series:
    """An operator's resolve or acknowledge wins over a later worker update of the alert."""
    if not len(alerts):
        return pd.Series([], dtype=object)
    st = alerts["last_state"].astype(str).copy()
    st[(alerts["acked_at"] > 0) & (st == "open")] = "acknowledged"
    st[alerts["resolved_at"] > 0] = "resolved"
    return st


def snapshot(
    store: Store, geo: Geometry, *, at: int | None = None, standard: str = "china",
    stale_s: float = 120.0, now: float | None = None, trends: TrendCache | None = None,
    trend_minutes: int = 60,
) -> Snapshot:
    """Query the store for the city at ``at`` (epoch s; ``None`` = the newest data)."""
    from models.indicators.aqi import aqi as aqi_of
    from models.indicators.traffic import congestion_index

    trends = trends if trends is not None else TrendCache()
    timings: dict[str, float] = {}
    clock = time.perf_counter

    def timed(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        t0 = clock()
        out = fn(*args, **kw)
        timings[name] = clock() - t0
        return out

    fresh = timed("freshness", queries.freshness, store)
    have = fresh[fresh["n"] > 0]
    newest = int(have["newest"].max()) if len(have) else 0
    arrived = int(have["arrived"].max()) if len(have) else 0
    wall = time.time() if now is None else now
    lag = max(0.0, wall - arrived) if arrived else float("inf")
    live = at is None or at >= newest
    t = newest if live else int(at)  # type: ignore[arg-type]
    lo = t - trend_minutes * 60

    traffic = timed("traffic", queries.traffic_window, store, t)
    env = timed("environment", queries.environment_window, store, t)
    util = timed("utility", queries.utility_window, store, t)
    ci_trend = timed("ci_trend", trends.get, "ci", partial(queries.congestion_trend, store), lo, t, newest)
    env_trend = timed("env_trend", trends.get, "env", partial(queries.environment_trend, store),
                      lo - 3600, t, newest)
    util_trend = timed("util_trend", trends.get, "util", partial(queries.utility_trend, store), lo, t, newest)
    rd_trend = timed("readings_trend", trends.get, "readings", partial(queries.readings_trend, store),
                     lo, t, newest)
    anom = timed("anomalies", queries.anomalies_window, store, t)
    health = timed("health", queries.sensor_health_at, store, t)
    risk = timed("risk", queries.district_risk_at, store, t)
    alerts = timed("alerts", queries.alerts_at, store, t)
    t0 = clock()

    ids = geo.index
    kinds = geo.kinds
    n = len(kinds)

    def positions(df: pd.DataFrame) -> np.ndarray:
        return ids.get_indexer(pd.Index(df["sensor_id"])) if len(df) else np.zeros(0, dtype=np.int64)

    # congestion: window means per loop, weighted by flow x length (models.indicators.traffic)
    p_tr = positions(traffic)
    ci, ci_district = float("nan"), {}
    if len(traffic):
        ok = p_tr >= 0
        sp = traffic["speed_kmh"].to_numpy(dtype=np.float64)[ok]
        fl = traffic["flow_vph"].to_numpy(dtype=np.float64)[ok]
        seg = geo.sensor_seg[p_tr[ok]]
        has = seg >= 0
        vf = geo.seg_vf[seg[has]]
        ln = geo.seg_len[seg[has]]
        dc = geo.district_code[p_tr[ok][has]]
        ci = float(congestion_index(sp[has], vf, ln, fl[has])[0])
        per = congestion_index(sp[has], vf, ln, fl[has], groups=dc, n_groups=len(geo.districts))
        ci_district = {d: float(v) for d, v in zip(geo.districts["district"], per, strict=True)}

    # AQI: 1-hour means per station; the city from the stations' mean concentrations
    p_env = positions(env)
    is_air = (p_env >= 0) & (kinds[np.maximum(p_env, 0)] == "air")
    aqi_v, aqi_level, aqi_primary = float("nan"), 0, ""
    aqi_district: dict[str, float] = {}
    if is_air.any():
        conc = {p: env[p].to_numpy(dtype=np.float64)[is_air] for p in POLLUTANTS}
        per_station = aqi_of(conc, standard=standard)
        dist = geo.district_code[p_env[is_air]]
        best = np.full(len(geo.districts), -1.0)
        np.maximum.at(best, dist, np.where(np.isnan(per_station.aqi), -1.0, per_station.aqi))
        aqi_district = {d: float(v) for d, v in zip(geo.districts["district"], best,
                                                      strict=True) if v >= 0}
        city = aqi_of({p: [float(np.nanmean(conc[p]))] for p in POLLUTANTS}, standard=standard)
        aqi_v = float(city.aqi[0])
        aqi_level = int(city.level[0])
        aqi_primary = str(city.primary[0])
    aqi_trend = _aqi_trend(env_trend, standard, aqi_of, lo)

    # water and power from the latest 5-minute means per sensor
    p_ut = positions(util)
    u_kind = kinds[np.maximum(p_ut, 0)]
    u_kind = np.where(p_ut >= 0, u_kind, "")
    flow = util["inflow_m3h"].to_numpy(dtype=np.float64)[u_kind == "water_flow"]
    press = util["pressure_bar"].to_numpy(dtype=np.float64)[u_kind == "water_pressure"]
    load = util["load_mw"].to_numpy(dtype=np.float64)[u_kind == "power"]
    volt = util["voltage_kv"].to_numpy(dtype=np.float64)[u_kind == "power"]
    water_inflow = float(np.nansum(flow)) if flow.size else float("nan")
    water_pressure = float(np.nanmean(press)) if press.size else float("nan")
    grid_load = float(np.nansum(load)) if load.size else float("nan")
    grid_vmin = float(np.nanmin(volt)) if volt.size else float("nan")
    n_flow, n_power = geo.counts.get("water_flow", 0), geo.counts.get("power", 0)
    water_trend = pd.DataFrame({
        "minute": util_trend["minute"], "value": util_trend["inflow_m3h"] * n_flow})
    grid_trend = pd.DataFrame({
        "minute": util_trend["minute"], "value": util_trend["load_mw"] * n_power})

    # sensors: status, main value, score, flags
    last = np.zeros(n, dtype=np.int64)
    value = np.full(n, np.nan)
    for df, p in ((traffic, p_tr), (env, p_env), (util, p_ut)):
        if not len(df):
            continue
        ok = p >= 0
        pk = p[ok]
        last[pk] = np.maximum(last[pk], df["last"].to_numpy(dtype=np.int64)[ok])
        k = kinds[pk]
        for kind, metric in MAIN_METRIC.items():
            if metric in df.columns:
                m = k == kind
                value[pk[m]] = df[metric].to_numpy(dtype=np.float64)[ok][m]
    score = np.full(n, np.nan)
    flags = np.zeros(n, dtype=np.int64)
    if len(anom):
        p = positions(anom)
        ok = p >= 0
        score[p[ok]] = anom["score"].to_numpy(dtype=np.float64)[ok]
    if len(health):
        p = positions(health)
        ok = p >= 0
        flags[p[ok]] = health["flags"].to_numpy(dtype=np.int64)[ok]
    silent = last <= t - SILENT_S
    faulty = (flags & VALUE_FAULTS) != 0
    status = np.zeros(n, dtype=np.int64)
    status[score >= ANOMALY_THRESHOLD] = 1
    status[faulty] = 2
    status[silent] = 3
    reporting = int((~silent).sum())
    available = int((~silent & ~faulty).sum())

    # segments: mean speed of their loops over free-flow speed
    seg_ratio = np.full(len(geo.segments), np.nan)
    if len(traffic):
        ok = p_tr >= 0
        seg = geo.sensor_seg[p_tr[ok]]
        has = seg >= 0
        sums = np.bincount(seg[has], weights=traffic["speed_kmh"].to_numpy(
            dtype=np.float64)[ok][has], minlength=len(seg_ratio))
        cnt = np.bincount(seg[has], minlength=len(seg_ratio))
        with np.errstate(invalid="ignore", divide="ignore"):
            seg_ratio = np.where(cnt > 0, sums / np.maximum(cnt, 1) / geo.seg_vf, np.nan)

    # alerts
    if len(alerts):
        alerts = alerts.assign(state=effective_state(alerts))
        active = alerts[alerts["state"] != "resolved"]
        by_sev = {s: int((active["severity"] == s).sum()) for s in (1, 2, 3)}
    else:
        alerts = empty_frame("alert_id", "district", "type", "state", "severity", "peak",
                             "opened_at", "updated_at", "acked_at", "resolved_at", "acked_by",
                             "sensors", "last_state")
        by_sev = {1: 0, 2: 0, 3: 0}
    alerts_trend = _alerts_trend(alerts, t, trend_minutes)
    avail_trend = pd.DataFrame({
        "minute": rd_trend["minute"],
        "value": 100.0 * rd_trend["readings"].astype(float) / max(geo.readings_per_minute, 1)})
    avail_trend = avail_trend[avail_trend["minute"] + 60 <= max(t, 60)]  # whole minutes only
    timings["derive"] = clock() - t0
    return Snapshot(
        t=t, live=live, newest=newest, arrived=arrived, lag_s=lag, stale=lag > stale_s,
        ci=ci, ci_district=ci_district,
        ci_trend=ci_trend.rename(columns={"ci": "value"}),
        aqi=aqi_v, aqi_level=aqi_level, aqi_primary=aqi_primary, aqi_district=aqi_district,
        aqi_trend=aqi_trend, water_inflow=water_inflow, water_pressure=water_pressure,
        water_trend=water_trend, grid_load=grid_load, grid_voltage_min=grid_vmin,
        grid_trend=grid_trend, alerts=alerts, active_by_severity=by_sev,
        alerts_trend=alerts_trend,
        availability=100.0 * available / max(n, 1), reporting=reporting,
        faulty=int(faulty.sum()), total_sensors=n, avail_trend=avail_trend,
        status=status, value=value, score=score, flags=flags, seg_ratio=seg_ratio,
        risk=risk, timings=timings,
    )


_MAIN = {
    "air": "pm25", "noise": "noise_dba", "weather": "temp_c", "water_flow": "inflow_m3h",
    "water_pressure": "pressure_bar", "power": "load_mw",
}
MAIN_METRIC = {"loop": "speed_kmh", **_MAIN}


def _aqi_trend(env_trend: pd.DataFrame, standard: str, aqi_of: Any, lo: int) -> pd.DataFrame:
    """AQI of trailing 1-hour city-mean concentrations, per 5 minutes from ``lo``."""
    if not len(env_trend):
        return empty_frame("minute", "value")
    conc = {}
    for p in POLLUTANTS:
        s = env_trend[f"{p}_sum"].astype(float).rolling(12, min_periods=1).sum()
        c = env_trend[f"{p}_n"].astype(float).rolling(12, min_periods=1).sum()
        conc[p] = (s / c.where(c > 0)).to_numpy()
    res = aqi_of(conc, standard=standard)
    out = pd.DataFrame({"minute": env_trend["bucket"].to_numpy(), "value": res.aqi})
    return out[out["minute"] > lo].reset_index(drop=True)


def _alerts_trend(alerts: pd.DataFrame, t: int, minutes: int = 60) -> pd.DataFrame:
    grid = np.arange(t - minutes * 60, t + 1, 60)
    if not len(alerts):
        return pd.DataFrame({"minute": grid, "value": np.zeros(len(grid))})
    o = alerts["opened_at"].to_numpy(dtype=np.int64)
    r = alerts["resolved_at"].to_numpy(dtype=np.int64)
    r = np.where(r > 0, r, np.iinfo(np.int64).max)
    active = ((o[None, :] <= grid[:, None]) & (r[None, :] > grid[:, None])).sum(axis=1)
    return pd.DataFrame({"minute": grid, "value": active})


class TrendCache:
    """Trend queries in 10-minute chunks; a chunk wholly older than the newest data minus
    ``seal_s`` is kept (past data no longer changes), so a refresh queries only the head.

    ``fn(lo, hi)`` returns rows with ``ts`` in ``(lo, hi]`` bucketed by a period dividing
    ``chunk_s`` (minute, 5 minutes); chunks are asked for as ``(c - 1, c + chunk_s - 1]``,
    i.e. ``[c, c + chunk_s)``, so no bucket straddles two chunks.
    """

    def __init__(self, *, chunk_s: int = 600, seal_s: int = 300, size: int = 4096) -> None:
        self.chunk_s = chunk_s
        self.seal_s = seal_s
        self.size = size
        self._items: dict[tuple[Any, int], pd.DataFrame] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, fn: Any, lo: int, hi: int, newest: int) -> pd.DataFrame:
        c = lo - lo % self.chunk_s
        parts: list[pd.DataFrame] = []
        while c <= hi:
            end = c + self.chunk_s
            if end - 1 > hi or end > newest - self.seal_s:
                parts.append(fn(c - 1, hi))  # the head: always fresh
                break
            with self._lock:
                df = self._items.get((key, c))
            if df is None:
                df = fn(c - 1, end - 1)
                with self._lock:
                    if len(self._items) >= self.size:
                        self._items.pop(next(iter(self._items)))
                    self._items[(key, c)] = df
            parts.append(df)
            c = end
        parts = [p for p in parts if len(p)]
        if not parts:
            return fn(hi, hi)  # the empty frame with the right columns
        out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        col = out.columns[0]
        return out[out[col] > lo - lo % 60].reset_index(drop=True)


class SnapshotCache:
    """One snapshot per moment, shared by every browser; recomputed after ``ttl_s``.

    Live: keyed by nothing (the newest data); recomputed when older than ``ttl_s``. History:
    keyed by the moment (past data does not change, so it is kept for a while).
    """

    def __init__(self, ttl_s: float, *, size: int = 16) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._lock = threading.Lock()
        self._items: dict[Any, tuple[float, Snapshot]] = {}

    def get(self, key: Any, build: Any) -> Snapshot:
        with self._lock:  # one builder at a time: concurrent browsers wait for its result
            hit = self._items.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[0] < self.ttl_s:
                return hit[1]
            snap = build()
            self._items[key] = (now, snap)
            if len(self._items) > self.size:
                oldest = min(self._items, key=lambda k: self._items[k][0])
                self._items.pop(oldest, None)
            return snap

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
