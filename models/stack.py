"""The full model stack a worker runs: per kind detectors, health and indicators; per city
risk and alerts. Faust agents, ``citybrain eval`` and the benchmark all call this.

>>> from models.sensors import SensorTable
>>> from models.params import ModelParams
>>> table = SensorTable.of(["S1", "S2"], "loop")
>>> city = CityModels(table, ModelParams())
>>> r = city.update("loop", np.array([0, 1]), np.array([0.0, 0.0]),
...                 np.array([[800.0, 50.0, 10.0], [700.0, 48.0, 9.0]]))
>>> r.score.shape, r.flags.tolist()
((2,), [0, 0])

Per batch (readings of one kind, *global* sensor indices of the table):
``update(kind, sensor, ts, values, seq=None) -> KindResult`` with per-reading combined and
per-detector scores, health flags and the ``late`` mask (dead letters), plus the windows that
closed. Once per batch or per second: ``tick(now) -> TickResult`` with district risk, alert
events, the quality flag per sensor and city indicators. State: ``snapshot(sensor_ids)`` /
``restore(snap)`` per gateway, plain data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from config.domains import KIND_DOMAIN, KINDS
from models.alerts import AlertManager, Signal, collective
from models.base import Batch, ModelsError, ParamsChanged, contiguous, select
from models.detectors.isolation import IsolationDetector
from models.detectors.seasonal import SeasonalDetector
from models.detectors.spatial import SpatialDetector
from models.health import DUPLICATE, LATE, OUT_OF_ORDER, VALUE_FAULTS, SensorHealth
from models.indicators.aqi import aqi as aqi_of
from models.indicators.rolling import WindowRows
from models.indicators.traffic import congestion_index
from models.params import ModelParams
from models.risk import DistrictRisk, RiskResult
from models.sensors import SensorTable

_log = logging.getLogger(__name__)

#: kind -> alert type (None: scored and shown, never alerted on its own)
ALERT_TYPE: dict[str, str | None] = {
    "loop": "traffic",
    "air": "air_quality",
    "noise": "noise",
    "weather": None,
    "water_flow": "water",
    "water_pressure": "water",
    "power": "power",
}
#: metrics the value detectors leave out (circular or mostly zero)
SKIP_METRICS: dict[str, tuple[str, ...]] = {"weather": ("wind_dir_deg", "rain_mmh")}
#: metrics ignored by the stuck check (legitimately constant for long)
SKIP_STUCK: dict[str, tuple[str, ...]] = {"weather": ("rain_mmh", "wind_dir_deg")}
AQI_HISTORY = 60  # 1-minute windows kept for the 1-hour mean of air stations


@dataclass(frozen=True, slots=True)
class KindResult:
    kind: str
    sensor: np.ndarray  # global indices
    ts: np.ndarray
    score: np.ndarray  # combined anomaly score in [0, 1] (NaN: nothing could score)
    seasonal: np.ndarray
    spatial: np.ndarray
    multivariate: np.ndarray
    metric: np.ndarray  # column of the metric that drove the seasonal score (-1 none)
    flags: np.ndarray  # uint16 health flags per reading
    late: np.ndarray  # bool: send to dead letters with reason "late"
    windows: WindowRows  # closed windows (local sensor index of the kind)


@dataclass(frozen=True, slots=True)
class TickResult:
    ts: float
    risk: RiskResult
    alerts: list[dict[str, Any]]
    quality: np.ndarray  # uint16 per sensor (global): value-fault flags held
    indicators: dict[str, Any] = field(default_factory=dict)


class KindModels:
    """Detectors, health and windows for the sensors of one kind (local indices)."""

    def __init__(
        self,
        table: SensorTable,
        kind: str,
        params: ModelParams,
        *,
        seed: int = 0,
        multivariate: bool | None = None,
    ) -> None:
        if kind not in table.members:
            raise ModelsError(f"no sensors of kind {kind!r} in the table")
        self.kind = kind
        self.domain = KIND_DOMAIN[kind]
        self.metrics = KINDS[self.domain][kind]
        m = len(self.metrics)
        ids = table.ids_of(kind)
        g = table.members[kind]
        p = params
        skip = tuple(self.metrics.index(x) for x in SKIP_METRICS.get(kind, ()))
        self.seasonal = SeasonalDetector.from_params(
            ids, p, n_metrics=m, metrics=self.metrics, skip=skip
        )
        nb = table.neighbours(kind, p.spatial.neighbours, same_district=p.spatial.same_district)
        self.spatial = SpatialDetector(
            ids,
            n_metrics=m,
            metrics=self.metrics,
            neighbours=nb,
            window_s=p.windows.window_s,
            lateness_s=p.windows.lateness_s,
            history=AQI_HISTORY if kind == "air" else 1,
            minmax=kind != "loop",  # min/max per window where cheap; loops are most readings
            learning_rate=p.spatial.learning_rate,
            drift_halflife_s=p.health.drift_halflife_s,
            scale_floor=p.seasonal.scale_floor,
            calibration_scale=p.seasonal.calibration_scale,
            skip=skip,
        )
        use_mv = p.multivariate.enabled if multivariate is None else multivariate
        self.isolation = (
            IsolationDetector(
                ids,
                n_metrics=m,
                window_s=p.multivariate.window_s,
                lateness_s=p.windows.lateness_s,
                n_estimators=p.multivariate.n_estimators,
                max_samples=p.multivariate.max_samples,
                fit_after=p.multivariate.fit_after,
                refit_every_s=p.multivariate.refit_every_s,
                buffer=p.multivariate.buffer,
                calibration_scale=p.multivariate.calibration_scale,
                min_sensor_windows=p.multivariate.min_sensor_windows,
                score_every=p.multivariate.score_every,
                seed=seed,
            )
            if use_mv
            else None
        )
        self.health = SensorHealth(
            ids,
            metrics=self.metrics,
            interval_s=table.interval_s[g],
            stuck_readings=p.health.stuck_readings,
            dropout_intervals=p.health.dropout_intervals,
            spike_k=p.health.spike_k,
            drift_z=p.health.drift_z,
            drift_rel=p.health.drift_rel,
            drift_window_s=p.health.drift_window_s,
            drift_halflife_s=p.health.drift_halflife_s,
            drift_baseline_s=p.health.drift_baseline_s,
            drift_persist=p.health.drift_persist,
            drift_rise=p.health.drift_rise,
            skip_stuck=tuple(self.metrics.index(x) for x in SKIP_STUCK.get(kind, ())),
            gateway=table.gateway[g],
        )
        self.mv_in_score = p.multivariate.in_score
        # the forest's windows are built from the spatial detector's when they nest
        ratio = p.multivariate.window_s / p.windows.window_s
        self._shared_windows = abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1
        self.global_index = g
        self.latest_mean = np.full((g.shape[0], m), np.nan)

    def update(
        self,
        sensor_local: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        seq: np.ndarray | None = None,
    ) -> tuple[Any, ...]:
        batch = Batch(sensor_local, ts, values, seq)
        # physically impossible values are flagged by health and kept out of the detectors
        # (as missing): they would drag the baselines and scales for long after the fault
        h = self.health
        # the range limits as (rows, m) blocks (a broadcast (m,) row is several times slower)
        n = values.shape[0]
        lim = self.__dict__.get("_limits")
        if lim is None or lim[0].shape[0] < n or not np.array_equal(lim[2], h.lo) or not (
            np.array_equal(lim[3], h.hi)
        ):
            rows = max(n, 1024)
            lim = self.__dict__["_limits"] = (
                np.tile(h.lo, (rows, 1)),
                np.tile(h.hi, (rows, 1)),
                h.lo.copy(),
                h.hi.copy(),
            )
        if values.ndim == 2 and values.shape[1] == lim[0].shape[1]:
            oor = (values < lim[0][:n]) | (values > lim[1][:n])
        else:
            oor = (values < h.lo) | (values > h.hi)
        det = Batch(sensor_local, ts, np.where(oor, np.nan, values), seq) if oor.any() else batch
        seas = self.seasonal.update(det)
        mv = np.full(len(batch), np.nan)
        iso = self.isolation
        if iso is not None and self._shared_windows:

            def feed(sl: slice, closed: Any, closed_before_s: float) -> None:
                mv[sl] = iso.feed_rows(closed, closed_before_s, batch.sensor[sl])

            spat = self.spatial.update(det, on_chunk=feed)
        else:
            spat = self.spatial.update(det)
            if iso is not None:
                mv = iso.update(det).score
        late = self.spatial.last_late
        flags = self.health.update(batch)
        if late.any():
            flags[late] |= LATE
        rows = self.spatial.last_rows
        if len(rows):
            sl = contiguous(rows.sensor)
            if sl is not None:
                self.latest_mean[sl] = rows.mean
            else:
                self.latest_mean[rows.sensor] = rows.mean
        both = np.fmax(seas.score, spat.score)
        if self.mv_in_score:
            both = np.fmax(both, mv)
        return both, seas.score, spat.score, mv, seas.metric, flags, late, rows

    def snapshot(self, sensors: list[str], *, arrays: bool = False) -> dict[str, Any]:
        out = {
            "seasonal": self.seasonal.snapshot(sensors, arrays=arrays),
            "spatial": self.spatial.snapshot(sensors, arrays=arrays),
            "health": self.health.snapshot(sensors, arrays=arrays),
        }
        if self.isolation is not None:
            out["isolation"] = self.isolation.snapshot(sensors, arrays=arrays)
        return out

    def restore(self, snap: dict[str, Any]) -> list[str]:
        """Restore each model; one whose parameters changed since the snapshot (a config change
        between a checkpoint and a restart) keeps its current state for these sensors, i.e.
        starts cold, instead of failing the whole restore. Returns the names of those models."""
        parts: list[tuple[str, Any]] = [
            ("seasonal", self.seasonal), ("spatial", self.spatial), ("health", self.health),
        ]
        if self.isolation is not None and "isolation" in snap:
            parts.append(("isolation", self.isolation))
        cold = []
        for name, model in parts:
            try:
                model.restore(snap[name])
            except ParamsChanged:
                cold.append(f"{self.kind}.{name}")
        return cold


class CityModels:
    """Everything a worker runs for the sensors of ``table``; see the module docstring."""

    def __init__(
        self,
        table: SensorTable,
        params: ModelParams,
        *,
        seed: int = 0,
        multivariate: bool | None = None,
    ) -> None:
        self.table = table
        self.params = params
        self.kinds = {
            k: KindModels(table, k, params, seed=seed, multivariate=multivariate)
            for k in table.kinds
        }
        self.risk = DistrictRisk(
            table,
            weights=params.risk.weights,
            cutoffs=params.risk.cutoffs,
            top_k=params.risk.top_k,
            stale_s=params.risk.stale_s,
        )
        thr = {t: params.threshold(KIND_DOMAIN[k]) for k, t in ALERT_TYPE.items() if t}
        a = params.alerts
        self.alerts = AlertManager(
            thresholds=thr,
            close_ratio=a.close_ratio,
            open_after_s=a.open_after_s,
            resolve_after_s=a.resolve_after_s,
            escalate_after_s=a.escalate_after_s,
            min_sensors=a.min_sensors,
            corroborate_sensors=a.corroborate_sensors,
        )
        self.threshold = np.array(
            [params.threshold(KIND_DOMAIN[k]) for k in table.kind.tolist()], dtype=np.float64
        )
        self.watermark = -np.inf
        self._types = sorted({t for t in ALERT_TYPE.values() if t})
        tpos = {t: i for i, t in enumerate(self._types)}
        self._type_code = np.array(
            [tpos.get(ALERT_TYPE.get(k) or "", -1) for k in table.kind.tolist()], dtype=np.int64
        )
        kpos = {k: i for i, k in enumerate(table.kinds)}
        self._kind_code = np.array([kpos[k] for k in table.kind.tolist()], dtype=np.int64)

    def update(
        self,
        kind: str,
        sensor: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        seq: np.ndarray | None = None,
    ) -> KindResult:
        """Score readings of one kind (``sensor``: global indices of the table)."""
        km = self.kinds.get(kind)
        if km is None:
            raise ModelsError(f"no sensors of kind {kind!r} in this worker's table")
        sensor = np.asarray(sensor, dtype=np.int64)
        local = self.table.local[sensor]
        wrong = self._kind_code[sensor] != self.table.kinds.index(kind)
        if wrong.any():
            bad = self.table.ids[sensor[wrong][0]]
            raise ModelsError(f"sensor {bad} is not of kind {kind!r}")
        both, seas, spat, mv, metric, flags, late, rows = km.update(local, ts, values, seq)
        # untrusted readings (value faults, duplicates, out of order, late) do not feed risk
        bad = (flags & (VALUE_FAULTS | DUPLICATE | OUT_OF_ORDER | LATE)) != 0
        self.risk.observe(sensor, ts, select(bad, np.nan, both))
        if len(ts):
            self.watermark = max(self.watermark, float(np.max(ts)))
        return KindResult(kind, sensor, ts, both, seas, spat, mv, metric, flags, late, rows)

    def update_frame(self, frame: Any) -> KindResult:
        """Score a decoded :class:`models.frame.Frame` (unknown sensors raise)."""
        kind = frame.kind
        if kind is None:
            raise ModelsError(f"gateway {frame.gateway}: metrics match no kind")
        sensor = self.table.lookup(frame.sensor_id)
        if (sensor < 0).any():
            bad = frame.sensor_id[int(np.argmax(sensor < 0))]
            raise ModelsError(f"gateway {frame.gateway}: unknown sensor {bad}")
        names = KINDS[KIND_DOMAIN[kind]][kind]
        values = np.column_stack([frame.metrics[m] for m in names])
        return self.update(kind, sensor, frame.ts, values, frame.seq)

    def quality(self, now: float) -> np.ndarray:
        q = np.zeros(len(self.table), dtype=np.uint16)
        for km in self.kinds.values():
            km.health.dropouts(now)
            q[km.global_index] = km.health.quality(now)
        return q

    def signals(
        self, now: float, quality: np.ndarray, indicators: dict[str, Any] | None = None
    ) -> dict[tuple[str, str], Signal]:
        """Alert signals per (district, type) from fresh scores of healthy sensors; with
        ``alerts.aqi_level`` > 0, air-quality signals come from the stations' hourly AQI in
        ``indicators`` instead of their anomaly scores, and with ``alerts.power_min_kv`` > 0
        power signals from the feeders' voltage (:meth:`power_signals`)."""
        r = self.risk
        usable = ((quality & VALUE_FAULTS) == 0) & self.warmed(now)
        a = self.params.alerts
        extra: dict[tuple[str, str], Signal] = {}
        if a.aqi_level > 0 and "air" in self.kinds:
            air = self.kinds["air"].global_index
            usable_air = usable[air]
            usable[air] = False
            if indicators is not None and "aqi" in indicators:
                extra.update(self.aqi_signals(indicators["aqi"].aqi, usable_air, a.aqi_level))
        if a.power_min_kv > 0 and "power" in self.kinds:
            km = self.kinds["power"]
            with np.errstate(invalid="ignore"):
                fresh = now - km.health.max_ts <= self.params.risk.stale_s
            usable_pw = usable[km.global_index] & fresh
            usable[km.global_index] = False
            extra.update(self.power_signals(usable_pw))
        out = self.signals_of(now, r.score, r.score_ts, usable)
        out.update(extra)
        return out

    def power_signals(self, usable: np.ndarray) -> dict[tuple[str, str], Signal]:
        """Power signals per district from the feeders' voltage: a feeder is *hot* when the
        mean voltage of its last closed window is below ``alerts.power_min_kv`` (the
        statutory lower limit; the voltage sags as the feeder's load rises, so this is the
        overload an operator acts on). Strength: the threshold at the limit, rising to 1 at
        5 % below it. ``usable``: per feeder (local index), fresh and healthy."""
        lim = self.params.alerts.power_min_kv
        km = self.kinds["power"]
        if "voltage_kv" not in km.metrics:
            return {}
        v = np.where(usable, km.latest_mean[:, km.metrics.index("voltage_kv")], np.nan)
        with np.errstate(invalid="ignore"):
            low = v < lim
        if not low.any():
            return {}
        g = km.global_index
        thr = self.params.threshold(KIND_DOMAIN["power"])
        dc = self.table.district_code[g]
        out: dict[tuple[str, str], Signal] = {}
        for d in np.unique(dc[low]).tolist():
            sel = low & (dc == d)
            worst = float(np.min(v[sel]))
            strength = thr + (1.0 - thr) * float(np.clip((lim - worst) / (0.05 * lim), 0.0, 1.0))
            ids = tuple(str(x) for x in self.table.ids[g[sel]])
            out[(self.table.districts[d], "power")] = Signal(strength, len(ids), ids)
        return out

    def aqi_signals(
        self, aqi: np.ndarray, usable: np.ndarray, level: float
    ) -> dict[tuple[str, str], Signal]:
        """Air-quality signals per district from the stations' hourly AQI: a station is
        *hot* when its AQI reaches ``level`` (absolute), or when it stands out from the city,
        at least ``aqi_ratio`` times the median station AQI and ``aqi_excess`` points above it
        (a local episode on a clean day). Strength: the threshold when hot, rising to 1 at
        AQI 500."""
        a = self.params.alerts
        g = self.kinds["air"].global_index
        thr = self.params.threshold(KIND_DOMAIN["air"])
        val = np.where(usable, aqi, np.nan)
        ok = ~np.isnan(val)
        if not ok.any():
            return {}
        med = float(np.median(val[ok]))
        v = np.where(ok, val, -1.0)
        hot = (v >= level) | ((v >= a.aqi_ratio * med) & (v - med >= a.aqi_excess))
        out: dict[tuple[str, str], Signal] = {}
        if not hot.any():
            return out
        dc = self.table.district_code[g]
        for d in np.unique(dc[hot]).tolist():
            sel = hot & (dc == d)
            top = float(np.max(v[sel]))
            strength = thr + (1.0 - thr) * float(np.clip((top - 50.0) / 450.0, 0.0, 1.0))
            ids = tuple(str(x) for x in self.table.ids[g[sel]])
            out[(self.table.districts[d], "air_quality")] = Signal(strength, len(ids), ids)
        return out

    def warmed(self, now: float) -> np.ndarray:
        """Per sensor (global): heard from for at least ``alerts.warmup_s`` of event time, so
        its detectors have learned a baseline; younger sensors feed neither risk nor alerts."""
        with np.errstate(invalid="ignore"):
            return now - self.risk.first_ts >= self.params.alerts.warmup_s

    def signals_of(
        self,
        now: float,
        score: np.ndarray,
        score_ts: np.ndarray,
        usable: np.ndarray | None = None,
    ) -> dict[tuple[str, str], Signal]:
        """Alert signals per (district, type) from per-sensor ``score`` observed at
        ``score_ts`` (global index); ``usable``: optional bool mask of trusted sensors.
        Shared with the evaluation baselines so only the detectors differ."""
        with np.errstate(invalid="ignore"):
            fresh = (now - score_ts <= self.params.risk.stale_s) & ~np.isnan(score)
        fresh &= self._type_code >= 0
        if usable is not None:
            fresh &= usable
        idx = np.flatnonzero(fresh)
        if idx.size == 0:
            return {}
        nt = len(self._types)
        key = self.table.district_code[idx] * nt + self._type_code[idx]
        sc = score[idx]
        hot = sc >= self.threshold[idx]
        strength = np.full(len(self.table.districts) * nt, -1.0)
        np.maximum.at(strength, key, sc)
        count = np.bincount(key[hot], minlength=strength.shape[0])
        a = self.params.alerts
        if a.collective_level > 0:  # many sensors moderately anomalous together, locally
            many = collective(
                key,
                self._type_code[idx],
                sc,
                strength.shape[0],
                level=a.collective_level,
                min_sensors=a.collective_sensors,
                min_share=a.collective_share,
                ratio=a.collective_ratio,
            )
            if many.any():
                # the key is as good as at its threshold, and the elevated sensors are the
                # corroborating ones (independent sensors agreeing: no wait)
                thr_k = np.zeros(strength.shape[0])
                thr_k[key] = self.threshold[idx]
                strength = np.where(many, np.maximum(strength, thr_k), strength)
                hot = hot | (many[key] & (sc >= a.collective_level))
                count = np.bincount(key[hot], minlength=strength.shape[0])
        out: dict[tuple[str, str], Signal] = {}
        hot_ids: dict[int, list[str]] = {}
        for k, i in zip(key[hot].tolist(), idx[hot].tolist(), strict=True):
            hot_ids.setdefault(k, []).append(str(self.table.ids[i]))
        for k in np.flatnonzero(strength >= 0).tolist():
            d, t = divmod(k, nt)
            out[(self.table.districts[d], self._types[t])] = Signal(
                float(strength[k]), int(count[k]), tuple(hot_ids.get(k, ()))
            )
        return out

    def tick(self, now: float | None = None) -> TickResult:
        """Risk, alerts, quality and city indicators at event time ``now`` (default: the
        watermark)."""
        t = self.watermark if now is None else float(now)
        q = self.quality(t)
        indicators = self.indicators()
        ind_sub: dict[str, np.ndarray] = {}
        if "aqi" in indicators:
            ind_sub["environment"] = np.clip((indicators["aqi_district"] - 100.0) / 200.0, 0, 1)
        unhealthy = ((q & VALUE_FAULTS) != 0) | ~self.warmed(t)
        risk = self.risk.assess(t, unhealthy=unhealthy, indicators=ind_sub)
        events = self.alerts.update(t, self.signals(t, q, indicators))
        return TickResult(t, risk, events, q, indicators)

    def indicators(self) -> dict[str, Any]:
        """City indicators from the latest closed windows: congestion per district (and
        city), AQI per air station and district (hourly means)."""
        out: dict[str, Any] = {}
        tb = self.table
        nd = len(tb.districts)
        if "loop" in self.kinds:
            km = self.kinds["loop"]
            g = km.global_index
            flow, speed = km.latest_mean[:, 0], km.latest_mean[:, 1]
            length = np.where(np.isnan(tb.length_km[g]), 1.0, tb.length_km[g])
            vf = tb.free_speed_kmh[g]
            if not np.isnan(vf).all():
                out["congestion_district"] = congestion_index(
                    speed, vf, length, flow, groups=tb.district_code[g], n_groups=nd
                )
                out["congestion_city"] = float(congestion_index(speed, vf, length, flow)[0])
        if "air" in self.kinds:
            km = self.kinds["air"]
            hist = km.spatial.windows.hist
            cnt = np.sum(~np.isnan(hist), axis=1)
            hour_mean = np.where(cnt > 0, np.nansum(hist, axis=1) / np.maximum(cnt, 1), np.nan)
            if hour_mean.size:
                conc = {p: hour_mean[:, i] for i, p in enumerate(km.metrics)}
                res = aqi_of(conc, standard=self.params.aqi.standard)
                out["aqi"] = res
                dc = tb.district_code[km.global_index]
                vals = np.where(np.isnan(res.aqi), -1.0, res.aqi)
                best = np.full(nd, -1.0)
                np.maximum.at(best, dc, vals)
                out["aqi_district"] = np.where(best < 0, np.nan, best)
        return out

    # --- the tick's inputs, for a tick run elsewhere ----------------------------------
    def tick_state(self, sensors: np.ndarray | None = None) -> dict[str, Any]:
        """What :meth:`tick` reads of ``sensors`` (global indices, None: all), as plain data
        with numpy arrays: per sensor the risk inputs (latest score, its time, first reading),
        and per kind the health clocks (``max_ts``, ``flag_ts``, ``flag_t0``), the latest
        window means and, for air, the spatial window history the hourly AQI is taken from.

        A process that scores only some sensors (a stream worker, a backfill worker) sends
        this to the one that ticks for the whole city, which merges it with
        :meth:`apply_tick_state`: a tick there then equals a tick of one process that scored
        every sensor (``tests/models/test_tick_state.py``). The models' per-sensor scoring never
        reads what a tick writes (the dropout marks), so the scoring side needs nothing back.
        """
        tb = self.table
        idx = (np.arange(len(tb), dtype=np.int64) if sensors is None
               else np.unique(np.asarray(sensors, dtype=np.int64)))
        state: dict[str, Any] = {
            "watermark": float(self.watermark) if np.isfinite(self.watermark) else None,
            "idx": idx,
            "score": self.risk.score[idx],
            "score_ts": self.risk.score_ts[idx],
            "first_ts": self.risk.first_ts[idx],
            "kinds": {},
        }
        code = self._kind_code[idx]
        for i, kind in enumerate(tb.kinds):
            g = idx[code == i]
            if not g.size:
                continue
            km = self.kinds[kind]
            loc = tb.local[g]
            h = km.health
            s: dict[str, Any] = {
                "idx": g,
                "max_ts": h.max_ts[loc],
                "flag_ts": h.flag_ts[loc],
                "flag_t0": h.flag_t0[loc],
                "latest_mean": km.latest_mean[loc],
            }
            if kind == "air":
                s["hist"] = km.spatial.windows.hist[loc]
            state["kinds"][kind] = s
        return state

    def apply_tick_state(self, state: dict[str, Any]) -> None:
        """Take over :meth:`tick_state` of another process's sensors (its latest values win).

        The health flag times combine by maximum (every write to them is a running maximum),
        and an episode start (``flag_t0``) is taken where the sender has one: this process's
        own ticks mark dropouts, which the sender (it never ticks) never does."""
        tb = self.table
        idx = np.asarray(state["idx"], dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(tb)):
            raise ModelsError("tick state: sensor index outside this city's table")
        self.risk.score[idx] = state["score"]
        self.risk.score_ts[idx] = state["score_ts"]
        self.risk.first_ts[idx] = state["first_ts"]
        for kind, s in state["kinds"].items():
            km = self.kinds.get(kind)
            if km is None:
                raise ModelsError(f"tick state: no sensors of kind {kind!r} in this table")
            g = np.asarray(s["idx"], dtype=np.int64)
            if (self._kind_code[g] != tb.kinds.index(kind)).any():
                raise ModelsError(f"tick state: sensors of another kind under {kind!r}")
            loc = tb.local[g]
            h = km.health
            h.max_ts[loc] = s["max_ts"]
            h.flag_ts[loc] = np.fmax(h.flag_ts[loc], s["flag_ts"])
            t0 = np.asarray(s["flag_t0"])
            h.flag_t0[loc] = np.where(np.isnan(t0), h.flag_t0[loc], t0)
            km.latest_mean[loc] = s["latest_mean"]
            if "hist" in s:
                km.spatial.windows.hist[loc] = s["hist"]
        wm = state.get("watermark")
        if wm is not None:
            self.watermark = max(self.watermark, float(wm))

    # --- state -------------------------------------------------------------------------
    def snapshot(self, sensors: list[str], *, arrays: bool = False) -> dict[str, Any]:
        """Plain-data state of ``sensors`` (e.g. one gateway's), JSON-safe; ``arrays=True``:
        per-sensor state as numpy arrays for orjson's ``OPT_SERIALIZE_NUMPY`` (same JSON)."""
        idx = self.table.lookup(sensors)
        if (idx < 0).any():
            raise ModelsError(f"snapshot: unknown sensor {sensors[int(np.argmax(idx < 0))]}")
        out: dict[str, Any] = {"version": 1, "kinds": {}}
        for kind in sorted(set(self.table.kind[idx].tolist())):
            ids = [s for s, i in zip(sensors, idx, strict=True) if self.table.kind[i] == kind]
            out["kinds"][kind] = self.kinds[kind].snapshot(ids, arrays=arrays)
        out["risk"] = self.risk.snapshot(sensors, arrays=arrays)
        return out

    def restore(self, snap: dict[str, Any]) -> list[str]:
        """Restore the state of a snapshot's sensors. Models whose parameters changed since the
        snapshot start cold for those sensors (logged as a warning); their names are returned."""
        cold: list[str] = []
        for kind, s in snap["kinds"].items():
            if kind not in self.kinds:
                raise ModelsError(f"restore: no sensors of kind {kind!r} in this table")
            cold += self.kinds[kind].restore(s)
        try:
            self.risk.restore(snap["risk"])
        except ParamsChanged:
            cold.append("risk")
        if cold:
            _log.warning(
                "model state of %d sensors was saved with other parameters: %s start cold",
                len(snap.get("risk", {}).get("sensors", [])), ", ".join(cold),
            )
        return cold

    def snapshot_alerts(self) -> dict[str, Any]:
        return self.alerts.snapshot()

    def restore_alerts(self, snap: dict[str, Any]) -> None:
        self.alerts.restore(snap)
