"""Each incident is visible exactly where its label says, and nowhere else.

Two runs with the same seed, one with the incident and one without, draw the same noise; so
every difference between them is the incident's doing, and must lie inside a label (sensor listed,
start <= ts <= end); every labelled sensor must show a difference. Then each incident's
signature is checked (queue spill-back, burst flow and pressure, overloaded feeders, ...).
"""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from sensors_sim.scenario import Scenario
from tests.sensors_sim.helpers import Run, in_labels, label_mask, metric_names, run, scenario


def shortened(name: str, **params: object) -> Scenario:
    sc = scenario(name)
    inc = [dataclasses.replace(i, params={**i.params, **params}) for i in sc.incidents]
    return dataclasses.replace(sc, incidents=tuple(inc))


def pair(sc: Scenario, duration: float) -> tuple[Run, Run]:
    with_ = run(sc, duration=duration)
    without = run(dataclasses.replace(sc, incidents=()), duration=duration)
    return with_, without


def changed(a: Run, b: Run, domain: str) -> np.ndarray:
    ca, cb = a.cols[domain], b.cols[domain]
    assert np.array_equal(ca["sensor_id"], cb["sensor_id"]) and np.array_equal(ca["ts"], cb["ts"])
    diff = np.zeros(len(ca["ts"]), dtype=bool)
    for m in metric_names(ca):
        x, y = ca[m], cb[m]
        diff |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
    return diff


CASES = {
    "crash": (scenario("rush_hour_crash"), 4 * 3600),
    "pollution": (shortened("pollution_episode", duration=4 * 3600.0, ramp=3600.0), 12 * 3600),
    "burst": (shortened("water_main_burst"), 9 * 3600),
    "heatwave": (
        dataclasses.replace(
            shortened("heat_wave", duration=8 * 3600.0, ramp=2 * 3600.0), start="2026-07-13T06:00"
        ),
        14 * 3600,
    ),
    "event": (scenario("stadium_event"), 12 * 3600),
}


@cache
def get(kind: str) -> tuple[Run, Run]:
    sc, duration = CASES[kind]
    return pair(sc, duration)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, Run, Run]:
    a, b = get(request.param)
    return request.param, a, b


def test_visible_exactly_where_labelled(case: tuple[str, Run, Run]) -> None:
    kind, a, b = case
    labels = [lab for lab in a.labels if lab.type == kind]
    assert labels and all(lab.type == kind for lab in a.labels)
    assert not b.labels
    seen_any = False
    for domain in a.cols:
        c = a.cols[domain]
        diff = changed(a, b, domain)
        covered = in_labels(c, labels, a.sim.city)
        outside = diff & ~covered
        assert not outside.any(), (
            f"{kind}: {outside.sum()} changed readings outside the labels, e.g. {c['sensor_id'][outside][:3]}"
        )
        for lab in labels:
            m = label_mask(c, lab, a.sim.city)
            reporting = set(np.unique(c["pos"][m]).tolist())
            showing = set(np.unique(c["pos"][m & diff]).tolist())
            seen_any = seen_any or bool(reporting)
            assert showing == reporting, f"{lab.id}: {sorted(reporting - showing)[:5]} show nothing"
    assert seen_any


def test_labels_are_well_formed(case: tuple[str, Run, Run]) -> None:
    _kind, a, _ = case
    city = a.sim.city
    for lab in a.labels:
        assert lab.start < lab.end
        assert lab.district in city.district_index
        assert len(lab.sensors) == len(set(lab.sensors)) > 0
        assert all(s in city.sensor_index for s in lab.sensors)
        assert lab.category == "incident"


def test_crash_queue_spills_back_upstream_then_clears() -> None:
    a, _ = get("crash")
    lab = a.labels[0]
    inc = a.sim.incidents[0]
    c = a.cols["traffic"]
    city = a.sim.city
    vf = {s: city.segment_index[city.sensor_index[s].segment].free_speed_kmh for s in lab.sensors}
    dist = dict(zip([city.sensors[i].id for i in inc.sens], inc.dist, strict=True))
    onsets, upstream = [], []
    for sid in lab.sensors:
        m = c["sensor_id"] == sid
        slow = c["speed_kmh"][m] < 0.4 * vf[sid]
        if slow.any() and dist[sid] > 0.3:
            onsets.append(c["ts"][m][slow].min() - lab.start)
            upstream.append(dist[sid])
            # it recovers by the end of the label
            assert not slow[c["ts"][m] > lab.end].any()
    assert len(onsets) >= 4, "the queue should reach several detectors"
    assert np.corrcoef(upstream, onsets)[0, 1] > 0.9  # farther upstream = later
    assert inc.queue_max_km > 1.0
    assert len({city.sensor_index[s].segment for s in lab.sensors}) >= 3  # spilled over segments
    assert lab.end > inc.clear  # the queue outlives the clearance


def test_burst_raises_inflow_and_drops_pressure_in_its_dma() -> None:
    a, b = get("burst")
    lab = a.labels[0]
    c, d = a.cols["utility"], b.cols["utility"]
    inside = (
        np.isin(c["sensor_id"], lab.sensors)
        & (c["ts"] > lab.start + 600)
        & (c["ts"] < lab.end - 600)
    )
    flow = inside & ~np.isnan(c["inflow_m3h"])
    pres = inside & ~np.isnan(c["pressure_bar"])
    assert flow.any() and pres.any()
    rel = c["inflow_m3h"][flow] / d["inflow_m3h"][flow]
    assert np.median(rel) > 1.5  # a night-time burst of 80 % of the mean flow on the night flow
    drop = d["pressure_bar"][pres] - c["pressure_bar"][pres]
    assert np.median(drop) > 0.2 and (drop > 0.05).mean() > 0.95
    assert {a.sim.city.sensor_index[s].zone for s in lab.sensors} == {lab.detail["zone"]}


def test_heatwave_overloads_feeders() -> None:
    a, b = get("heatwave")
    c, d = a.cols["utility"], b.cols["utility"]
    p = ~np.isnan(c["load_mw"])
    assert np.mean(c["load_mw"][p]) > 1.1 * np.mean(d["load_mw"][p])
    sag = c["voltage_kv"][p] < 0.95 * 11.0
    assert sag.any() and not (d["voltage_kv"][p] < 0.95 * 11.0).any()
    env = a.cols["environment"]
    t = ~np.isnan(env["temp_c"])
    assert np.nanmax(env["temp_c"][t]) > np.nanmax(b.cols["environment"]["temp_c"][t]) + 5


def test_pollution_episode_multiplies_pm_and_spreads() -> None:
    a, b = get("pollution")
    c, d = a.cols["environment"], b.cols["environment"]
    origin = next(lab for lab in a.labels if lab.district == lab.detail["origin"])
    others = [lab for lab in a.labels if lab is not origin]
    assert others and all(lab.start > origin.start for lab in others)
    m = np.isin(c["sensor_id"], origin.sensors) & ~np.isnan(c["pm25"])
    plateau = m & (c["ts"] > origin.start + 3600) & (c["ts"] < origin.end - 3600)
    assert np.median(c["pm25"][plateau] / d["pm25"][plateau]) > 3.0


def test_event_brings_traffic_and_crowd_noise_to_the_venue() -> None:
    a, b = get("event")
    lab = a.labels[0]
    inc = a.sim.incidents[0]
    tr, tr0 = a.cols["traffic"], b.cols["traffic"]
    near = np.isin(tr["sensor_id"], lab.sensors)
    arrival = near & (tr["ts"] > inc.doors - 2400) & (tr["ts"] < inc.doors - 600)
    assert tr["flow_vph"][arrival].sum() > 1.3 * tr0["flow_vph"][arrival].sum() or (
        tr["speed_kmh"][arrival].mean() < 0.8 * tr0["speed_kmh"][arrival].mean()
    )
    env, env0 = a.cols["environment"], b.cols["environment"]
    noise = np.isin(env["sensor_id"], lab.sensors) & ~np.isnan(env["noise_dba"])
    during = noise & (env["ts"] > inc.doors + 600) & (env["ts"] < inc.close - 600)
    assert during.any()
    assert env["noise_dba"][during].mean() > env0["noise_dba"][during].mean() + 4
