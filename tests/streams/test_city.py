"""The city-wide tick of several workers (:mod:`streams.city`), without a broker.

A worker hands the tick inputs of its sensors to the one owner of the city tick; these tests
check that the owner's ticks equal those of one process that scored every sensor: from the
models' tick state directly, through the one-worker path (a worker that sends to itself), and
with two workers that own different readings topics (kinds share no model state, so their
per-sensor scores are those of one process). And that the owner waits for every partition, but
not forever.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import yaml

from config.city import load_city
from config.partitioning import CityPartitions
from models.frame import encode
from models.params import DEFAULT_PATH, parse_params
from models.sensors import SensorTable
from models.stack import CityModels
from streams.city import MAX_SENSORS_PER_MESSAGE, CityTicker, encode_tick_state
from streams.codecs import decode_indicators, decode_table
from streams.processor import Message, Outputs, Processor
from tests.store.test_backfill_parallel import EAGER  # eager models: every output, alerts too

PARTITIONS = 4
SIM_TICKS_PER_BATCH = 6


@pytest.fixture(scope="module")
def city():
    return load_city()


@pytest.fixture(scope="module")
def params():
    doc = yaml.safe_load(DEFAULT_PATH.read_text())
    for section, values in EAGER.items():
        doc[section].update(values)
    return parse_params(doc)


def _batches(city, partition_of) -> list[list[Message]]:
    """bad_day, 15 minutes, as batches of messages on 4 partitions per readings topic, each
    frame on ``partition_of(gateway key)``."""
    from sensors_sim.engine import Simulator
    from sensors_sim.scenario import load_scenario

    sim = Simulator(city, load_scenario("bad_day"), seed=5, duration=900)
    offsets: Counter[tuple[str, int]] = Counter()
    out, cur = [], []
    for i, (_t, frames) in enumerate(sim.ticks()):
        for f in frames:
            topic = f"city.readings.{f.domain}"
            p = partition_of(f.gateway.encode())
            cur.append(Message(topic, p, offsets[(topic, p)], f.gateway.encode(), encode(f)))
            offsets[(topic, p)] += 1
        if (i + 1) % SIM_TICKS_PER_BATCH == 0:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


@pytest.fixture(scope="module")
def batches(city):
    return _batches(city, lambda key: sum(key) % PARTITIONS)


@pytest.fixture(scope="module")
def kind_batches(city):
    """The same stream placed as the simulator places it: every gateway of a kind on one
    partition (config/partitioning.py)."""
    rule = CityPartitions(city, "kind")
    return _batches(city, lambda key: rule.index(key, PARTITIONS))


def _processor(city, params, **kw) -> Processor:
    models = CityModels(SensorTable.from_city(city), params, seed=0)
    return Processor(city, window_s=300, lateness_s=120, models=models, tick_s=60,
                     anomaly_score=0.5, clock=lambda: 0.0, **kw)


def _city_rows(outs: list[Outputs]) -> dict:
    """What a tick produces: risk, alert and health rows, and the city indicators."""
    got: dict = {"rows": {}, "tables": Counter(), "city_indicators": {}}
    for out in outs:
        for key, v in out.indicators:
            if key != b"city":
                continue
            b = decode_indicators(v)
            for i in range(len(b)):
                got["city_indicators"][(b.entity_type[i], b.entity_id[i], b.name[i],
                                        float(b.ts[i]))] = float(b.value[i])
        for _key, v in out.anomalies + out.risk + out.alerts:
            table, cols = decode_table(v)
            if table == "anomalies":
                continue
            got["tables"][table] += len(cols["ts"])
            for i in range(len(cols["ts"])):
                row = tuple(repr(cols[c][i]) for c in sorted(cols))
                got["rows"][(table, row)] = got["rows"].get((table, row), 0) + 1
    return got


def _per_reading(outs: list[Outputs]) -> dict:
    """What the scoring side produces: sensor indicators and anomaly rows."""
    ind, anom = {}, Counter()
    for out in outs:
        for key, v in out.indicators:
            if key == b"city":
                continue
            b = decode_indicators(v)
            for i in range(len(b)):
                ind[(b.entity_id[i], b.name[i], float(b.ts[i]))] = float(b.value[i])
        for _k, v in out.anomalies:
            table, cols = decode_table(v)
            if table == "anomalies":
                for i in range(len(cols["ts"])):
                    anom[tuple(repr(cols[c][i]) for c in sorted(cols))] += 1
    return {"indicators": ind, "anomalies": anom}


def test_tick_from_merged_tick_states_equals_the_tick_of_one_process(city, params, batches):
    """Halves of one process's tick state, merged by another (in either order), tick exactly
    as that process does: risk, alerts, quality, city indicators."""
    one = _processor(city, params)
    for b in batches[:-1]:
        one.process(b)
    table = one.models.table
    half = np.arange(len(table)) % 2 == 0
    owner = _processor(city, params)
    for part in (~half, half):
        owner.models.apply_tick_state(one.models.tick_state(np.flatnonzero(part)))
    owner.models.restore_alerts(one.models.snapshot_alerts())  # the alerts opened so far
    t = float(np.floor(one.models.watermark / 60.0) * 60.0)
    a, b = one.models.tick(t), owner.models.tick(t)
    assert np.array_equal(a.quality, b.quality)
    assert np.array_equal(a.risk.risk, b.risk.risk) and a.risk.risk.max() > 0
    assert a.risk.top_sensors == b.risk.top_sensors
    assert a.alerts == b.alerts
    assert one.models.alerts.snapshot() == owner.models.alerts.snapshot()
    assert one.models.alerts.active
    assert a.indicators.keys() == b.indicators.keys()
    for k in ("congestion_district", "aqi_district"):
        assert np.array_equal(a.indicators[k], b.indicators[k], equal_nan=True)


class Feed:
    """The tick-state partition as the owner reads it: messages at consecutive offsets."""

    def __init__(self, owner: CityTicker) -> None:
        self.owner, self.offset = owner, 0

    def send(self, boundary, parts, state, max_sensors=MAX_SENSORS_PER_MESSAGE) -> Outputs:
        """A worker's tick state (one or more messages); the owner's outputs, merged."""
        out = Outputs()
        for value in encode_tick_state(boundary, parts, state, max_sensors):
            o = self.owner.apply(self.offset, value)
            self.offset += 1
            out.risk += o.risk
            out.alerts += o.alerts
            out.anomalies += o.anomalies
            out.indicators += o.indicators
        return out


READINGS_PARTITIONS = [f"city.readings.{d}:{p}" for d in ("traffic", "environment", "utility")
                       for p in range(PARTITIONS)]


def _run_workers(city, params, batches, owners: list[set[str]],
                 max_sensors: int = MAX_SENSORS_PER_MESSAGE) -> tuple[list, list, CityTicker]:
    """Workers (one per set of readings topics, or of ``topic:partition``) that publish their
    tick states, and an owner that merges them in the order they were sent; returns (worker
    outputs, owner outputs)."""
    workers = [_processor(city, params, publish_ticks=True) for _ in owners]
    owner = CityTicker(_processor(city, params), expected=READINGS_PARTITIONS)
    feed = Feed(owner)
    w_outs, c_outs = [], []
    owned = [{tp for tp in READINGS_PARTITIONS if tp in own or tp.rsplit(":", 1)[0] in own}
             for own in owners]
    for batch in batches:
        sent = []
        for w, parts in zip(workers, owned, strict=True):
            mine = [m for m in batch if f"{m.topic}:{m.partition}" in parts]
            out = w.process(mine)
            w_outs.append(out)
            if out.tick_state is not None:
                sent.append((out.tick_boundary, parts, out.tick_state))
        for b, parts, state in sent:
            c_outs.append(feed.send(b, parts, state, max_sensors))
    return w_outs, c_outs, owner


def test_one_worker_sending_to_itself_ticks_as_before(city, params, batches):
    """The one-worker path (tick state through the owner) gives exactly the rows of the tick
    run inside the worker, at the same boundaries."""
    local = _processor(city, params)
    ref = [local.process(b) for b in batches]
    topics = {f"city.readings.{d}" for d in ("traffic", "environment", "utility")}
    w_outs, c_outs, owner = _run_workers(city, params, batches, [topics])
    want, got = _city_rows(ref), _city_rows(c_outs)
    assert want["tables"]["district_risk"] > 0 and want["tables"]["alert_events"] > 0
    assert want["tables"]["sensor_health"] > 0 and want["city_indicators"]
    assert got == want
    assert _per_reading(w_outs) == _per_reading(ref)
    assert owner.sensors == len(owner.models.table)
    assert not _city_rows(w_outs)["rows"], "a publishing worker must not tick itself"


def test_two_workers_tick_as_one(city, params, batches):
    """Two workers, one owning the traffic topic and one the others (sensors of different
    kinds share no model state, so the per-reading scores are one process's): the owner's
    ticks equal the one-process ticks exactly, and each tick waits for both."""
    local = _processor(city, params)
    ref = [local.process(b) for b in batches]
    split = [{"city.readings.traffic"}, {"city.readings.environment", "city.readings.utility"}]
    # in messages of 700 sensors: the owner ticks only after a worker's last one
    w_outs, c_outs, owner = _run_workers(city, params, batches, split, max_sensors=700)
    assert _per_reading(w_outs) == _per_reading(ref)
    assert _city_rows(c_outs) == _city_rows(ref)
    assert owner.ticks == _city_rows(ref)["tables"]["district_risk"] // len(city.districts)

    # a half on its own is not the city: risk, health and alerts differ
    alone = Feed(CityTicker(_processor(city, params)))
    w = _processor(city, params, publish_ticks=True)
    outs = []
    for b in batches:
        o = w.process([m for m in b if m.topic in split[0]])
        if o.tick_state is not None:
            outs.append(alone.send(o.tick_boundary, ["t:0"], o.tick_state))
    assert _city_rows(outs) != _city_rows(ref)


def _by_number(numbers: set[int]) -> set[str]:
    return {tp for tp in READINGS_PARTITIONS if int(tp.rsplit(":", 1)[1]) in numbers}


def test_two_workers_of_a_kind_partitioned_stream_score_as_one(city, params, kind_batches,
                                                               batches):
    """As Faust splits a group: by partition number, across all readings topics. With every
    gateway of a kind on one partition (the simulator's default), each worker holds whole
    kinds, so every per-reading score, indicator and tick equals one process's. With the
    gateways hashed over the partitions (Kafka's default partitioner), a sensor's spatial
    neighbours and its kind's forest are split between the workers: the per-reading anomaly
    rows differ (the readings, indicators and the city tick's inputs do not; see
    docs/streams.md)."""
    split = [_by_number({0, 2}), _by_number({1, 3})]
    local = _processor(city, params)
    ref = [local.process(b) for b in kind_batches]
    w_outs, c_outs, _owner = _run_workers(city, params, kind_batches, split)
    want = _per_reading(ref)
    assert sum(want["anomalies"].values()) > 100
    assert _per_reading(w_outs) == want
    assert _city_rows(c_outs) == _city_rows(ref)
    # both workers did score: neither half is empty
    per_worker = [sum(o.rows["anomalies"] for o in w_outs[i::2]) for i in range(2)]
    assert min(per_worker) > 0, per_worker

    local = _processor(city, params)
    ref = [local.process(b) for b in batches]
    w_outs, _c, _o = _run_workers(city, params, batches, split)
    got, want = _per_reading(w_outs), _per_reading(ref)
    assert got["indicators"] == want["indicators"]
    assert got["anomalies"] != want["anomalies"]


def test_owner_waits_for_every_partition_but_not_forever(city, params, batches):
    now = [0.0]
    owner = CityTicker(_processor(city, params), expected=["a:0", "b:0"], wait_s=30.0,
                       clock=lambda: now[0])
    w = _processor(city, params, publish_ticks=True)
    states = []
    for b in batches:
        out = w.process(b)
        if out.tick_state is not None:
            states.append((out.tick_boundary, out.tick_state))
    assert len(states) >= 4
    (b1, s1), (b2, s2), (b3, _) = states[:3]
    feed = Feed(owner)
    # "b:0" never reported: the first tick waits for it ...
    assert not feed.send(b1, ["a:0"], s1).risk
    now[0] = 29.0
    assert not owner.poll().risk
    # ... for wait_s at most
    now[0] = 31.0
    out = owner.poll()
    assert out.risk and owner.last_tick == b1
    # "b:0" reports: it is waited for again, until both have passed b2
    nothing = w.models.tick_state(np.zeros(0, dtype=np.int64))
    assert not feed.send(b1, ["b:0"], nothing).risk
    assert not feed.send(b2, ["a:0"], s2).risk
    now[0] = 40.0
    assert not owner.poll().risk
    assert feed.send(b2, ["b:0"], s2).risk
    assert owner.last_tick == b2
    # a redelivered message (offset already applied) changes nothing
    feed.offset -= 1
    assert not feed.send(b3, ["a:0", "b:0"], nothing).risk
    assert owner.skipped == 1


def test_owner_state_survives_a_handover(city, params, batches):
    """The owner's snapshot (alerts, merged inputs, boundaries, position) restored by a new
    owner continues exactly like the old one."""
    w = _processor(city, params, publish_ticks=True)
    msgs = []
    for b in batches:
        out = w.process(b)
        if out.tick_state is not None:
            msgs += encode_tick_state(out.tick_boundary, ["a:0"], out.tick_state)
    cut = len(msgs) // 2
    one = CityTicker(_processor(city, params), expected=["a:0"])
    whole = [one.apply(i, m) for i, m in enumerate(msgs)]
    first = CityTicker(_processor(city, params), expected=["a:0"])
    head = [first.apply(i, m) for i, m in enumerate(msgs[:cut])]
    second = CityTicker(_processor(city, params), expected=["a:0"])
    main, *chunks = first.snapshot(max_sensors=600)  # the inputs in 9 chunks
    assert len(chunks) == 9
    # chunks of another snapshot (an older checkpoint's, left in the changelog) are ignored
    stale = CityTicker(_processor(city, params)).snapshot()[1:]
    second.restore(main, [*reversed(chunks), *stale])
    # the new owner reads again from the committed offset: what it holds is skipped
    tail = [second.apply(i, m) for i, m in enumerate(msgs) if i >= cut - 2]
    assert second.skipped == 2
    assert _city_rows(head + tail) == _city_rows(whole)
    assert _city_rows(whole)["tables"]["alert_events"] > 0
