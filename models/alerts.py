"""Alerts as a pure state machine: open -> acknowledged -> resolved.

One alert per ``(district, type)`` at a time: many anomalous sensors of a district and type
are correlated into one incident (de-duplication); their ids accumulate on it. Inputs are
*signals* per key at an event time: ``strength`` (the largest anomaly score of a healthy
sensor, in [0, 1]), the number of anomalous sensors and their ids.

* **open**: strength stays at or above the key's threshold for ``open_after_s`` (and at least
  ``min_sensors`` sensors are anomalous) -- a single noisy reading opens nothing; when
  ``corroborate_sensors`` (> 0) sensors of the key are anomalous at once, the alert opens
  without waiting (independent sensors agreeing are the confirmation the wait stands for).
* **acknowledged**: by an operator (:meth:`AlertManager.acknowledge`). An acknowledged alert
  never escalates again; it still correlates sensors, raises its severity with the signal and
  auto-resolves on recovery.
* **escalated**: still unacknowledged ``escalate_after_s`` after opening (or after the last
  escalation) -> severity + 1, up to 3.
* **resolved by an operator** (:meth:`AlertManager.resolve`): the alert leaves the active set
  at once (into ``history``) whatever the signal says. If the condition persists, nothing is
  re-opened directly: the key starts from scratch, so a *new* alert (new id) opens only through
  the normal rules (``open_after_s`` above the threshold, or corroboration).

Operator actions arrive from outside (the dashboard, through Kafka) and are replayed after a
restart, so :meth:`AlertManager.apply_action` is idempotent and never raises for an alert that
is closed or unknown: an action on an alert that is not active yet is kept (bounded, in the
snapshot) and applied when an alert of that id opens (after a restart the worker may replay the
action before it has re-processed the readings that open the alert). ``action_positions`` is an
opaque mapping the caller keeps with the state (the worker: offsets of the actions topic), so a
restored manager knows which actions it already holds.
* **resolved**: strength stays below ``threshold * close_ratio`` for ``resolve_after_s``
  (hysteresis: between the two levels the alert neither opens nor resolves, so it does not
  flap).

Severity: 1 (minor) at the threshold, 2 (major) at ``(1 + threshold) / 2`` or 5+ sensors,
3 (critical) at ``1 - (1 - threshold) / 10``. Events are plain dicts (``city.alerts``). No wall
clock: time is the event time the caller passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson

from models.base import ModelsError, check_int, check_positive, check_range

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
MAX_SENSORS = 50
MAX_DEFERRED = 256  # actions kept for alerts not open (yet)
ACTIONS = (ACKNOWLEDGED, RESOLVED)
MAX_HISTORY = 1000  # resolved alerts kept in memory (newest)


@dataclass(frozen=True, slots=True)
class Action:
    alert_id: str
    action: str  # "acknowledged" or "resolved"
    by: str
    ts: float  # event time of the action (epoch s)


def encode_action(a: Action) -> bytes:
    return orjson.dumps({"alert_id": a.alert_id, "action": a.action, "by": a.by, "ts": a.ts})


def decode_action(raw: bytes | None) -> Action:
    """Parse an actions-topic message (the wire format of operator actions, shared by the
    dashboard that sends them and the workers that apply them, as ``models.frame`` is for
    readings); ``ValueError`` naming what is wrong."""
    if raw is None:
        raise ValueError("empty message")
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError(f"expected an object, got {type(d).__name__}")
    alert_id, action, by, ts = d.get("alert_id"), d.get("action"), d.get("by"), d.get("ts")
    if not isinstance(alert_id, str) or not alert_id:
        raise ValueError(f"alert_id must be a non-empty string, got {alert_id!r}")
    if action not in ACTIONS:
        raise ValueError(f"action must be acknowledged or resolved, got {action!r}")
    if not isinstance(by, str):
        raise ValueError(f"by must be a string, got {by!r}")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise ValueError(f"ts must be a finite number, got {ts!r}")
    return Action(alert_id, str(action), by, float(ts))


@dataclass(frozen=True, slots=True)
class Signal:
    strength: float
    n_sensors: int = 1
    sensors: tuple[str, ...] = ()


@dataclass
class Alert:
    id: str
    district: str
    type: str
    state: str
    severity: int
    opened: float
    updated: float
    peak: float
    sensors: list[str] = field(default_factory=list)
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    escalated_at: float | None = None
    below_since: float | None = None
    resolved_at: float | None = None


def collective(
    key: np.ndarray,
    group: np.ndarray,
    score: np.ndarray,
    n_keys: int,
    *,
    level: float,
    min_sensors: int,
    min_share: float,
    ratio: float,
) -> np.ndarray:
    """Keys where many sensors are moderately anomalous together (a collective anomaly).

    ``key`` (per fresh, healthy sensor) is its (district, type) key in ``[0, n_keys)``,
    ``group`` the key's alert type (so districts are compared with the rest of the city for
    the same type), ``score`` its latest score. A key is hot when at least ``min_sensors`` of
    its sensors and at least ``min_share`` of them score ``>= level``, and that share is at
    least ``ratio`` times the share among the other keys of its group. Readings of many
    sensors that each fall short of the alert threshold are independent evidence when the
    sensors' noise is; the comparison with the rest of the city removes what moves every
    district at once (rain, the daily ramps on a cold start), so what remains is local: a
    crowd round a venue, a queue across a junction. Returns a bool array of ``n_keys``.
    """
    out = np.zeros(n_keys, dtype=bool)
    if level <= 0 or key.size == 0:
        return out
    n = np.bincount(key, minlength=n_keys).astype(np.float64)
    hi = score >= level
    c = np.bincount(key[hi], minlength=n_keys).astype(np.float64)
    gk = np.zeros(n_keys, dtype=np.int64)
    gk[key] = group
    n_g = np.bincount(gk, weights=n, minlength=int(gk.max()) + 1)
    c_g = np.bincount(gk, weights=c, minlength=int(gk.max()) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = c / n
        others = (c_g[gk] - c) / (n_g[gk] - n)
    others = np.where(np.isfinite(others), others, 0.0)
    return (c >= min_sensors) & (share >= min_share) & (share >= ratio * others)


class AlertManager:
    """>>> am = AlertManager(thresholds={"traffic": 0.9}, open_after_s=60)
    >>> am.update(0.0, {("D1", "traffic"): Signal(0.95, 1, ("S1",))})
    []
    >>> [e["event"] for e in am.update(60.0, {("D1", "traffic"): Signal(0.96, 1, ("S1",))})]
    ['opened']
    """

    def __init__(
        self,
        *,
        thresholds: Mapping[str, float],
        default_threshold: float = 0.9,
        close_ratio: float = 0.7,
        open_after_s: float = 60.0,
        resolve_after_s: float = 600.0,
        escalate_after_s: float = 900.0,
        min_sensors: int = 1,
        corroborate_sensors: int = 0,
    ) -> None:
        self.thresholds = {
            k: check_range(f"thresholds[{k}]", v, 0, 1) for k, v in thresholds.items()
        }
        self.default_threshold = check_range("default_threshold", default_threshold, 0, 1)
        self.close_ratio = check_range("close_ratio", close_ratio, 0, 1, lo_open=True)
        self.open_after_s = check_range("open_after_s", open_after_s, 0, float("inf"))
        self.resolve_after_s = check_range("resolve_after_s", resolve_after_s, 0, float("inf"))
        self.escalate_after_s = check_positive("escalate_after_s", escalate_after_s)
        self.min_sensors = check_int("min_sensors", min_sensors, 1)
        self.corroborate_sensors = check_int("corroborate_sensors", corroborate_sensors, 0)
        self.active: dict[tuple[str, str], Alert] = {}
        self.pending: dict[tuple[str, str], float] = {}  # key -> first time above threshold
        self.history: list[Alert] = []  # resolved alerts, oldest first (last MAX_HISTORY)
        #: alert id -> (action, ts, by): operator actions on alerts not open yet, oldest first
        self.deferred: dict[str, tuple[str, float, str]] = {}
        #: where the caller's feed of operator actions stands in this state (opaque, see module)
        self.action_positions: dict[str, int] = {}

    def threshold(self, typ: str) -> float:
        return self.thresholds.get(typ, self.default_threshold)

    def _severity(self, typ: str, strength: float, n: int) -> int:
        thr = self.threshold(typ)
        if strength >= 1.0 - (1.0 - thr) / 10.0:
            return 3
        if strength >= (1.0 + thr) / 2.0 or n >= 5:
            return 2
        return 1

    def _event(self, kind: str, a: Alert, ts: float) -> dict[str, Any]:
        return {
            "event": kind,
            "ts": ts,
            "alert_id": a.id,
            "district": a.district,
            "type": a.type,
            "state": a.state,
            "severity": a.severity,
            "opened": a.opened,
            "peak": a.peak,
            "sensors": list(a.sensors),
        }

    def update(self, ts: float, signals: Mapping[tuple[str, str], Signal]) -> list[dict[str, Any]]:
        """Advance to event time ``ts`` with the current signals; keys absent from
        ``signals`` have strength 0. Returns the lifecycle events, in a stable order."""
        events: list[dict[str, Any]] = []
        keys = sorted(set(signals) | set(self.active) | set(self.pending))
        for key in keys:
            sig = signals.get(key, Signal(0.0, 0, ()))
            district, typ = key
            thr = self.threshold(typ)
            above = sig.strength >= thr and sig.n_sensors >= self.min_sensors
            a = self.active.get(key)
            if a is None:
                if above:
                    first = self.pending.setdefault(key, ts)
                    corroborated = 0 < self.corroborate_sensors <= sig.n_sensors
                    if ts - first >= self.open_after_s or corroborated:
                        del self.pending[key]
                        a = Alert(
                            id=f"{district}:{typ}:{int(first)}",
                            district=district,
                            type=typ,
                            state=OPEN,
                            severity=self._severity(typ, sig.strength, sig.n_sensors),
                            opened=ts,
                            updated=ts,
                            peak=sig.strength,
                            sensors=sorted(sig.sensors)[:MAX_SENSORS],
                        )
                        self.active[key] = a
                        events.append(self._event("opened", a, ts))
                        if a.id in self.deferred:
                            action, at, by = self.deferred.pop(a.id)
                            self._apply(a, action, max(at, ts), by)
                else:
                    self.pending.pop(key, None)
                continue
            # an active alert: correlate, escalate, resolve
            changed = False
            if sig.strength > a.peak:
                a.peak = sig.strength
            new_sensors = (
                sorted(set(a.sensors) | set(sig.sensors))[:MAX_SENSORS] if above else a.sensors
            )
            if new_sensors != a.sensors:
                a.sensors = new_sensors
                changed = True
            sev = (
                max(a.severity, self._severity(typ, sig.strength, sig.n_sensors))
                if above
                else a.severity
            )
            if sev != a.severity:
                a.severity = sev
                changed = True
            if a.state == OPEN:
                since = a.escalated_at if a.escalated_at is not None else a.opened
                if ts - since >= self.escalate_after_s:
                    a.escalated_at = ts
                    if a.severity < 3:
                        a.severity += 1
                    a.updated = ts
                    events.append(self._event("escalated", a, ts))
            if sig.strength < thr * self.close_ratio:
                if a.below_since is None:
                    a.below_since = ts
                if ts - a.below_since >= self.resolve_after_s:
                    a.state = RESOLVED
                    a.resolved_at = ts
                    a.updated = ts
                    del self.active[key]
                    self._archive(a)
                    events.append(self._event("resolved", a, ts))
                    continue
            else:
                a.below_since = None
            if changed:
                a.updated = ts
                events.append(self._event("updated", a, ts))
        return events

    def _find(self, alert_id: str) -> Alert | None:
        for a in self.active.values():
            if a.id == alert_id:
                return a
        return None

    def _archive(self, a: Alert) -> None:
        self.history.append(a)
        if len(self.history) > MAX_HISTORY:
            del self.history[: len(self.history) - MAX_HISTORY]

    def _apply(self, a: Alert, action: str, ts: float, by: str) -> dict[str, Any] | None:
        """Apply an operator action to the active alert ``a``; None if it changes nothing."""
        if action == ACKNOWLEDGED:
            if a.state != OPEN:
                return None
            a.state = ACKNOWLEDGED
            a.acknowledged_by = by
            a.acknowledged_at = ts
            a.updated = ts
            return self._event("acknowledged", a, ts)
        # resolved: out of the active set now; the key starts from scratch (no pending time)
        a.state = RESOLVED
        a.resolved_at = ts
        a.updated = ts
        a.below_since = None
        del self.active[(a.district, a.type)]
        self.pending.pop((a.district, a.type), None)
        self._archive(a)
        return self._event("resolved", a, ts)

    def acknowledge(
        self, alert_id: str, ts: float, *, by: str = "operator", strict: bool = True
    ) -> dict[str, Any] | None:
        """An operator acknowledges an active alert: it stops escalating. Returns the
        ``acknowledged`` event. ``strict`` (the default) raises :class:`ModelsError` when the
        alert is not active or not open; ``strict=False`` returns None instead."""
        return self._operator(ACKNOWLEDGED, alert_id, ts, by, strict)

    def resolve(
        self, alert_id: str, ts: float, *, by: str = "operator", strict: bool = True
    ) -> dict[str, Any] | None:
        """An operator resolves an active alert (open or acknowledged): it moves to
        ``history`` at once. If the condition persists, a new alert (new id) opens only
        through the normal pending/open rules. Returns the ``resolved`` event; with
        ``strict=False`` None for an alert that is not active instead of raising.

        >>> am = AlertManager(thresholds={"traffic": 0.9}, open_after_s=0)
        >>> aid = am.update(0.0, {("D1", "traffic"): Signal(0.95)})[0]["alert_id"]
        >>> am.resolve(aid, 5.0, by="ops")["state"], am.active
        ('resolved', {})
        >>> am.resolve(aid, 6.0, strict=False) is None
        True
        """
        return self._operator(RESOLVED, alert_id, ts, by, strict)

    def _operator(
        self, action: str, alert_id: str, ts: float, by: str, strict: bool
    ) -> dict[str, Any] | None:
        a = self._find(alert_id)
        if a is None:
            if strict:
                raise ModelsError(f"alert {alert_id}: no such active alert")
            return None
        ev = self._apply(a, action, float(ts), by)
        if ev is None and strict:
            raise ModelsError(f"alert {alert_id}: cannot {action[:-1]}, it is {a.state}")
        return ev

    def apply_action(
        self, alert_id: str, action: str, ts: float, *, by: str = "operator"
    ) -> dict[str, Any] | None:
        """Apply an operator action (``acknowledged`` or ``resolved``) from a replayable feed.

        Never raises for the alert's state: applying the same action twice, acknowledging a
        resolved alert or resolving a closed one returns None and changes nothing. An action
        on an id that is neither active nor in ``history`` is deferred (at most
        ``MAX_DEFERRED``, oldest dropped) and applied when an alert of that id opens. Raises
        ``ValueError`` only for an action that is not one of the two.
        """
        if action not in ACTIONS:
            raise ValueError(f"action must be acknowledged or resolved, got {action!r}")
        a = self._find(alert_id)
        if a is not None:
            return self._apply(a, action, float(ts), by)
        if any(h.id == alert_id for h in self.history):
            return None
        prev = self.deferred.pop(alert_id, None)
        # a resolve wins over an acknowledge of the same alert, whatever their order
        if prev is not None and prev[0] == RESOLVED:
            action, ts, by = prev
        self.deferred[alert_id] = (action, float(ts), by)
        while len(self.deferred) > MAX_DEFERRED:
            del self.deferred[next(iter(self.deferred))]
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "type": "AlertManager",
            "version": 1,
            "active": [asdict(a) for a in self.active.values()],
            "pending": [[d, t, ts] for (d, t), ts in self.pending.items()],
            "deferred": [[i, act, ts, by] for i, (act, ts, by) in self.deferred.items()],
            "action_positions": dict(self.action_positions),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        if snap.get("type") != "AlertManager":
            raise ModelsError(f"AlertManager: cannot restore a snapshot of {snap.get('type')!r}")
        self.active = {}
        for d in snap["active"]:
            a = Alert(**{**d, "sensors": list(d["sensors"])})
            self.active[(a.district, a.type)] = a
        self.pending = {(d, t): float(ts) for d, t, ts in snap["pending"]}
        # absent from snapshots written before operator actions reached the worker
        self.deferred = {str(i): (str(act), float(ts), str(by))
                         for i, act, ts, by in snap.get("deferred", [])}
        self.action_positions = {str(k): int(v)
                                 for k, v in snap.get("action_positions", {}).items()}
