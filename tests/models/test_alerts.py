from __future__ import annotations

import orjson
import pytest

from models.alerts import AlertManager, Signal
from models.base import ModelsError

K = ("D1", "traffic")


def mgr(**kw: float) -> AlertManager:
    args = dict(open_after_s=60.0, resolve_after_s=300.0, escalate_after_s=900.0, close_ratio=0.7)
    args.update(kw)
    return AlertManager(thresholds={"traffic": 0.9}, **args)  # type: ignore[arg-type]


def hot(x: float = 0.92, *ids: str) -> dict[tuple[str, str], Signal]:
    return {K: Signal(x, max(1, len(ids)), ids or ("S1",))}


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def test_open_needs_persistence() -> None:
    am = mgr()
    assert am.update(0, hot()) == []
    assert am.update(30, {}) == []  # dropped below: pending cleared
    assert am.update(40, hot()) == []
    assert am.update(90, hot()) == []
    ev = am.update(100, hot())
    assert kinds(ev) == ["opened"]
    assert ev[0]["district"] == "D1" and ev[0]["type"] == "traffic" and ev[0]["severity"] == 1


def test_dedup_correlates_sensors_and_raises_severity() -> None:
    am = mgr(open_after_s=0)
    assert kinds(am.update(0, hot(0.92, "S1"))) == ["opened"]
    ev = am.update(10, hot(0.92, "S2"))
    assert kinds(ev) == ["updated"] and ev[0]["sensors"] == ["S1", "S2"]
    assert len(am.active) == 1
    ev = am.update(20, hot(0.995, "S2"))
    assert ev[0]["severity"] == 3


def test_acknowledge_then_resolve_with_hysteresis() -> None:
    am = mgr(open_after_s=0)
    aid = am.update(0, hot())[0]["alert_id"]
    ack = am.acknowledge(aid, 5, by="ops")
    assert ack["event"] == "acknowledged" and ack["state"] == "acknowledged"
    with pytest.raises(ModelsError):
        am.acknowledge(aid, 6)
    # between close level (0.63) and threshold: neither resolves nor re-opens
    assert am.update(10, hot(0.8)) == []
    assert am.update(400, hot(0.8)) == []
    assert am.update(410, hot(0.5)) == []  # below close level: timer starts
    assert am.update(600, hot(0.7)) == []  # back above close level: timer reset
    assert am.update(610, hot(0.5)) == []
    ev = am.update(910, hot(0.5))
    assert kinds(ev) == ["resolved"] and not am.active
    # a new episode opens a new alert with a new id
    ev = am.update(1000, hot())
    assert kinds(ev) == ["opened"] and ev[0]["alert_id"] != aid


def test_escalation_when_unacknowledged() -> None:
    am = mgr(open_after_s=0, escalate_after_s=100)
    am.update(0, hot(0.91))
    ev = am.update(100, hot(0.91))
    assert kinds(ev) == ["escalated"] and ev[0]["severity"] == 2
    assert kinds(am.update(200, hot(0.91))) == ["escalated"]
    assert am.update(250, hot(0.91)) == []
    aid = next(iter(am.active.values())).id
    am.acknowledge(aid, 260)
    assert am.update(400, hot(0.91)) == []  # acknowledged alerts do not escalate


def test_min_sensors_and_snapshot() -> None:
    am = mgr(open_after_s=0, min_sensors=2)
    assert am.update(0, hot(0.99, "S1")) == []
    assert kinds(am.update(1, hot(0.99, "S1", "S2"))) == ["opened"]
    snap = orjson.loads(orjson.dumps(am.snapshot()))
    other = mgr(open_after_s=0, min_sensors=2)
    other.restore(snap)
    assert other.active.keys() == am.active.keys()
    assert kinds(other.update(2000, {})) == kinds(am.update(2000, {}))


def test_corroborated_alert_opens_without_waiting() -> None:
    am = AlertManager(thresholds={"water": 0.9}, open_after_s=60, corroborate_sensors=3)
    two = Signal(0.95, 2, ("A", "B"))
    assert am.update(0.0, {("D1", "water"): two}) == []  # two sensors: wait open_after_s
    three = Signal(0.95, 3, ("A", "B", "C"))
    ev = am.update(10.0, {("D2", "water"): three})
    assert [e["event"] for e in ev] == ["opened"] and ev[0]["district"] == "D2"
    with pytest.raises(ValueError, match="corroborate_sensors"):
        AlertManager(thresholds={}, corroborate_sensors=-1)


def test_collective_needs_many_sensors_a_share_and_contrast_with_the_city() -> None:
    import numpy as np

    from models.alerts import collective

    # keys 0..3 (four districts of one type); 10 sensors each
    key = np.repeat(np.arange(4), 10)
    group = np.zeros(40, dtype=np.int64)
    score = np.full(40, 0.3)
    score[0:6] = 0.8  # district 0: 6 of 10 moderately anomalous
    score[10:11] = 0.8  # district 1: 1 of 10
    kw = dict(level=0.7, min_sensors=5, min_share=0.2, ratio=3.0)
    assert collective(key, group, score, 4, **kw).tolist() == [True, False, False, False]
    # everyone elevated (rain, a daily ramp): no district stands out from the city
    allhot = np.full(40, 0.8)
    assert not collective(key, group, allhot, 4, **kw).any()
    # too few sensors, even if they are all of the district's
    assert not collective(key[:6], group[:6], score[:6], 4, **{**kw, "min_sensors": 7}).any()
    # level 0 switches it off
    assert not collective(key, group, score, 4, **{**kw, "level": 0.0}).any()
    # another type (group) does not dilute the contrast
    g2 = np.where(key >= 2, 1, 0)
    assert collective(key, g2, score, 4, **kw).tolist() == [True, False, False, False]


def test_no_escalation_after_acknowledge_even_long_after() -> None:
    am = mgr(open_after_s=0, escalate_after_s=100)
    aid = am.update(0, hot(0.91))[0]["alert_id"]
    am.acknowledge(aid, 50, by="ops")
    events = [e for t in range(60, 5000, 30) for e in am.update(t, hot(0.91, "S1", "S2"))]
    assert "escalated" not in kinds(events)
    assert all(e["state"] == "acknowledged" for e in events)
    assert am.active[K].acknowledged_by == "ops" and am.active[K].severity == 1


def test_operator_resolve_closes_and_a_persisting_condition_reopens_only_by_the_rules() -> None:
    am = mgr(open_after_s=60)
    am.update(0, hot())
    aid = am.update(60, hot())[0]["alert_id"]
    ev = am.resolve(aid, 70, by="ops")
    assert ev is not None and ev["event"] == "resolved" and ev["state"] == "resolved"
    assert not am.active and am.history[-1].id == aid and am.history[-1].resolved_at == 70
    # the condition persists: nothing at once, a new alert after open_after_s again
    assert am.update(80, hot()) == []
    assert am.update(120, hot()) == []
    ev = am.update(140, hot())
    assert kinds(ev) == ["opened"] and ev[0]["alert_id"] != aid
    # strict (default) raises for a closed alert; the replay-safe forms do not
    with pytest.raises(ModelsError):
        am.resolve(aid, 150)
    assert am.resolve(aid, 150, strict=False) is None
    assert am.acknowledge(aid, 150, strict=False) is None
    assert am.apply_action(aid, "resolved", 150) is None
    assert am.apply_action(aid, "acknowledged", 150) is None
    assert len(am.active) == 1 and next(iter(am.active.values())).state == "open"


def test_resolve_an_acknowledged_alert() -> None:
    am = mgr(open_after_s=0)
    aid = am.update(0, hot())[0]["alert_id"]
    am.acknowledge(aid, 1)
    assert am.resolve(aid, 2)["state"] == "resolved"  # type: ignore[index]
    assert not am.active


def test_apply_action_is_idempotent_and_validates() -> None:
    am = mgr(open_after_s=0, escalate_after_s=100)
    aid = am.update(0, hot())[0]["alert_id"]
    first = am.apply_action(aid, "acknowledged", 10, by="ops")
    assert first is not None and first["event"] == "acknowledged"
    assert am.apply_action(aid, "acknowledged", 11, by="other") is None  # replayed: no change
    assert am.active[K].acknowledged_by == "ops" and am.active[K].acknowledged_at == 10
    with pytest.raises(ValueError, match="action"):
        am.apply_action(aid, "escalated", 12)
    assert am.apply_action(aid, "resolved", 20) is not None
    assert am.apply_action(aid, "resolved", 21) is None
    assert not am.active and not am.deferred


def test_action_before_the_alert_opens_is_deferred_and_survives_a_snapshot() -> None:
    """After a restart the worker may replay an action before re-processing the readings
    that open its alert (ids are deterministic: district, type, first time above)."""
    am = mgr(open_after_s=60, escalate_after_s=100)
    aid = "D1:traffic:0"
    assert am.apply_action(aid, "acknowledged", 70, by="ops") is None
    assert am.apply_action("D9:noise:5", "resolved", 70) is None
    am.action_positions = {"0": 3, "1": 7}
    snap = orjson.loads(orjson.dumps(am.snapshot()))
    other = mgr(open_after_s=60, escalate_after_s=100)
    other.restore(snap)
    assert other.action_positions == {"0": 3, "1": 7} and other.deferred == am.deferred
    other.update(0, hot())
    ev = other.update(60, hot())
    assert kinds(ev) == ["opened"] and ev[0]["alert_id"] == aid
    a = other.active[K]
    assert a.state == "acknowledged" and a.acknowledged_by == "ops" and a.acknowledged_at == 70
    assert aid not in other.deferred
    assert "escalated" not in kinds(other.update(500, hot()))


def test_deferred_resolve_wins_and_deferred_is_bounded() -> None:
    from models.alerts import MAX_DEFERRED

    am = mgr(open_after_s=0)
    aid = "D1:traffic:0"
    am.apply_action(aid, "resolved", 5, by="ops")
    am.apply_action(aid, "acknowledged", 6, by="ops")  # later ack does not undo the resolve
    assert am.deferred[aid][0] == "resolved"
    ev = am.update(0, hot())
    assert kinds(ev) == ["opened"] and not am.active and am.history[-1].id == aid
    for i in range(MAX_DEFERRED + 10):
        am.apply_action(f"X:{i}", "acknowledged", float(i))
    assert len(am.deferred) == MAX_DEFERRED and "X:0" not in am.deferred


def test_old_snapshot_without_action_fields_restores() -> None:
    am = mgr(open_after_s=0)
    am.update(0, hot())
    snap = am.snapshot()
    del snap["deferred"], snap["action_positions"]
    other = mgr(open_after_s=0)
    other.restore(snap)
    assert other.deferred == {} and other.action_positions == {} and K in other.active
