"""Each sensor fault is visible exactly where its label says, and a normal day has none."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from config.domains import METRIC_INFO
from sensors_sim.labels import FAULT_TYPES
from tests.sensors_sim.helpers import Run, doc_scenario, in_labels, label_mask, metric_names, run

HOURS = 6
DOC = {
    "name": "faults",
    "start": "2026-01-05T06:00",
    "duration": f"{HOURS}h",
    "weather": {"rain": "none"},
    "faults": [
        {"type": "stuck", "at": "random", "duration": "40m", "count": 3},
        {"type": "dropout", "at": "random", "duration": "20m", "count": 3},
        {"type": "spike", "at": "random", "count": 4},
        {"type": "drift", "at": "random", "duration": "2h", "count": 3},
        {"type": "out_of_range", "at": "random", "duration": "5m", "count": 3},
        {"type": "duplicate", "at": "random", "duration": "10m", "count": 2},
        {"type": "out_of_order", "at": "random", "duration": "10m", "count": 2},
        {"type": "late", "at": "random", "duration": "5m", "count": 2, "delay": "8m"},
    ],
}


@cache
def runs() -> tuple[Run, Run]:
    sc = doc_scenario(DOC)
    clean = doc_scenario({k: v for k, v in DOC.items() if k != "faults"})
    return run(sc), run(clean)


def keyed(c: dict[str, np.ndarray]) -> dict[tuple[int, int], int]:
    """(sensor position, seq) -> first row."""
    out: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(c["pos"].tolist(), c["seq"].tolist(), strict=True)):
        out.setdefault(key, i)
    return out


def of_type(r: Run, typ: str) -> list:
    return [lab for lab in r.labels if lab.type == typ]


def test_every_fault_type_is_labelled() -> None:
    faulty, clean = runs()
    assert {lab.type for lab in faulty.labels} == set(FAULT_TYPES)
    assert not clean.labels
    for lab in faulty.labels:
        assert lab.category == "fault" and lab.start <= lab.end and lab.sensors


def test_value_faults_change_values_only_inside_their_labels() -> None:
    faulty, clean = runs()
    labels = [
        lab for lab in faulty.labels if lab.type in ("stuck", "spike", "drift", "out_of_range")
    ]
    for domain in faulty.cols:
        f, c = faulty.cols[domain], clean.cols[domain]
        kc = keyed(c)
        rows = np.array(
            [kc.get(k, -1) for k in zip(f["pos"].tolist(), f["seq"].tolist(), strict=True)]
        )
        assert (rows >= 0).all()  # faults never invent readings
        diff = np.zeros(len(rows), dtype=bool)
        for m in metric_names(f):
            x, y = f[m], c[m][rows]
            diff |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
        assert not (diff & ~in_labels(f, labels, faulty.sim.city)).any()
        for lab in labels:
            m = label_mask(f, lab, faulty.sim.city)
            if m.any():
                assert diff[m].any(), lab.id


def test_signatures_of_value_faults() -> None:
    faulty, _ = runs()
    city = faulty.sim.city
    for _domain, f in faulty.cols.items():
        # out of range: only inside out_of_range labels, and in every one
        oor = np.zeros(len(f["ts"]), dtype=bool)
        for m in metric_names(f):
            _, lo, hi = METRIC_INFO[m]
            oor |= (f[m] < lo) | (f[m] > hi)
        labs = of_type(faulty, "out_of_range")
        assert not (oor & ~in_labels(f, labs, city)).any()
        for lab in labs:
            m = label_mask(f, lab, city)
            assert not m.any() or oor[m].all(), lab.id
        # stuck: every metric identical for the whole window
        for lab in of_type(faulty, "stuck"):
            m = label_mask(f, lab, city)
            if m.sum() > 1:
                for name in metric_names(f):
                    v = f[name][m]
                    assert np.all((v == v[0]) | np.isnan(v)), lab.id
        # spike: a jump of at least a fifth of the physical range
        for lab in of_type(faulty, "spike"):
            m = label_mask(f, lab, city)
            if m.any():
                metric = lab.detail["metric"]
                series = f[metric][f["pos"] == f["pos"][m][0]]
                _, lo, hi = METRIC_INFO[metric]
                assert np.max(np.abs(series[1:] - series[:-1])) > 0.2 * (hi - lo), lab.id


def test_no_stuck_runs_outside_stuck_labels() -> None:
    faulty, _ = runs()
    city = faulty.sim.city
    total = 0
    for f in faulty.cols.values():
        names = metric_names(f)
        first = np.unique(f["pos"] * 10_000_000 + (f["seq"] - f["seq"].min()), return_index=True)[1]
        order = first[np.lexsort((f["ts"][first], f["pos"][first]))]  # duplicates dropped
        vals = np.stack([np.nan_to_num(f[m][order], nan=-1.0) for m in names], axis=1)
        same = (vals[1:] == vals[:-1]).all(axis=1) & (f["pos"][order][1:] == f["pos"][order][:-1])
        # runs of 4 equal readings in a row
        run4 = same[:-2] & same[1:-1] & same[2:]
        rows = order[3:][run4]
        # a constant impossible value of a one-metric sensor is also a run
        stuck = in_labels(f, of_type(faulty, "stuck") + of_type(faulty, "out_of_range"), city)
        assert stuck[rows].all()
        total += len(rows)
    assert total > 0  # the stuck sensors were found


def test_dropouts_are_seq_gaps_inside_their_labels() -> None:
    faulty, clean = runs()
    city = faulty.sim.city
    for domain in faulty.cols:
        f, c = faulty.cols[domain], clean.cols[domain]
        have = set(zip(f["pos"].tolist(), f["seq"].tolist(), strict=True))
        missing = np.array(
            [k not in have for k in zip(c["pos"].tolist(), c["seq"].tolist(), strict=True)]
        )
        labs = of_type(faulty, "dropout")
        covered = in_labels(c, labs, city)
        assert (missing == covered).all()  # exactly the labelled readings are missing


def test_delivery_faults() -> None:
    faulty, clean = runs()
    city = faulty.sim.city
    for domain in faulty.cols:
        f = faulty.cols[domain]
        # duplicates: a (sensor, seq) delivered twice
        key = f["pos"] * 10_000_000 + (f["seq"] - f["seq"].min())
        _, first, _counts = np.unique(key, return_index=True, return_counts=True)
        dup = np.zeros(len(key), dtype=bool)
        dup[np.setdiff1d(np.arange(len(key)), first)] = True
        labs = of_type(faulty, "duplicate")
        assert not (dup & ~in_labels(f, labs, city)).any()
        for lab in labs:
            m = label_mask(f, lab, city)
            assert not m.any() or dup[m].any(), lab.id
        # late: delivered more than the allowed lateness (120 s) after event time
        late = f["delivered_at"] - f["ts"] > 120
        labs = of_type(faulty, "late")
        assert (late == in_labels(f, labs, city)).all()
        # out of order: a sensor's seq goes backwards in delivery order
        order = np.lexsort((np.arange(len(key)), f["pos"]))  # stable by delivery, grouped by sensor
        back = np.zeros(len(key), dtype=bool)
        same_sensor = f["pos"][order][1:] == f["pos"][order][:-1]
        back[order[1:]] = same_sensor & (f["seq"][order][1:] < f["seq"][order][:-1])
        labs = of_type(faulty, "out_of_order") + of_type(faulty, "late")
        assert not (back & ~in_labels(f, labs, city)).any()
        for lab in of_type(faulty, "out_of_order"):
            m = label_mask(f, lab, city)
            assert not m.any() or back[m].any(), lab.id
    # the clean run is clean
    for c in clean.cols.values():
        assert not (c["delivered_at"] - c["ts"]).any()


@pytest.mark.parametrize("seed", [1, 2])
def test_fault_storm_scenario_resolves(seed: int) -> None:
    from sensors_sim.engine import Simulator
    from sensors_sim.scenario import load_scenario
    from tests.sensors_sim.helpers import city

    sim = Simulator(city(), load_scenario("sensor_fault_storm"), seed=seed)
    assert {lab.type for lab in sim.labels} == set(FAULT_TYPES)
    assert all(sim.start <= lab.start <= sim.end for lab in sim.labels)
