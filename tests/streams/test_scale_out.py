"""Two workers, one of them SIGKILLed mid-stream, score every reading exactly as one process
does (real Apache Kafka and ClickHouse server).

The simulator places every gateway of a kind on one readings partition (config/partitioning.py)
and Faust splits the group by partition number, so each worker holds whole kinds: a sensor's
spatial neighbours and its kind's IsolationForest are on the worker that scores it; a worker
that takes a partition over restores its gateways' state from the changelog. The stored
anomaly rows of the default city (every kind) then equal the rows of one in-process processor
over the same frames, value for value.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import time
from collections import defaultdict

import numpy as np
import pytest

from config.city import load_city
from config.settings import DEFAULT_CITY, load_settings
from models.frame import encode
from sensors_sim.clock import RealClock
from sensors_sim.engine import Simulator
from sensors_sim.publisher import Publisher, run_live
from sensors_sim.scenario import load_scenario
from streams.app import build_processor
from streams.codecs import decode_table
from streams.processor import Message
from streams.topics import ensure_topics
from tests.conftest import free_port, wait_until
from tests.streams.e2e import env, metric_value

pytestmark = pytest.mark.services

DURATION_S = 3600.0  # the forest scores a sensor after 6 windows of 300 s
ANOMALY_SCORE = "0.5"  # below the default 0.95: thousands of rows of every detector
COLS = ("score", "seasonal", "spatial", "multivariate", "metric", "flags", "kind", "district")


def _simulator() -> Simulator:
    return Simulator(load_city(), load_scenario("bad_day"), seed=5, duration=DURATION_S)


def _reference(settings) -> dict[tuple[str, int], list[tuple]]:
    """One processor over every frame, in the simulator's order: (sensor, second) -> rows (a
    sensor's duplicated readings share a second; the table keeps one of them)."""
    proc = build_processor(settings)
    rows: dict[tuple[str, int], list[tuple]] = defaultdict(list)
    offset = 0
    for _t, frames in _simulator().ticks():
        msgs = []
        for f in frames:
            msgs.append(Message(settings.topic(f"readings.{f.domain}"), 0, offset,
                                f.gateway.encode(), encode(f)))
            offset += 1
        for _key, value in proc.process(msgs).anomalies:
            table, cols = decode_table(value)
            if table != "anomalies":
                continue
            for i in range(len(cols["ts"])):
                key = (str(cols["sensor_id"][i]), _epoch_s(cols["ts"][i]))
                rows[key].append(tuple(_norm(cols[c][i]) for c in COLS))
    return rows


def _epoch_s(v) -> int:
    if isinstance(v, dt.datetime):
        return math.floor((v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp())
    if isinstance(v, np.datetime64):
        return int(v.astype("datetime64[s]").astype(np.int64))
    return math.floor(float(v))


def _norm(v):
    if isinstance(v, float | int) and not isinstance(v, bool):
        f = float(v)
        return None if math.isnan(f) else f
    return None if v is None else str(v)


def _assigned(log: str) -> set[str]:
    """The readings partitions of the worker's latest assignment (its log line)."""
    found = re.findall(r"partitions assigned: \[(.*?)\]", log)
    if not found:
        return set()
    names = {p.strip(" '\"") for p in found[-1].split(",")}
    return {n for n in names if n.split(":")[0] in ("traffic", "environment", "utility",
                                                    "tickstate")}


def test_two_workers_one_killed_store_the_anomalies_of_one_process(
        kafka_bootstrap, server_store, unique, spawn):
    """Two workers share the partitions; the one holding the loops (partition 0, and with it
    the city tick) is SIGKILLed a third into the stream, and the other takes its partitions
    over from the changelog. The stored anomaly rows equal one process's, value for value."""
    kw = server_store._kw
    e = env(unique, kafka_bootstrap,
            CITYBRAIN_STORE="clickhouse",
            CITYBRAIN_CLICKHOUSE_URL=f"clickhouse://{kw['host']}:{kw['port']}/"
                                     f"{server_store.database}",
            CITYBRAIN_CITY_FILE=str(DEFAULT_CITY),
            CITYBRAIN_ANOMALY_SCORE=ANOMALY_SCORE,
            CITYBRAIN_STATE_SNAPSHOT_S="5")
    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique,
                             city_file=DEFAULT_CITY, anomaly_score=float(ANOMALY_SCORE),
                             window_s=int(e["CITYBRAIN_WINDOW_S"]),
                             allowed_lateness_s=int(e["CITYBRAIN_ALLOWED_LATENESS_S"]))
    assert settings.kafka_partition_by == "kind" and settings.kafka_partitions == 4
    ensure_topics(settings)
    ports = [free_port(), free_port()]
    workers = [spawn(f"worker{i + 1}", ["worker"], {**e, "CITYBRAIN_METRICS_PORT": str(p)})
               for i, p in enumerate(ports)]
    sink = spawn("sink", ["sink"], e)
    procs = [*workers, sink]

    def split() -> bool:
        owned = [_assigned(w.tail(200000)) for w in workers]
        print(f"assigned: {owned}")
        return (all(owned) and not owned[0] & owned[1]
                and len(owned[0] | owned[1]) == 4 * 4)  # readings + tick state

    # both in the group before the first frame
    wait_until(split, timeout=180, what="the two workers to share the partitions", procs=procs)
    victim = next(i for i, w in enumerate(workers) if "traffic:0" in _assigned(w.tail(200000)))
    expected = _reference(settings)
    total = sum(len(f) for _t, frames in _simulator().ticks() for f in frames)

    # the hour of event time in ~80 s of wall time, in the background
    pub = Publisher(settings)
    result: dict = {}

    def publish() -> None:
        try:
            result["stats"] = run_live(_simulator(), pub, speed=45.0, clock=RealClock())
        except BaseException as exc:
            result["error"] = exc
        finally:
            pub.close()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()

    def both_scoring_and_checkpointed() -> bool:
        n = [metric_value(p, "citybrain_readings_in_total") for p in ports]
        ck = metric_value(ports[victim], "citybrain_checkpoints_total")
        print(f"readings in per worker {n}, victim checkpoints {ck}, "
              f"published {pub.stats.readings}")
        return min(n) > 0 and ck >= 2 and pub.stats.readings > total // 3

    wait_until(both_scoring_and_checkpointed, timeout=180, what="both workers scoring",
               procs=procs)
    assert thread.is_alive() and pub.stats.readings < total, "the stream ended before the kill"
    live = workers[1 - victim]
    live.tail()
    log_at = live.log.stat().st_size
    workers[victim].kill()
    procs = [live, sink]
    thread.join(timeout=600)
    assert "error" not in result, result.get("error")
    stats = result["stats"]
    assert stats.readings == total and not pub.stats.errors

    seen = {"a": -1, "since": time.monotonic()}

    def stored() -> bool:
        """Every reading, and every expected anomaly row or none more for 30 s (then the
        comparison below says which rows differ)."""
        r = sum(server_store.query(f"SELECT count() AS n FROM readings_{d} FINAL")["n"][0]
                for d in ("traffic", "environment", "utility"))
        a = server_store.query("SELECT count() AS n FROM anomalies FINAL")["n"][0]
        print(f"readings {r}/{total}, anomalies {a}/{len(expected)}")
        if a != seen["a"]:
            seen.update(a=a, since=time.monotonic())
        return r == total and (a >= len(expected) or time.monotonic() - seen["since"] > 30)

    wait_until(stored, timeout=300, what="every reading and anomaly", procs=procs)
    got = server_store.query(
        f"SELECT sensor_id, toUInt32(ts) AS t, {', '.join(COLS)} FROM anomalies FINAL")
    stored_rows = {}
    for i in range(len(got["sensor_id"])):
        key = (str(got["sensor_id"][i]), int(got["t"][i]))
        stored_rows[key] = tuple(_norm(got[c][i]) for c in COLS)
    assert stored_rows.keys() == expected.keys()
    wrong = [k for k, row in stored_rows.items() if row not in expected[k]]
    assert not wrong, f"{len(wrong)} rows differ; first: " + "; ".join(
        f"{k}: {stored_rows[k]} not in {expected[k]}" for k in wrong[:5])
    # rows of both workers' kinds: the loops' partition (0) was the victim's, air and weather
    # the survivor's (partition 3 of 4, config/partitioning.py); the forest scored too
    kinds = {row[COLS.index("kind")] for row in stored_rows.values()}
    assert {"loop", "air", "weather"} <= kinds, kinds
    assert sum(1 for r in stored_rows.values() if r[COLS.index("multivariate")] is not None) > 0
    # the survivor took the loops and the city tick over with their state, not afresh
    live.tail()
    after = live.log.read_bytes()[log_at:].decode(errors="replace")
    assert "restoring state of gateway TR-G" in after, "the survivor took the loops over cold"
    assert "now runs the city tick (restored" in after
    for p in procs:
        assert p.stop() == 0, p.tail()
