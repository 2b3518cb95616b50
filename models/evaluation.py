"""Evaluation harness: run a labelled stream through the models and score the detections.

Input is generic: an iterable of frames (or of lists of frames, one list per simulation step)
and label-like objects with ``id, type, start, end, sensors, district`` (e.g.
:class:`sensors_sim.labels.Label`). Three systems see the same batches:

* ``citybrain`` -- the full :class:`~models.stack.CityModels` stack (detectors, sensor health,
  alert state machine);
* ``threshold`` -- fixed limits per metric (:mod:`models.detectors.threshold`);
* ``zscore`` -- a plain rolling z-score (:mod:`models.detectors.zscore`);

the two baselines feed the same alert state machine, so only the detectors differ.

Matching rules
--------------
* **Incidents**: an alert is attributed to a label when their types correspond
  (:data:`INCIDENT_ALERT_TYPES`), it opened within ``[start - slack_s, end + slack_s]`` and it
  is in the label's district or names one of its sensors. Recall = labels with an attributed
  alert / labels; precision = attributed alerts / alerts of the corresponding alert types;
  delay = first attributed alert's opening - label start. Alerts attributed to nothing are
  false alarms, also reported per district per simulated day.
* **Faults** (citybrain only): a health flag of the fault's type on one of the label's sensors
  inside ``[start, end + slack_s]`` detects it; flag episodes (same sensor and flag, gaps below
  ``episode_gap_s``) that touch no label of that type are false positives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from config.domains import KIND_DOMAIN, KINDS
from models.alerts import AlertManager, Signal
from models.detectors.threshold import ThresholdDetector
from models.detectors.zscore import RollingZScore
from models.health import FLAG_NAMES
from models.params import ModelParams
from models.sensors import SensorTable
from models.stack import ALERT_TYPE, CityModels

INCIDENT_ALERT_TYPES: dict[str, tuple[str, ...]] = {
    "crash": ("traffic",),
    "event": ("traffic", "noise"),
    "pollution": ("air_quality",),
    "burst": ("water",),
    "heatwave": ("power",),
}
FAULT_FLAGS: dict[str, str] = {name: name for name in FLAG_NAMES.values()}
SYSTEMS = ("citybrain", "threshold", "zscore")


class LabelLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def sensors(self) -> Sequence[str]: ...
    @property
    def district(self) -> str: ...


@dataclass
class _Baseline:
    """A baseline detector per kind + latest scores + the shared alert state machine."""

    detectors: dict[str, Any]
    score: np.ndarray
    score_ts: np.ndarray
    alerts: AlertManager


def _flatten(stream: Iterable[Any]) -> Iterable[list[Any]]:
    for item in stream:
        yield item if isinstance(item, list) else [item]


def _alert_manager(params: ModelParams) -> AlertManager:
    a = params.alerts
    thr = {t: params.threshold(KIND_DOMAIN[k]) for k, t in ALERT_TYPE.items() if t}
    return AlertManager(
        thresholds=thr,
        close_ratio=a.close_ratio,
        open_after_s=a.open_after_s,
        resolve_after_s=a.resolve_after_s,
        escalate_after_s=a.escalate_after_s,
        min_sensors=a.min_sensors,
        corroborate_sensors=a.corroborate_sensors,
    )


def run_stream(
    stream: Iterable[Any],
    table: SensorTable,
    params: ModelParams,
    *,
    seed: int = 0,
    tick_s: float = 10.0,
    baselines: bool = True,
    multivariate: bool | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run every system over the stream; returns alerts per system, health detections and
    the time span."""
    city = CityModels(table, params, seed=seed, multivariate=multivariate)
    n = len(table)
    base: dict[str, _Baseline] = {}
    if baselines:
        for name in ("threshold", "zscore"):
            dets: dict[str, Any] = {}
            for k in table.kinds:
                ids = table.ids_of(k)
                metrics = KINDS[KIND_DOMAIN[k]][k]
                dets[k] = (
                    ThresholdDetector(ids, metrics=metrics)
                    if name == "threshold"
                    else RollingZScore(ids, n_metrics=len(metrics), span=60)
                )
            base[name] = _Baseline(
                dets, np.full(n, np.nan), np.full(n, np.nan), _alert_manager(params)
            )
    alerts: dict[str, list[dict[str, Any]]] = {
        s: [] for s in SYSTEMS if s == "citybrain" or baselines
    }
    detections: list[tuple[str, int, float]] = []  # (flag name, global sensor, ts)
    t_first = np.inf
    t_last = -np.inf
    next_tick = None
    n_readings = 0
    for step in _flatten(stream):
        by_kind: dict[str, list[Any]] = {}
        for f in step:
            if f.kind is None:
                continue
            by_kind.setdefault(f.kind, []).append(f)
        for kind, frames in by_kind.items():
            if kind not in table.members:
                continue
            names = KINDS[KIND_DOMAIN[kind]][kind]
            ids = np.concatenate([f.sensor_id for f in frames])
            sensor = table.lookup(ids)
            keep = sensor >= 0
            ts = np.concatenate([f.ts for f in frames])[keep]
            values = np.column_stack(
                [np.concatenate([f.metrics[m] for f in frames]) for m in names]
            )[keep]
            seq = np.concatenate([f.seq for f in frames])[keep]
            sensor = sensor[keep]
            if sensor.size == 0:
                continue
            n_readings += sensor.size
            t_first = min(t_first, float(ts.min()))
            t_last = max(t_last, float(ts.max()))
            res = city.update(kind, sensor, ts, values, seq)
            hit = np.flatnonzero(res.flags)
            for i in hit.tolist():
                fl = int(res.flags[i])
                for bit, name in FLAG_NAMES.items():
                    if fl & bit:
                        detections.append((name, int(sensor[i]), float(ts[i])))
            local = table.local[sensor]
            from models.base import Batch

            for b in base.values():
                r = b.detectors[kind].update(Batch(local, ts, values, seq))
                ok = ~np.isnan(r.score)
                b.score[sensor[ok]] = r.score[ok]
                b.score_ts[sensor[ok]] = ts[ok]
        if city.watermark == -np.inf:
            continue
        if next_tick is None:
            next_tick = city.watermark
        while city.watermark >= next_tick:
            tick = city.tick(next_tick)
            alerts["citybrain"].extend(tick.alerts)
            q = tick.quality
            drop = np.flatnonzero(q & 16)
            for i in drop.tolist():
                detections.append(("dropout", int(i), float(next_tick)))
            for name, b in base.items():
                alerts[name].extend(
                    b.alerts.update(next_tick, _signals(city, b, next_tick, params))
                )
            next_tick += tick_s
        if progress is not None:
            progress(t_last)
    return {
        "alerts": alerts,
        "detections": detections,
        "start": t_first,
        "end": t_last,
        "readings": n_readings,
    }


def _signals(
    city: CityModels, b: _Baseline, now: float, params: ModelParams
) -> dict[tuple[str, str], Signal]:
    return city.signals_of(now, b.score, b.score_ts, city.warmed(now))


def score_alerts(
    opened: list[dict[str, Any]],
    labels: Sequence[LabelLike],
    *,
    n_districts: int,
    duration_s: float,
    slack_s: float = 300.0,
) -> dict[str, Any]:
    """Precision/recall/F1/median delay per incident type, and false alarms per district-day."""
    incidents = [lab for lab in labels if lab.type in INCIDENT_ALERT_TYPES]
    attributed: dict[int, str] = {}  # alert index -> label id
    first: dict[str, float] = {}
    for ai, a in enumerate(opened):
        best = None
        for lab in incidents:
            if a["type"] not in INCIDENT_ALERT_TYPES[lab.type]:
                continue
            if not lab.start - slack_s <= a["ts"] <= lab.end + slack_s:
                continue
            if a["district"] != lab.district and not set(a["sensors"]) & set(lab.sensors):
                continue
            if best is None or abs(a["ts"] - lab.start) < abs(a["ts"] - best.start):
                best = lab
        if best is not None:
            attributed[ai] = best.id
            first[best.id] = min(first.get(best.id, np.inf), a["ts"])
    out: dict[str, Any] = {}
    for typ, atypes in INCIDENT_ALERT_TYPES.items():
        labs = [lab for lab in incidents if lab.type == typ]
        ids = {lab.id for lab in labs}
        relevant = [i for i, a in enumerate(opened) if a["type"] in atypes]
        tp_alerts = sum(1 for i in relevant if attributed.get(i) in ids)
        fp_alerts = sum(1 for i in relevant if i not in attributed)
        detected = [lab for lab in labs if lab.id in first]
        if not labs and not fp_alerts:
            continue
        prec = tp_alerts / (tp_alerts + fp_alerts) if (tp_alerts + fp_alerts) else None
        rec = len(detected) / len(labs) if labs else None
        f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if labs else None)
        delays = [first[lab.id] - lab.start for lab in detected]
        out[typ] = {
            "labels": len(labs),
            "detected": len(detected),
            "alerts": tp_alerts + fp_alerts,
            "precision": prec,
            "recall": rec,
            "f1": f1,
            "median_delay_s": float(np.median(delays)) if delays else None,
        }
    false_alarms = sum(1 for i in range(len(opened)) if i not in attributed)
    days = max(duration_s, 1.0) / 86400.0
    labs_n = len(incidents)
    det_n = len(first)
    total_tp = len(attributed)
    out["_all"] = {
        "labels": labs_n,
        "detected": det_n,
        "alerts": len(opened),
        "precision": total_tp / len(opened) if opened else None,
        "recall": det_n / labs_n if labs_n else None,
        "false_alarms": false_alarms,
        "false_alarms_per_district_day": false_alarms / (n_districts * days),
    }
    return out


def score_faults(
    detections: list[tuple[str, int, float]],
    labels: Sequence[LabelLike],
    table: SensorTable,
    *,
    slack_s: float = 300.0,
    episode_gap_s: float = 600.0,
) -> dict[str, Any]:
    faults = [lab for lab in labels if lab.type in FAULT_FLAGS]
    # episodes per (flag, sensor)
    det = sorted(detections, key=lambda d: (d[0], d[1], d[2]))
    episodes: list[tuple[str, str, float, float]] = []
    for name, s, t in det:
        sid = str(table.ids[s])
        if (
            episodes
            and episodes[-1][0] == name
            and episodes[-1][1] == sid
            and t - episodes[-1][3] <= episode_gap_s
        ):
            e = episodes[-1]
            episodes[-1] = (name, sid, e[2], t)
        else:
            episodes.append((name, sid, t, t))
    out: dict[str, Any] = {}
    for typ in sorted({lab.type for lab in faults} | {e[0] for e in episodes}):
        labs = [lab for lab in faults if lab.type == typ]
        eps = [e for e in episodes if e[0] == typ]
        first: dict[str, float] = {}
        tp_eps = 0
        for _name, sid, a, b in eps:
            hit = False
            for lab in labs:
                if sid in lab.sensors and a <= lab.end + slack_s and b >= lab.start - slack_s:
                    hit = True
                    if a <= lab.end + slack_s:
                        t0 = max(a, lab.start)
                        first[lab.id] = min(first.get(lab.id, np.inf), t0)
            tp_eps += hit
        prec = tp_eps / len(eps) if eps else None
        rec = len(first) / len(labs) if labs else None
        f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if labs else None)
        delays = [first[lab.id] - lab.start for lab in labs if lab.id in first]
        out[typ] = {
            "labels": len(labs),
            "detected": len(first),
            "episodes": len(eps),
            "precision": prec,
            "recall": rec,
            "f1": f1,
            "median_delay_s": float(np.median(delays)) if delays else None,
        }
    return out


def evaluate(
    stream: Iterable[Any],
    labels: Sequence[LabelLike],
    table: SensorTable,
    params: ModelParams,
    *,
    seed: int = 0,
    tick_s: float = 10.0,
    slack_s: float = 300.0,
    baselines: bool = True,
    multivariate: bool | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run and score; returns a JSON-ready report (see the module docstring)."""
    run = run_stream(
        stream,
        table,
        params,
        seed=seed,
        tick_s=tick_s,
        baselines=baselines,
        multivariate=multivariate,
        progress=progress,
    )
    duration = max(0.0, run["end"] - run["start"]) if run["readings"] else 0.0
    report: dict[str, Any] = {
        "duration_s": duration,
        "readings": run["readings"],
        "districts": len(table.districts),
        "systems": {},
    }
    for name, events in run["alerts"].items():
        opened = [e for e in events if e["event"] == "opened"]
        sysrep: dict[str, Any] = {
            "incidents": score_alerts(
                opened,
                labels,
                n_districts=len(table.districts),
                duration_s=duration,
                slack_s=slack_s,
            )
        }
        # the opened alerts themselves, for looking into false alarms and delays
        sysrep["opened"] = [
            {
                "ts": e["ts"],
                "district": e["district"],
                "type": e["type"],
                "peak": e["peak"],
                "sensors": e["sensors"][:5],
            }
            for e in opened
        ]
        if name == "citybrain":
            sysrep["faults"] = score_faults(run["detections"], labels, table, slack_s=slack_s)
        report["systems"][name] = sysrep
    return report


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report (per type: precision, recall, F1, delay)."""

    def f(x: Any, pct: bool = False) -> str:
        if x is None:
            return "-"
        return f"{x:.2f}" if not pct else f"{x:.0f}"

    lines = [
        f"duration {report['duration_s'] / 3600:.1f} h, {report['readings']} readings, "
        f"{report['districts']} districts",
        "",
        f"{'system':<10} {'type':<13} {'labels':>6} {'found':>5} {'alerts':>6} "
        f"{'prec':>5} {'recall':>6} {'F1':>5} {'delay_s':>8}",
    ]
    for name, sysrep in report["systems"].items():
        for typ, r in sysrep["incidents"].items():
            if typ == "_all":
                continue
            lines.append(
                f"{name:<10} {typ:<13} {r['labels']:>6} {r['detected']:>5} {r['alerts']:>6} "
                f"{f(r['precision']):>5} {f(r['recall']):>6} {f(r['f1']):>5} "
                f"{f(r['median_delay_s'], True):>8}"
            )
        a = sysrep["incidents"]["_all"]
        lines.append(
            f"{name:<10} {'ALL incidents':<13} {a['labels']:>6} {a['detected']:>5} {a['alerts']:>6} "
            f"{f(a['precision']):>5} {f(a['recall']):>6} {'':>5} {'':>8}   "
            f"false alarms/district/day {a['false_alarms_per_district_day']:.2f}"
        )
        for typ, r in sysrep.get("faults", {}).items():
            lines.append(
                f"{name:<10} {'fault:' + typ:<13} {r['labels']:>6} {r['detected']:>5} "
                f"{r['episodes']:>6} {f(r['precision']):>5} {f(r['recall']):>6} {f(r['f1']):>5} "
                f"{f(r['median_delay_s'], True):>8}"
            )
        lines.append("")
    return "\n".join(lines)
