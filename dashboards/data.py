"""What one refresh of the screen knows: the city's state at one moment, from the store.

:class:`Geometry` is the static city (from the config, read once when the app is built);
:func:`snapshot` runs the refresh's queries (``store.queries``, at once on a
:class:`QueryPool`) and derives the KPIs. A :class:`SnapshotCache` shares one snapshot per
moment between all open browsers, so ten operators cost one set of queries per refresh;
:class:`TrendCache` and :class:`WindowCache` keep what no longer changes (trend minutes and the
AQI hour's minutes older than the newest data minus five minutes), so a live refresh reads only
the last minutes. See docs/dashboard.md, "How a refresh works, and what it costs".
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

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


class DistrictRow(NamedTuple):
    district: str
    name: str
    name_zh: str
    x: np.ndarray
    y: np.ndarray
    cx: float
    cy: float


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
    #: the static part of a sensor's hover text: kind and district
    sensor_hover: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    #: all segments' points in one pair of arrays, NaN after each segment; segment i is
    #: ``[starts[i], starts[i + 1])``
    seg_xy: tuple[np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0), np.zeros(0), np.zeros(1, dtype=np.int64)))
    #: for every point of ``seg_xy``: the segment it belongs to (its NaN separator included)
    seg_of_point: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _hashes: tuple[pd.Index, np.ndarray] | None = None
    _hash_lock: threading.Lock = field(default_factory=threading.Lock)

    def positions_of_hashes(self, store: Store, hashes: Any) -> np.ndarray:
        """Sensor positions of ``sensor_hash`` values (``queries.sensor_hashes``); -1 where
        the sensor is not in the city. The hashes of the city's ids are asked once."""
        with self._hash_lock:
            if self._hashes is None:
                df = queries.sensor_hashes(store, [str(x) for x in self.sensor_ids])
                h = df["sensor_hash"].to_numpy(dtype=np.uint64)
                pos = self.index.get_indexer(pd.Index(df["sensor_id"].astype(str)))
                if len(np.unique(h)) != len(h):  # 64-bit: practically never
                    raise ValueError("two sensor ids of the city share a cityHash64")
                # a hash table (pandas' index engine, built here once and only read after):
                # a tenth of the time of a binary search of 18,000 hashes
                index = pd.Index(h, dtype=np.uint64)
                index.get_indexer(h[:1])  # type: ignore[arg-type]
                self._hashes = (index, pos.astype(np.int64))
        index, hash_pos = self._hashes
        h = np.asarray(hashes, dtype=np.uint64)
        if not len(index) or not len(h):
            return np.full(len(h), -1, dtype=np.int64)
        i = index.get_indexer(h)  # type: ignore[arg-type]  # an array is fine
        return np.where(i >= 0, hash_pos[i], -1)

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
            # metres are enough for the map, and 3 decimals of a km are a third of the JSON
            sensor_x=np.round(sensors["x"].to_numpy(dtype=np.float64), 3),
            sensor_y=np.round(sensors["y"].to_numpy(dtype=np.float64), 3),
            # numpy strings (not objects): plotly's JSON encoder turns them into a list at once
            sensor_ids=sensors["sensor_id"].to_numpy(dtype=str),
            sensor_hover=(sensors["kind"] + " · " + sensors["district"]).to_numpy(dtype=str),
            seg_xy=(seg_xy := _segment_arrays([sg.coords for sg in city.segments])),
            seg_of_point=np.repeat(np.arange(len(city.segments), dtype=np.int64),
                                   np.diff(seg_xy[2])),
        )

    def district_rows(self) -> list[DistrictRow]:
        """The districts as plain rows (district, name, name_zh, x, y arrays, cx, cy), made
        once: iterating a frame on every refresh costs more than drawing it."""
        rows = self.__dict__.get("_rows")
        if rows is None:
            d = self.districts
            rows = [
                DistrictRow(str(k), str(n), str(nz), np.round(np.asarray(x, np.float64), 3),
                            np.round(np.asarray(y, np.float64), 3), float(cx), float(cy))
                for k, n, nz, x, y, cx, cy in zip(d["district"], d["name"], d["name_zh"],
                                                  d["x"], d["y"], d["cx"], d["cy"], strict=True)
            ]
            self.__dict__["_rows"] = rows
        return rows

    def district_name(self, district: str, lang: str) -> str:
        # kept beside the frame, not in its ``attrs``: pandas deep-copies ``attrs`` into every
        # frame derived from it
        names = self.__dict__.get("_names")
        if names is None:
            names = {(r.district, "en"): r.name for r in self.districts.itertuples()}
            names.update({(r.district, "zh"): r.name_zh for r in self.districts.itertuples()})
            self.__dict__["_names"] = names
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
    return (np.round(np.asarray(xs), 3), np.round(np.asarray(ys), 3),
            np.asarray(starts, dtype=np.int64))


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
        hit = self.__dict__.get("_active")
        if hit is None:
            a = self.alerts
            hit = a[a["state"].to_numpy(dtype=object) != "resolved"] if len(a) else a
            self.__dict__["_active"] = hit
        return hit


def empty_frame(*cols: str) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in cols})


def effective_state(alerts: pd.DataFrame) -> pd.Series:
    """An operator's resolve or acknowledge wins over a later worker update of the alert."""
    if not len(alerts):
        return pd.Series([], dtype=object)
    st = alerts["last_state"].to_numpy(dtype=object).astype(str).astype(object)
    st[(alerts["acked_at"].to_numpy() > 0) & (st == "open")] = "acknowledged"
    st[alerts["resolved_at"].to_numpy() > 0] = "resolved"
    return pd.Series(st, index=alerts.index, dtype=object)


class QueryPool:
    """Runs a refresh's queries concurrently, each on a connection of its own.

    A store serialises its queries (one connection, one lock), so a pool holds several stores
    of the same database; :meth:`for_store` opens ``size - 1`` more connections like the given
    ClickHouse server store. chDB runs one query at a time in-process: a pool of one store,
    and the queries run in the caller's thread, one after the other.
    """

    def __init__(self, stores: list[Store]) -> None:
        self.stores = stores
        self._free: queue.Queue[Store] = queue.Queue()
        for st in stores:
            self._free.put(st)
        self._executor = (ThreadPoolExecutor(max_workers=len(stores),
                                             thread_name_prefix="refresh-query")
                          if len(stores) > 1 else None)

    @classmethod
    def for_store(cls, store: Store, size: int = 4) -> QueryPool:
        stores = [store]
        kw = getattr(store, "_kw", None)  # ServerStore's connection parameters
        if store.backend == "clickhouse" and isinstance(kw, dict) and size > 1:
            from store.server import ServerStore

            stores += [ServerStore(host=kw["host"], port=kw["port"], database=store.database,
                                   user=kw["user"], password=kw["password"])
                       for _ in range(size - 1)]
        return cls(stores)

    def _call(self, fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
        st = self._free.get()
        try:
            t0 = time.perf_counter()
            out = fn(st, *args)
            return out, time.perf_counter() - t0
        finally:
            self._free.put(st)

    def run(self, jobs: dict[str, tuple]) -> tuple[dict[str, Any], dict[str, float]]:
        """``{name: (fn, *args)}`` with ``fn(store, *args)``: results and seconds by name."""
        if self._executor is None:
            done = {k: self._call(job[0], job[1:]) for k, job in jobs.items()}
        else:
            futures = {k: self._executor.submit(self._call, job[0], job[1:])
                       for k, job in jobs.items()}
            done = {k: f.result() for k, f in futures.items()}
        return {k: v[0] for k, v in done.items()}, {k: v[1] for k, v in done.items()}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        for st in self.stores[1:]:
            st.close()


class WindowCache:
    """A long per-sensor window (the AQI's hour) from parts: the sums of its minutes older
    than the newest data minus ``seal_s`` are asked for once and kept, the last minutes at
    every refresh; means, readings and last times as ``queries.environment_window`` gives
    them (keyed by ``sensor_hash``), up to the order of the additions."""

    def __init__(self, *, seal_s: int = 300, size: int = 8) -> None:
        self.seal_s = seal_s
        self.size = size
        self._items: dict[tuple, pd.DataFrame] = {}
        self._lock = threading.Lock()

    def get(self, store: Store, domain: str, cols: tuple[str, ...], t: int, window_s: int,
            newest: int) -> pd.DataFrame:
        first, last = queries.minute_window(t, window_s)
        # whole minutes that no longer change: start + 60 <= newest - seal_s
        sealed_end = min(last - 60, newest - self.seal_s - 60)
        sealed_end -= sealed_end % 60
        parts = []
        if sealed_end >= first:
            key = (domain, cols, first, sealed_end)
            with self._lock:
                body = self._items.get(key)
            if body is None:
                body = queries.window_sums(store, domain, cols, first - 1, sealed_end)
                with self._lock:
                    self._items[key] = body
                    while len(self._items) > self.size:
                        self._items.pop(next(iter(self._items)))
            parts.append(body)
            head_lo = sealed_end
        else:
            head_lo = first - 1
        parts.append(queries.window_sums(store, domain, cols, head_lo, t))
        df = pd.concat([p for p in parts if len(p)] or parts[-1:], ignore_index=True)
        h = df["sensor_hash"].to_numpy(dtype=np.uint64)
        keys, inv = np.unique(h, return_inverse=True)
        k = len(keys)
        n = np.bincount(inv, weights=df["n"].to_numpy(dtype=np.float64), minlength=k)
        last_minute = np.zeros(k, dtype=np.int64)
        np.maximum.at(last_minute, inv, df["last_minute"].to_numpy(dtype=np.int64))
        out: dict[str, Any] = {"sensor_hash": keys}
        with np.errstate(invalid="ignore", divide="ignore"):
            for c in cols:
                total = np.bincount(inv, weights=df[f"{c}_sum"].to_numpy(dtype=np.float64),
                                    minlength=k)
                count = np.bincount(inv, weights=df[f"{c}_count"].to_numpy(dtype=np.float64),
                                    minlength=k)
                out[c] = total / count
        out["n"] = n.astype(np.int64)
        out["last"] = np.minimum(last_minute + 59, int(t))
        res = pd.DataFrame(out)
        return res[res["n"] > 0].reset_index(drop=True)


class FreshnessCache:
    """:func:`queries.freshness` from the parts of the readings tables, without reading what
    was read before.

    A part never changes: an insert makes a new one, a merge replaces parts by one holding
    their rows. So each part's newest event time, newest arrival and readings per minute (from
    the first minute freshness can ever ask of it) are kept under its partition and block
    range; a merged part whose block range is tiled by kept ranges of its partition is the
    sum of them (nothing read), a part whose newest event time is before the window holds
    nothing for it (nothing read), and only the remaining parts (new inserts, merges of parts
    never kept) are read, ``_part IN (...)``. A live refresh then reads the sink's newest
    parts (a few hundred rows), not the day's ``ts`` column of a table ordered by sensor.

    Same answer as the plain query, up to ``n`` counting a duplicate that a
    ReplacingMergeTree merge removed (it only tells whether there are readings), and except
    for a refresh racing a merge, which sees the merged part at the next refresh.
    """

    def __init__(self) -> None:
        # (domain, partition) -> {(min_block, max_block): (lo, minute, newest, arrived, n)}:
        # the part's rows in the minutes from ``lo`` on
        self._items: dict[tuple[str, str], dict[tuple[int, int], tuple]] = {}
        self._lock = threading.Lock()
        self.read_parts = 0  # parts read so far (tests, profiling)

    def get(self, store: Store, parts: pd.DataFrame) -> pd.DataFrame:
        newest = queries.newest_of_parts(parts)
        lo_of = {d: queries.fresh_from(v) for d, v in newest.items()}
        empty = np.zeros(0, dtype=np.int64)
        rows = list(zip(parts["domain"].astype(str).tolist(), parts["part"].astype(str).tolist(),
                        parts["partition_id"].astype(str).tolist(),
                        parts["min_block"].to_numpy(dtype=np.int64).tolist(),
                        parts["max_block"].to_numpy(dtype=np.int64).tolist(),
                        parts["max_time"].to_numpy(dtype=np.int64).tolist(), strict=True))
        found: dict[tuple[str, str, int, int], tuple] = {}
        ask: dict[str, dict[str, int]] = {}
        where: dict[tuple[str, str], tuple[str, int, int]] = {}
        with self._lock:
            for d, name, pid, b0, b1, mx in rows:
                lo = lo_of.get(d, 0)
                kept = self._items.setdefault((d, pid), {})
                hit = kept.get((b0, b1))
                if hit is not None and hit[0] <= lo:
                    found[(d, pid, b0, b1)] = hit
                elif mx < lo:  # nothing in the window, now or later
                    found[(d, pid, b0, b1)] = (lo, empty, empty, empty, empty)
                else:
                    tiled = _tile(kept, b0, b1, lo)
                    if tiled is not None:
                        found[(d, pid, b0, b1)] = tiled
                    else:
                        ask.setdefault(d, {})[name] = queries.fresh_from(mx)
                        where[(d, name)] = (pid, b0, b1)
        if ask:
            df = queries.freshness_of_parts(store, ask)
            self.read_parts += len(where)
            got: dict[tuple[str, str], list[np.ndarray]] = {}
            if len(df):
                key = (df["domain"].astype(str) + "\0" + df["part"].astype(str)).to_numpy(
                    dtype=object)
                cols = [df[c].to_numpy(dtype=np.int64)
                        for c in ("minute", "newest", "arrived", "n")]
                order = np.argsort(key, kind="stable")
                key = key[order]
                cols = [c[order] for c in cols]
                starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
                ends = np.r_[starts[1:], len(key)]
                for i, j in zip(starts.tolist(), ends.tolist(), strict=True):
                    d, name = str(key[i]).split("\0", 1)
                    got[(d, name)] = [c[i:j] for c in cols]
            for (d, name), (pid, b0, b1) in where.items():
                arrays = got.get((d, name))
                if arrays is None:  # merged away meanwhile: seen at the next refresh
                    continue
                found[(d, pid, b0, b1)] = (ask[d][name], *arrays)
        with self._lock:  # keep what is active now
            fresh: dict[tuple[str, str], dict[tuple[int, int], tuple]] = {}
            for (d, pid, b0, b1), v in found.items():
                fresh.setdefault((d, pid), {})[(b0, b1)] = v
            self._items = fresh
        out = {d: [0, 0, 0] for d in newest}
        for (d, _, _, _), (_, minute, nw, arr, n) in found.items():
            keep = minute >= lo_of.get(d, 0)
            if keep.any():
                r = out.setdefault(d, [0, 0, 0])
                r[0] = max(r[0], int(nw[keep].max()))
                r[1] = max(r[1], int(arr[keep].max()))
                r[2] += int(n[keep].sum())
        return pd.DataFrame({
            "domain": list(out), "newest": np.array([r[0] for r in out.values()], np.uint32),
            "arrived": np.array([r[1] for r in out.values()], np.uint32),
            "n": np.array([r[2] for r in out.values()], np.uint64)})


#: the district rollups the city trends read (``queries.environment_trend`` and others)
DISTRICT_MINUTES = tuple(f"rollup_{d}_district_1m" for d in ("traffic", "environment",
                                                              "utility"))
#: the derived tables a refresh reads
DERIVED_TABLES = ("anomalies", "sensor_health", "district_risk", "alert_events")


def refresh_tables() -> tuple[str, ...]:
    """Every table a refresh of the overview reads (the per-sensor minute tables as
    ``queries.SENSOR_MINUTES`` names them now)."""
    return (*queries.READINGS_TABLES,
            *(queries.sensor_minutes(d) for d in ("traffic", "environment", "utility")),
            *DISTRICT_MINUTES, *DERIVED_TABLES)


def refresh_parts(store: Store, tables: tuple[str, ...]) -> pd.DataFrame:
    """The active parts of ``tables`` (``system.parts``, no data read): ``table``, ``part``,
    ``partition_id``, ``min_block``/``max_block``, ``max_time``, ``rows``, ``mtime`` and
    ``bytes``; the readings tables' rows are what ``queries.readings_parts`` gives, the
    others make the data version of the tables (:class:`ResultCache`)."""
    names = ", ".join(queries.lit(t) for t in tables)
    return store.query(
        "SELECT table, name AS part, partition_id, toInt64(min_block_number) AS min_block, "
        "toInt64(max_block_number) AS max_block, toUInt32(max_time) AS max_time, "
        "toUInt64(rows) AS rows, toUInt32(modification_time) AS mtime, "
        "toUInt64(bytes_on_disk) AS bytes FROM system.parts "
        f"WHERE database = currentDatabase() AND active AND table IN ({names})"
    )


_READINGS = frozenset(queries.READINGS_TABLES)


def split_parts(parts: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple]]:
    """:func:`refresh_parts` as the readings tables' parts (``queries.readings_parts``'s
    columns) and the data version of every table: its active parts (name, modification time,
    rows, bytes), sorted. A part never changes (an insert makes a new one, a merge or a
    mutation replaces parts by new ones), so a query of a fixed moment gives the same answer
    as long as the versions of its tables are the same."""
    table = parts["table"].to_numpy(dtype=object).tolist()
    cols = {c: parts[c].to_numpy() for c in parts.columns if c != "table"}
    by: dict[str, list[tuple]] = {}
    for tb, *row in zip(table, cols["part"].tolist(), cols["mtime"].tolist(),
                        cols["rows"].tolist(), cols["bytes"].tolist(), strict=True):
        by.setdefault(tb, []).append(tuple(row))
    versions = {tb: tuple(sorted(rows)) for tb, rows in by.items()}
    is_r = np.fromiter((tb in _READINGS for tb in table), dtype=bool, count=len(table))
    readings = pd.DataFrame({
        "domain": np.array([tb[len("readings_"):] for tb, r in zip(table, is_r, strict=True)
                            if r], dtype=object),
        **{c: cols[c][is_r] for c in ("part", "partition_id", "min_block", "max_block",
                                      "max_time", "rows")}}, copy=False)
    return readings, versions


class ResultCache:
    """Answers of a refresh's queries by what they ask (``key``: the moment and the tables)
    and the data version of the tables they read (:func:`split_parts`): a refresh whose
    tables have no new part since the last one reuses its answer instead of asking again.
    Answers are shared, never modified. A query racing an insert may hold the new part
    already; its answer then is newer than its version, and the next version differs."""

    def __init__(self, size: int = 48) -> None:
        self.size = size
        self._items: dict[Any, tuple[tuple, Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, store: Store, key: Any, version: tuple, fn: Callable[..., Any],
            *args: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == version:
                self.hits += 1
                return hit[1]
        out = fn(store, *args)
        with self._lock:
            self.misses += 1
            self._items.pop(key, None)
            self._items[key] = (version, out)
            while len(self._items) > self.size:
                self._items.pop(next(iter(self._items)))
        return out

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _tile(kept: dict[tuple[int, int], tuple], b0: int, b1: int, lo: int) -> tuple | None:
    """The entry of blocks ``[b0, b1]`` made of kept entries whose ranges tile it exactly
    (a merge of parts all kept), or ``None``."""
    inside = sorted(k for k in kept if b0 <= k[0] and k[1] <= b1)
    if not inside or inside[0][0] != b0 or inside[-1][1] != b1:
        return None
    for (_, e), (s, _) in itertools.pairwise(inside):
        if s != e + 1:
            return None
    entries = [kept[k] for k in inside]
    if any(e[0] > lo for e in entries):
        return None
    return (max(e[0] for e in entries),
            *(np.concatenate([e[i] for e in entries]) for i in range(1, 5)))


def congestion_trend(store: Store, geo: Geometry, lo: int, hi: int) -> pd.DataFrame:
    """The city's per-minute congestion index over minutes starting in ``(lo, hi]``: what
    ``queries.congestion_trend`` computes, from the loops' minute means weighted with the
    city's segments here instead of a join with the dimension tables in every query."""
    return _weighted_ci(store, geo, queries.loop_minute_means(store, lo, hi))


def loop_means_of_sums(sums: pd.DataFrame) -> pd.DataFrame:
    """``queries.loop_minute_means`` from ``queries.traffic_minute_sums`` (same rows: flowing
    loops with a speed)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        flow = (sums["flow_vph_sum"].to_numpy(dtype=np.float64)
                / sums["flow_vph_count"].to_numpy(dtype=np.float64))
        speed = (sums["speed_kmh_sum"].to_numpy(dtype=np.float64)
                 / sums["speed_kmh_count"].to_numpy(dtype=np.float64))
    keep = (sums["speed_kmh_count"].to_numpy() > 0) & (flow > 0)
    return pd.DataFrame({"minute": sums["minute"].to_numpy()[keep],
                         "sensor_hash": sums["sensor_hash"].to_numpy()[keep],
                         "flow_vph": flow[keep], "speed_kmh": speed[keep]}, copy=False)


def window_of_sums(sums: pd.DataFrame, cols: tuple[str, ...], t: int,
                   window_s: int) -> pd.DataFrame:
    """A per-sensor window (``queries.traffic_window(hashed=True)``: means, ``n``, ``last``)
    from per-minute sums that cover it, up to the order of the additions."""
    first, _ = queries.minute_window(t, window_s)
    minute = sums["minute"].to_numpy(dtype=np.int64)
    take = (minute >= first) & (minute <= t)
    h = sums["sensor_hash"].to_numpy(dtype=np.uint64)[take]
    keys, inv = np.unique(h, return_inverse=True)
    k = len(keys)
    n = np.bincount(inv, weights=sums["n"].to_numpy(dtype=np.float64)[take], minlength=k)
    last_minute = np.zeros(k, dtype=np.int64)
    np.maximum.at(last_minute, inv, minute[take])
    out: dict[str, Any] = {"sensor_hash": keys}
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in cols:
            total = np.bincount(inv, weights=sums[f"{c}_sum"].to_numpy(dtype=np.float64)[take],
                                minlength=k)
            count = np.bincount(inv, weights=sums[f"{c}_count"].to_numpy(
                dtype=np.float64)[take], minlength=k)
            out[c] = total / count
    out["n"] = n.astype(np.int64)
    out["last"] = np.minimum(last_minute + 59, int(t))
    keep = out["n"] > 0
    return pd.DataFrame({c: v[keep] for c, v in out.items()}, copy=False)


def traffic_and_ci_trend(store: Store, geo: Geometry, trends: TrendCache, t: int, lo: int,
                         newest: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The traffic window (5 minutes, per loop) and the city's congestion trend from ``lo``
    in one job: the trend's head (the last five to six minutes, asked at every refresh)
    holds the window's minutes, so both are made of one read of the loops' minute sums
    (``queries.traffic_minute_sums``); a window the head does not cover (time travel far
    back, where every trend minute is kept) is asked for by itself."""
    head: list[pd.DataFrame] = []
    first, _ = queries.minute_window(t, 300)

    def fn(a: int, b: int) -> pd.DataFrame:
        if b == t and a < first:  # the head: its sums also make the window
            sums = queries.traffic_minute_sums(store, a, b)
            head.append(sums)
            return _weighted_ci(store, geo, loop_means_of_sums(sums))
        return congestion_trend(store, geo, a, b)

    ci = trends.get("ci", fn, lo, t, newest, chunk_s=60)
    if head:
        window = window_of_sums(head[-1], queries.TRAFFIC_METRICS, t, 300)
    else:
        window = queries.traffic_window(store, t, hashed=True)
    return window, ci


def _weighted_ci(store: Store, geo: Geometry, df: pd.DataFrame) -> pd.DataFrame:
    p = geo.positions_of_hashes(store, df["sensor_hash"]) if len(df) else np.zeros(0, np.int64)
    seg = np.where(p >= 0, geo.sensor_seg[np.maximum(p, 0)], -1) if len(p) else p
    ok = seg >= 0
    if not ok.any():
        return pd.DataFrame({"minute": np.zeros(0, np.uint32), "ci": np.zeros(0),
                             "mean_speed_kmh": np.zeros(0)})
    minute = df["minute"].to_numpy(dtype=np.int64)[ok]
    flow = df["flow_vph"].to_numpy(dtype=np.float64)[ok]
    speed = df["speed_kmh"].to_numpy(dtype=np.float64)[ok]
    length = geo.seg_len[seg[ok]]
    minutes, inv = np.unique(minute, return_inverse=True)
    tt = np.bincount(inv, weights=flow * length / np.maximum(speed, 1.0))
    ff = np.bincount(inv, weights=flow * length / geo.seg_vf[seg[ok]])
    mean_speed = np.bincount(inv, weights=speed) / np.bincount(inv)
    return pd.DataFrame({"minute": minutes.astype(np.uint32), "ci": tt / ff - 1,
                         "mean_speed_kmh": mean_speed})


def snapshot(
    store: Store, geo: Geometry, *, at: int | None = None, standard: str = "china",
    stale_s: float = 120.0, now: float | None = None, trends: TrendCache | None = None,
    trend_minutes: int = 60, pool: QueryPool | None = None, windows: WindowCache | None = None,
    fresh_cache: FreshnessCache | None = None, results: ResultCache | None = None,
) -> Snapshot:
    """Query the store for the city at ``at`` (epoch s; ``None`` = the newest data).

    The newest event time comes first (from the parts' index, no data read); then every query
    of the moment runs at once on ``pool`` (one after the other without one). With
    ``results``, a query whose tables have no new part since a refresh of the same moment
    is not asked again (:class:`ResultCache`).
    """
    from models.indicators.aqi import aqi as aqi_of
    from models.indicators.traffic import congestion_index

    trends = trends if trends is not None else TrendCache()
    windows = windows if windows is not None else WindowCache()
    fresh_cache = fresh_cache if fresh_cache is not None else FreshnessCache()
    pool = pool if pool is not None else QueryPool([store])
    clock = time.perf_counter

    t0 = clock()
    tables = refresh_tables()
    got, _ = pool.run({"newest": (refresh_parts, tables)})
    parts, versions = split_parts(got["newest"])
    newest_by = queries.newest_of_parts(parts)
    timings: dict[str, float] = {"newest": clock() - t0}
    newest = max(newest_by.values(), default=0)
    live = at is None or at >= newest
    t = newest if live else int(at)  # type: ignore[arg-type]
    lo = t - trend_minutes * 60

    def trend(key: str, fn: Any, lo_: int, chunk_s: int) -> Any:
        return lambda st: trends.get(key, partial(fn, st), lo_, t, newest, chunk_s=chunk_s)

    def cached(name: str, read: tuple[str, ...], job: tuple) -> tuple:
        if results is None:
            return job
        key = (name, t, lo, newest, read)
        return (results.get, key, tuple(versions.get(tb, ()) for tb in read), *job)

    minutes = {d: queries.sensor_minutes(d) for d in ("traffic", "environment", "utility")}
    res, q_times = pool.run({
        "freshness": (fresh_cache.get, parts),
        "traffic": cached("traffic", (minutes["traffic"],),
                          (traffic_and_ci_trend, geo, trends, t, lo, newest)),
        "environment": cached("environment", (minutes["environment"],), (
            windows.get, "environment", queries.ENVIRONMENT_WINDOW, t, 3600, newest)),
        "utility": cached("utility", (minutes["utility"],),
                          (partial(queries.utility_window, hashed=True), t)),
        "env_trend": cached("env_trend", (DISTRICT_MINUTES[1],),
                            (trend("env", queries.environment_trend, lo - 3600, 300),)),
        "util_trend": cached("util_trend", (DISTRICT_MINUTES[2],),
                             (trend("util", queries.utility_trend, lo, 60),)),
        "readings_trend": cached("readings_trend", DISTRICT_MINUTES,
                                 (trend("readings", queries.readings_trend, lo, 60),)),
        "anomalies": cached("anomalies", ("anomalies",), (queries.anomalies_window, t)),
        "health": cached("health", ("sensor_health",), (queries.sensor_health_at, t)),
        "risk": cached("risk", ("district_risk",), (queries.district_risk_at, t)),
        "alerts": cached("alerts", ("alert_events",), (queries.alerts_at, t)),
    })
    timings.update(q_times)
    timings["queries"] = clock() - t0
    fresh = res["freshness"]
    (traffic, ci_trend), env, util = res["traffic"], res["environment"], res["utility"]
    env_trend = res["env_trend"]
    util_trend, rd_trend = res["util_trend"], res["readings_trend"]
    anom, health, risk, alerts = res["anomalies"], res["health"], res["risk"], res["alerts"]
    have = fresh[fresh["n"] > 0]
    arrived = int(have["arrived"].max()) if len(have) else 0
    wall = time.time() if now is None else now
    lag = max(0.0, wall - arrived) if arrived else float("inf")
    t0 = clock()

    kinds = geo.kinds
    n = len(kinds)

    def positions(df: pd.DataFrame) -> np.ndarray:
        if not len(df):
            return np.zeros(0, dtype=np.int64)
        if "sensor_hash" in df.columns:
            return geo.positions_of_hashes(store, df["sensor_hash"])
        pos = geo.sensor_pos
        return np.fromiter((pos.get(x, -1) for x in df["sensor_id"].to_numpy(dtype=object)),
                           dtype=np.int64, count=len(df))

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
        best = district_max_aqi(conc, geo.district_code[p_env[is_air]], len(geo.districts),
                                standard, aqi_of)
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
        st = effective_state(alerts)
        alerts = alerts.assign(state=st)
        sev = alerts["severity"].to_numpy()[st.to_numpy() != "resolved"]
        by_sev = {s: int((sev == s).sum()) for s in (1, 2, 3)}
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


def district_max_aqi(conc: dict[str, np.ndarray], district: np.ndarray, n: int,
                     standard: str, aqi_of: Any) -> np.ndarray:
    """Per district (codes ``0..n-1``): the highest AQI of its stations, -1 where no station
    has one. ``conc``: per pollutant, the stations' concentrations.

    Under China's standard every sub-index is a non-decreasing function of its concentration
    (HJ 633-2012, hourly: SO2 above 800 continues on the 24-hour table; NaN only for a NaN or
    negative concentration), so the highest station AQI of a district -- the highest of the
    stations' highest sub-indices -- is the highest sub-index of the district's highest
    concentrations: the AQI of a dozen districts instead of hundreds of stations (the
    per-station AQI names each station's primary pollutant, the refresh's slowest numpy
    step). Other standards (the US tables have gaps) take the AQI of every station."""
    best = np.full(n, -1.0)
    if standard != "china":
        per_station = np.asarray(aqi_of(conc, standard=standard).aqi, dtype=np.float64)
        np.maximum.at(best, district, np.where(np.isnan(per_station), -1.0, per_station))
        return best
    top: dict[str, np.ndarray] = {}
    for p, c in conc.items():
        m = np.full(n, -np.inf)
        np.fmax.at(m, district, np.asarray(c, dtype=np.float64))  # NaN where all are NaN
        top[p] = np.where(m == -np.inf, np.nan, m)
    res = np.asarray(aqi_of(top, standard=standard).aqi, dtype=np.float64)
    return np.where(np.isnan(res), -1.0, res)


_MAIN = {
    "air": "pm25", "noise": "noise_dba", "weather": "temp_c", "water_flow": "inflow_m3h",
    "water_pressure": "pressure_bar", "power": "load_mw",
}
MAIN_METRIC = {"loop": "speed_kmh", **_MAIN}


def _aqi_trend(env_trend: pd.DataFrame, standard: str, aqi_of: Any, lo: int) -> pd.DataFrame:
    """AQI of trailing 1-hour city-mean concentrations, per 5 minutes from ``lo``."""
    if not len(env_trend):
        return empty_frame("minute", "value")
    def trailing(x: np.ndarray) -> np.ndarray:  # sums over the row and the 11 before it
        padded = np.concatenate([np.zeros(11), x])
        return np.lib.stride_tricks.sliding_window_view(padded, 12).sum(axis=1)

    conc = {}
    for p in POLLUTANTS:
        s = trailing(env_trend[f"{p}_sum"].to_numpy(dtype=np.float64))
        c = trailing(env_trend[f"{p}_n"].to_numpy(dtype=np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            conc[p] = np.where(c > 0, s / np.where(c > 0, c, 1.0), np.nan)
    res = aqi_of(conc, standard=standard)
    minute = env_trend["bucket"].to_numpy()
    keep = minute > lo
    return pd.DataFrame({"minute": minute[keep], "value": np.asarray(res.aqi)[keep]})


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
    """Trend queries in chunks of ``chunk_s`` (per key: a minute for minute trends); a chunk
    wholly older than the newest data minus ``seal_s`` is kept (past data no longer changes),
    so a refresh queries only the head: the last five to six minutes.

    ``fn(lo, hi)`` returns rows with ``ts`` in ``(lo, hi]`` bucketed by a period dividing
    ``chunk_s`` (minute, 5 minutes), ordered by the bucket (the first column); chunks are
    asked for as ``(c - 1, c + chunk_s - 1]``, i.e. ``[c, c + chunk_s)``, so no bucket
    straddles two chunks. Missing chunks next to each other are asked for in one query and
    split; the joined sealed chunks of the last range asked for are kept too.
    """

    def __init__(self, *, chunk_s: int = 60, seal_s: int = 300, size: int = 8192) -> None:
        self.chunk_s = chunk_s
        self.seal_s = seal_s
        self.size = size
        self._items: dict[tuple[Any, int, int], pd.DataFrame] = {}
        self._joined: dict[tuple[Any, int, int, int], pd.DataFrame] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, fn: Any, lo: int, hi: int, newest: int, *,
            chunk_s: int | None = None) -> pd.DataFrame:
        step = int(chunk_s or self.chunk_s)
        c = lo - lo % step
        sealed: list[int] = []
        while c <= hi and c + step - 1 <= hi and c + step <= newest - self.seal_s:
            sealed.append(c)
            c += step
        parts = []
        body = self._sealed(key, fn, sealed, step)
        if body is not None and len(body):
            parts.append(body)
        if c <= hi:
            head = fn(c - 1, hi)  # the head: always fresh
            if len(head):
                parts.append(head)
        if not parts:
            return fn(hi, hi)  # the empty frame with the right columns
        out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        col = out.columns[0]
        return out[out[col] > lo - lo % 60].reset_index(drop=True)

    def _sealed(self, key: Any, fn: Any, starts: list[int], step: int) -> pd.DataFrame | None:
        if not starts:
            return None
        jkey = (key, step, starts[0], starts[-1])
        with self._lock:
            hit = self._joined.get(jkey)
            missing = [c for c in starts if (key, step, c) not in self._items]
        if hit is not None and not missing:
            return hit
        runs: list[list[int]] = []
        for c in missing:
            if runs and runs[-1][-1] + step == c:
                runs[-1].append(c)
            else:
                runs.append([c])
        fetched: dict[tuple[Any, int, int], pd.DataFrame] = {}
        for run in runs:
            df = fn(run[0] - 1, run[-1] + step - 1)
            col = df.columns[0]
            if len(df) > 1 and not df[col].is_monotonic_increasing:
                df = df.sort_values(col, kind="stable").reset_index(drop=True)
            at = df[col].to_numpy(dtype=np.int64)
            for c in run:
                i, j = np.searchsorted(at, [c, c + step])
                fetched[(key, step, c)] = df.iloc[i:j].reset_index(drop=True)
        with self._lock:
            self._items.update(fetched)
            while len(self._items) > self.size:
                self._items.pop(next(iter(self._items)))
            chunks = [fetched.get((key, step, c), self._items.get((key, step, c)))
                      for c in starts]
        frames = [f for f in chunks if f is not None and len(f)]
        joined = (pd.concat(frames, ignore_index=True) if len(frames) > 1
                  else frames[0] if frames else fn(starts[-1] + step - 1, starts[-1] + step - 1))
        with self._lock:
            self._joined[jkey] = joined
            while len(self._joined) > 64:
                self._joined.pop(next(iter(self._joined)))
        return joined


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

    def peek(self, key: Any) -> Snapshot | None:
        """The snapshot kept under ``key``, however old (``None`` if none): nothing built."""
        with self._lock:
            hit = self._items.get(key)
        return hit[1] if hit is not None else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
