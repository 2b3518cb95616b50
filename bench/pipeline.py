"""Pipeline: frames → Apache Kafka → ``citybrain worker`` → ``citybrain sink`` → ClickHouse server.

Starts the local services with ``scripts/services.py start`` when ``status`` does not say both
are running (and stops them again at the end only then). Every run uses its own topic prefix,
consumer groups and ClickHouse database (dropped at the end).

* ``e2e_readings_per_s``: N readings of the default city (``normal_day``, seed 1; 5,000,000, or
  50,000 with ``--quick``) are pre-encoded as frames, then produced with a batching kafka-python
  producer (key = gateway id, placed as the simulator places them: every gateway of a kind on
  one partition, ``BENCH_PIPELINE_PARTITION_BY=gateway`` for Kafka's default) while one
  ``citybrain worker`` and one ``citybrain sink`` run with every derived output on
  (indicators, anomalies, risk, alerts, health). Time: first produce → ``count() FINAL`` over
  the three readings tables equals N, the worker's ``citybrain_readings_in_total`` equals N
  and the sink has committed (stored) every message of the derived topics up to their ends
  half a second after that. The worker's own offset commits, which follow its checkpoints, are
  waited for and reported (``worker_committed_s``) but not in the clock. The subprocesses are
  started and their consumer groups are *Stable* before the clock starts.
* ``raw_consumer_readings_per_s``: an aiokafka consumer (fresh group) reads the same readings
  topics from the beginning and only decodes the frames (``models.frame.decode``): the transport
  ceiling. Time: first fetched batch → last reading decoded.
* ``naive_readings_per_s``: ``bench/naive_agent.py``, a Faust agent over a topic holding one
  reading per message (the first readings of the same stream), rolling mean per sensor and metric
  per event. The topic is filled before the agent starts; time: first event → last event (inside
  the agent). Producing is *not* in this clock (it is in the e2e one), so the ratio is
  conservative.
* ``latency_p50_s``/``p95``/``p99``: a fresh worker + sink, frames produced at a steady 10,000
  readings/s, each frame re-stamped with the wall-clock time at which it is sent. A poller asks
  ClickHouse every ``POLL_S`` for ``max(seq)`` per sensor; a frame is visible when the last
  reading of the frame is (a sink insert is one batch, so the frame's readings arrive together).
  Latency = time of the first poll that sees it − produce time; resolution = poll interval plus
  the query's duration (both reported). The first ``WARMUP_S`` seconds are not counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench._services import clickhouse_hostport, kafka_hostport, services, tcp_open

ROOT = Path(__file__).resolve().parent.parent
# the services' addresses as scripts/services.py and the tests use them (CITYBRAIN_TEST_*_PORT)
KAFKA = os.environ.get("CITYBRAIN_TEST_KAFKA") or kafka_hostport()
CLICKHOUSE = clickhouse_hostport()
DOMAINS = ("traffic", "environment", "utility")
READINGS_TABLES = ("readings_traffic", "readings_environment", "readings_utility")
LATENCY_RATE = 10_000.0  # readings/s
POLL_S = 0.1
WARMUP_S = float(os.environ.get("BENCH_PIPELINE_WARMUP_S", "5"))
#: a directory: the worker runs under cProfile and the sink profiles its thread
#: (``BENCH_SINK_PROFILE``), each writing ``<name>.prof`` there when it stops
PROFILE_DIR = os.environ.get("BENCH_PIPELINE_PROFILE", "")
#: the e2e replay groups this much event time of a gateway into one frame
#: (:func:`sensors_sim.publisher.coalesce`, what a full-speed replay sends); 0 = one frame per
#: gateway and simulator tick (~20 readings)
COALESCE_S = float(os.environ.get("BENCH_PIPELINE_COALESCE_S", "300"))
#: extra settings for the e2e/latency worker and sink, e.g. ``CITYBRAIN_STATE_SNAPSHOT_S=30``
#: (comma-separated ``NAME=value``; reported in the e2e line as ``settings``)
SETTINGS = dict(kv.split("=", 1) for kv in os.environ.get("BENCH_PIPELINE_SETTINGS", "").split(",")
                if "=" in kv)


def _log(msg: str) -> None:
    print(f"[bench pipeline] {msg}", file=sys.stderr, flush=True)


# --- frames -------------------------------------------------------------------------------------


def _frames(n: int, skip: int = 0, coalesce_s: float = 0.0) -> Iterator[Any]:
    """Frames of the default city, in order, after the first ``skip`` readings, until ``n``
    more readings (whole frames); with ``coalesce_s`` a gateway's readings of that much event
    time are one frame (:func:`sensors_sim.publisher.coalesce`, as a full-speed replay sends)."""
    from config.city import load_city
    from sensors_sim.engine import Simulator
    from sensors_sim.publisher import coalesce
    from sensors_sim.scenario import load_scenario

    city = load_city()
    done = 0
    sim = Simulator(city, load_scenario("normal_day"), seed=1, duration=30 * 86400.0)
    skipped = 0
    for _, step in coalesce(sim.ticks(), span_s=coalesce_s):
        for f in step:
            if skipped < skip:
                skipped += len(f)
                continue
            yield f
            done += len(f)
            if done >= n:
                return


def _encoded(n: int, coalesce_s: float = 0.0) -> tuple[list[tuple[str, bytes, bytes]], int]:
    """``(topic suffix, key, value)`` for the first ``n`` readings, and their exact count."""
    from models.frame import encode

    out, total = [], 0
    for f in _frames(n, coalesce_s=coalesce_s):
        out.append((f"readings.{f.domain}", f.gateway.encode(), encode(f)))
        total += len(f)
    return out, total


def _single(n: int) -> list[tuple[bytes, bytes]]:
    """One JSON reading per message (key = sensor id) for the naive agent."""
    out: list[tuple[bytes, bytes]] = []
    for f in _frames(n):
        names = list(f.metrics)
        cols = [f.metrics[m].tolist() for m in names]
        for i, (sid, ts, seq) in enumerate(zip(f.sensor_id.tolist(), f.ts.tolist(),
                                              f.seq.tolist(), strict=True)):
            value = orjson.dumps({"sensor_id": sid, "ts": ts, "seq": seq,
                                  "metrics": {m: c[i] for m, c in zip(names, cols, strict=True)}})
            out.append((str(sid).encode(), value))
            if len(out) >= n:
                return out
    return out


def _producer(bootstrap: str, linger_ms: int = 20) -> Any:
    """The replay's producer; frames placed as the simulator places them (every gateway of a
    kind on one partition, ``config/partitioning.py``; ``BENCH_PIPELINE_PARTITION_BY=gateway``
    for Kafka's default). Keys that are no gateway (the naive agent's sensor ids) go by the
    default partitioner either way."""
    from kafka import KafkaProducer

    from config.city import load_city
    from config.partitioning import CityPartitioner

    by: Any = os.environ.get("BENCH_PIPELINE_PARTITION_BY", "kind")  # checked by the rule
    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, batch_size=512 << 10,
                         max_request_size=1 << 20, acks=1, delivery_timeout_ms=1_800_000,
                         partitioner=CityPartitioner(load_city(), by))


def _produce_all(producer: Any, items: Iterable[tuple[str, bytes, bytes]],
                 window: int = 20_000) -> None:
    """Send everything, at most ``window`` un-acknowledged messages at a time (kafka-python 3
    has no memory bound: an unbounded backlog would expire in the accumulator), and fail on
    any delivery error (``future.get`` raises it)."""
    pending: collections.deque[Any] = collections.deque()
    for topic, key, value in items:
        pending.append(producer.send(topic, key=key, value=value))
        if len(pending) > window:
            pending.popleft().get(timeout=600)
    producer.flush()
    for f in pending:
        f.get(timeout=600)


# --- processes ----------------------------------------------------------------------------------


def _listener_pid(hostport: str) -> int | None:
    """The pid of the process listening on ``hostport`` (Kafka, ClickHouse), if it is ours."""
    import psutil

    port = int(hostport.rpartition(":")[2])
    with contextlib.suppress(psutil.Error, OSError):
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    return None


def _cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """User + system CPU seconds so far of each process (threads included)."""
    import psutil

    out: dict[str, float] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
    return out


_CPU_PROFILE = """\
import cProfile, runpy, sys, time
sys.argv = ["citybrain", *sys.argv[1:]]
prof = cProfile.Profile(time.process_time)
prof.enable()
try:
    runpy.run_module("citybrain", run_name="__main__")
finally:
    prof.disable()
    prof.dump_stats({out!r})
"""


class _Proc:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115
        full = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
        full.update(env)
        if PROFILE_DIR and cmd[-1] == "worker":
            # CPU time, not wall time (``-m cProfile`` counts the waits in epoll and every
            # moment another process had the core: useless on a shared machine)
            cmd = [cmd[0], "-c", _CPU_PROFILE.format(out=str(Path(PROFILE_DIR) / f"{name}.prof")),
                   *cmd[3:]]
        elif PROFILE_DIR and cmd[-1] == "sink":
            full["BENCH_SINK_PROFILE"] = str(Path(PROFILE_DIR) / f"{name}.prof")
        self.proc = subprocess.Popen(cmd, env=full, cwd=ROOT, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n"
                               + self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


def _wait_stable(bootstrap: str, groups: list[str], procs: list[_Proc], timeout: float,
                 need: set[str] = frozenset(), partitions: int = 4) -> None:  # type: ignore[assignment]
    """Wait until every group is Stable and its members hold every partition of ``need``."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout
    want = {(t, i) for t in need for i in range(partitions)}
    since: float | None = None
    try:
        while True:
            for p in procs:
                p.check()
            try:
                info = admin.describe_groups(groups)
            except KafkaError as exc:  # a fresh broker: no group coordinator yet
                info, since = {}, None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"consumer groups not ready after {timeout}s") from exc
                time.sleep(0.5)
                continue
            ok = True
            for g in groups:
                d = info.get(g) or {}
                held = {(a["topic"], part) for m in d.get("members", [])
                        for a in (m.get("member_assignment") or {}).get("assigned_partitions", [])
                        for part in a["partitions"]}
                ok = ok and d.get("group_state") == "Stable" and want <= held
            # kafka-python's sink re-joins once after its first assignment (metadata update):
            # ready = stable and fully assigned for 4 s in a row
            if not ok:
                since = None
            elif since is None:
                since = time.monotonic()
            elif time.monotonic() - since >= 4:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumer groups not ready after {timeout}s: {info}")
            time.sleep(0.5)
    finally:
        admin.close()


class _Pipeline:
    """One topic prefix + database with a worker and a sink running on it."""

    def __init__(self, log_dir: Path, tag: str) -> None:
        from config.settings import load_settings
        from store.schema import apply_schema
        from store.server import ServerStore
        from streams.topics import ensure_topics

        self.prefix = f"bench{tag}{uuid.uuid4().hex[:8]}"
        host, _, port = CLICKHOUSE.rpartition(":")
        self.store = ServerStore(host=host, port=int(port), database=self.prefix)
        apply_schema(self.store)
        self.settings = load_settings(kafka_bootstrap=KAFKA, topic_prefix=self.prefix)
        ensure_topics(self.settings)
        env = {
            "CITYBRAIN_KAFKA_BOOTSTRAP": KAFKA,
            "CITYBRAIN_TOPIC_PREFIX": self.prefix,
            "CITYBRAIN_GROUP_ID": f"{self.prefix}-worker",
            "CITYBRAIN_SINK_GROUP_ID": f"{self.prefix}-sink",
            "CITYBRAIN_STORE": "clickhouse",
            "CITYBRAIN_CLICKHOUSE_URL": f"clickhouse://{host}:{port}/{self.prefix}",
            "CITYBRAIN_WORKER_DATA_DIR": str(log_dir / f"{self.prefix}-data"),
            **SETTINGS,
        }
        cb = [sys.executable, "-m", "citybrain"]
        self.metrics_port = _free_port()
        self.procs = [_Proc(f"{self.prefix}-worker", [*cb, "worker"],
                            {**env, "CITYBRAIN_METRICS_PORT": str(self.metrics_port)}, log_dir),
                      _Proc(f"{self.prefix}-sink", [*cb, "sink"], env, log_dir)]
        try:
            _wait_stable(KAFKA, [f"{self.prefix}-worker", f"{self.prefix}-sink"], self.procs, 120,
                         need={self.topic(f"readings.{d}") for d in DOMAINS},
                         partitions=int(self.settings.kafka_partitions))
        except BaseException:
            self.close()
            raise

    def topic(self, suffix: str) -> str:
        return str(self.settings.topic(suffix))

    def worker_readings(self) -> float:
        """The worker's ``citybrain_readings_in_total``: readings it has processed."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith("citybrain_readings_in_total"))

    def count(self, final: bool) -> int:
        f = " FINAL" if final else ""
        return sum(int(self.store.query(f"SELECT count() AS n FROM {t}{f}")["n"][0])
                   for t in READINGS_TABLES)

    def derived(self) -> dict[str, int]:
        out = {}
        for t in ("indicators", "anomalies", "district_risk", "sensor_health", "alert_events"):
            with contextlib.suppress(Exception):  # a table this schema may not have
                out[t] = int(self.store.query(f"SELECT count() AS n FROM {t}")["n"][0])
        return out

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        try:
            self.store.command(f"DROP DATABASE IF EXISTS {self.prefix}")
        finally:
            self.store.close()


# --- measurements -------------------------------------------------------------------------------


def _admin() -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=KAFKA)


def _drop_topics(prefix: str) -> None:
    """Delete a run's topics once it is measured: every client fetches the metadata of *all*
    topics now and then, so topics left behind by earlier runs make later runs slower (seen:
    799 topics on a test broker; decoding their metadata took more of the worker's CPU than
    the windows)."""
    try:
        admin = _admin()
    except Exception as exc:  # the measurement is done; a leftover topic is no error
        _log(f"could not delete the run's topics: {exc!r}")
        return
    try:
        mine = [t for t in admin.list_topics()
                if t.startswith(f"{prefix}.") or t.startswith(f"{prefix}-")]
        if mine:
            admin.delete_topics(mine)
    except Exception as exc:
        _log(f"could not delete the run's topics: {exc!r}")
    finally:
        admin.close()


#: the worker's output topics the sink stores
DERIVED_STORED = ("indicators", "anomalies", "risk", "alerts")


def _end_offsets(topics: list[str]) -> dict[Any, int]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=KAFKA)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t))]
        return {tp: int(off) for tp, off in c.end_offsets(tps).items()}
    finally:
        c.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _caught_up(admin: Any, group: str, ends: dict[Any, int]) -> bool:
    """The group committed every offset up to ``ends`` (it processed everything produced)."""
    from kafka.errors import KafkaError

    try:
        done = admin.list_group_offsets(group).get(group, {})
    except KafkaError:
        return False
    return all(end == 0 or (tp in done and done[tp].offset >= end) for tp, end in ends.items())


def _e2e(log_dir: Path, msgs: list[tuple[str, bytes, bytes]], total: int, timeout: float,
         keep: list[_Pipeline] | None = None) -> tuple[float, dict[str, Any], str]:
    """Throughput; with ``keep`` the running pipeline is appended to it instead of closed."""
    pipe = _Pipeline(log_dir, "e")
    ok = False
    try:
        producer = _producer(KAFKA)
        topics = {s: pipe.topic(s) for s in {m[0] for m in msgs}}
        pids = {"worker": pipe.procs[0].proc.pid, "sink": pipe.procs[1].proc.pid,
                "kafka": _listener_pid(KAFKA), "clickhouse": _listener_pid(CLICKHOUSE),
                "producer+bench": os.getpid()}
        cpu0 = _cpu_seconds(pids)
        t0 = time.perf_counter()
        _produce_all(producer, ((topics[t], k, v) for t, k, v in msgs))
        produced_s = time.perf_counter() - t0
        producer.close()
        ends = _end_offsets([pipe.topic(f"readings.{d}") for d in DOMAINS])
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        readings_s: float | None = None  # all readings visible in ClickHouse
        processed_s: float | None = None  # the worker processed every reading
        derived_ends: dict[Any, int] | None = None  # the derived topics' ends by then
        derived_s: float | None = None  # the sink stored every derived message up to them
        worker_s: float | None = None  # the worker committed every readings offset
        admin = _admin()
        try:
            while readings_s is None or derived_s is None or worker_s is None:
                for p in pipe.procs:
                    p.check()
                if readings_s is None:
                    n = pipe.count(final=False)
                    if n >= total and pipe.count(final=True) >= total:
                        readings_s = time.perf_counter() - t0
                    elif n != last:
                        last_change = time.monotonic()
                        _log(f"e2e: {n}/{total} readings visible "
                             f"({time.perf_counter() - t0:.1f} s)")
                        last = n
                    elif time.monotonic() - last_change > 60:
                        raise RuntimeError(
                            f"stuck at {n}/{total} readings in ClickHouse for 60 s; sink log:\n"
                            + pipe.procs[1].log.read_text(errors="replace")[-3000:])
                if processed_s is None and pipe.worker_readings() >= total:
                    processed_s = time.perf_counter() - t0
                    _log(f"e2e: the worker processed every reading ({processed_s:.1f} s)")
                    time.sleep(0.5)  # the last batch's outputs leave its producer
                    derived_ends = _end_offsets([pipe.topic(t) for t in DERIVED_STORED])
                if (derived_s is None and derived_ends is not None
                        and _caught_up(admin, f"{pipe.prefix}-sink", derived_ends)):
                    derived_s = time.perf_counter() - t0
                    _log(f"e2e: its outputs are stored ({derived_s:.1f} s)")
                if worker_s is None and _caught_up(admin, f"{pipe.prefix}-worker", ends):
                    worker_s = time.perf_counter() - t0
                    _log(f"e2e: the worker committed every readings offset ({worker_s:.1f} s)")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not done after {timeout}s: readings visible after "
                                       f"{readings_s} s, worker caught up after {worker_s} s")
                time.sleep(0.25)
        finally:
            admin.close()
        assert readings_s is not None and derived_s is not None and worker_s is not None
        # every reading stored, every one processed and what that produced stored (the
        # worker's offset commits follow its checkpoints, seconds later: not in the clock)
        elapsed = max(readings_s, derived_s)
        cpu1 = _cpu_seconds(pids)
        # CPU seconds per million readings, per process: less noisy than wall rates on a
        # shared machine (the bench process also polls count() every 0.5 s)
        cpu = {k: round((cpu1[k] - cpu0[k]) * 1e6 / total, 2) for k in cpu1 if k in cpu0}
        # the derived outputs lag a little behind the readings: let them settle for the record
        time.sleep(3)
        extra = {"produce_s": round(produced_s, 2), "seconds": round(elapsed, 2),
                 "readings_visible_s": round(readings_s, 2),
                 "worker_processed_s": round(processed_s or 0.0, 2),
                 "outputs_stored_s": round(derived_s, 2),
                 "worker_committed_s": round(worker_s, 2),
                 "coalesce_s": COALESCE_S, "settings": SETTINGS,
                 "cpu_s_per_million": cpu, "derived_rows": pipe.derived()}
        ok = True
        return total / elapsed, extra, pipe.prefix
    finally:
        if ok and keep is not None:
            keep.append(pipe)
        else:
            pipe.close()


def _raw_consumer(prefix: str, total: int, timeout: float) -> float:
    from aiokafka import AIOKafkaConsumer

    from models.frame import decode

    async def consume() -> float:
        topics = [f"{prefix}.readings.{d}" for d in ("traffic", "environment", "utility")]
        consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=KAFKA, group_id=f"{prefix}-raw",
            auto_offset_reset="earliest", enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
        await consumer.start()
        n, t0 = 0, 0.0
        deadline = time.monotonic() + timeout
        try:
            while n < total:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"raw consumer: {n}/{total} readings after {timeout}s")
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batch.values():
                    if not t0:
                        t0 = time.perf_counter()
                    for r in records:
                        n += len(decode(r.value))
            return n / (time.perf_counter() - t0)
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def _naive(log_dir: Path, msgs: list[tuple[bytes, bytes]], timeout: float) -> float:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"benchn{uuid.uuid4().hex[:8]}"
    topic = f"{name}.readings"
    admin = KafkaAdminClient(bootstrap_servers=KAFKA)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    producer = _producer(KAFKA)
    _produce_all(producer, ((topic, k, v) for k, v in msgs))
    producer.close()
    result = log_dir / f"{name}.json"
    env = {"NAIVE_BOOTSTRAP": KAFKA, "NAIVE_TOPIC": topic, "NAIVE_GROUP": name,
           "NAIVE_EXPECTED": str(len(msgs)), "NAIVE_RESULT": str(result),
           "NAIVE_DATADIR": str(log_dir / f"{name}-data")}
    proc = _Proc(name, [sys.executable, "-m", "bench.naive_agent"], env, log_dir)
    try:
        deadline = time.monotonic() + timeout
        while not result.exists():
            proc.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"naive agent did not finish in {timeout}s:\n"
                                   + proc.log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        time.sleep(0.1)
        info = orjson.loads(result.read_bytes())
        return float(info["readings"]) / max(float(info["seconds"]), 1e-9)
    finally:
        proc.stop()
        with contextlib.suppress(Exception):  # best effort
            admin.delete_topics([topic])
        admin.close()


def _latency(log_dir: Path, seconds: float, pipe: _Pipeline | None = None,
             skip: int = 0) -> tuple[list[float], dict[str, Any]]:
    """Latency samples; on ``pipe`` (then closed) or on a fresh worker + sink."""
    import dataclasses

    from models.frame import encode

    # the continuation of the stream already replayed into ``pipe`` (``skip`` readings): new seqs
    frames = list(_frames(int(LATENCY_RATE * seconds), skip=skip))
    pipe = pipe or _Pipeline(log_dir, "l")
    since = int(time.time()) - 2
    sent: list[tuple[str, int, float]] = []  # (sensor of the frame's last reading, seq, time)
    lock = threading.Lock()
    stop = threading.Event()
    seen: dict[str, int] = {}
    visible_at: dict[int, float] = {}
    query_s: list[float] = []
    error: list[BaseException] = []

    def poll() -> None:
        from clickhouse_driver import Client

        host, _, port = CLICKHOUSE.rpartition(":")
        client = Client(host=host, port=int(port), database=pipe.prefix)
        # only this phase's rows (stamped with wall-clock time; the replay is in the past)
        union = " UNION ALL ".join(f"SELECT sensor_id, max(seq) AS s FROM {t} "
                                   f"WHERE ts >= toDateTime({since}) GROUP BY sensor_id"
                                   for t in READINGS_TABLES)
        pending: list[int] = []
        checked = 0
        try:
            while not stop.is_set():
                t = time.perf_counter()
                rows = client.execute(union)
                now = time.time()
                query_s.append(time.perf_counter() - t)
                for sid, s in rows:
                    seen[sid] = int(s)
                with lock:
                    upto = len(sent)
                pending.extend(range(checked, upto))
                checked = upto
                still = []
                for i in pending:
                    sid, seq, _ = sent[i]
                    if seen.get(sid, -1) >= seq:
                        visible_at[i] = now
                    else:
                        still.append(i)
                pending = still
                time.sleep(max(0.0, POLL_S - (time.perf_counter() - t)))
        except BaseException as exc:
            error.append(exc)
        finally:
            client.disconnect()

    try:
        producer = _producer(KAFKA, linger_ms=5)
        topics = {d: pipe.topic(f"readings.{d}") for d in ("traffic", "environment", "utility")}
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        t0 = time.time()
        done = 0
        futures: list[Any] = []
        for f in frames:
            due = t0 + done / LATENCY_RATE
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            now = time.time()
            stamped = dataclasses.replace(f, ts=np.full(len(f), now))
            futures.append(producer.send(topics[f.domain], key=f.gateway.encode(),
                                         value=encode(stamped)))
            with lock:
                sent.append((str(f.sensor_id[-1]), int(f.seq[-1]), now))
            done += len(f)
        producer.flush()
        for fut in futures:
            fut.get(timeout=60)
        producer.close()
        rate = done / (time.time() - t0)
        deadline = time.monotonic() + 60
        while len(visible_at) < len(sent) and time.monotonic() < deadline and not error:
            for p in pipe.procs:
                p.check()
            time.sleep(0.2)
        stop.set()
        poller.join(10)
        if error:
            raise error[0]
        lat = [visible_at[i] - sent[i][2] for i in range(len(sent))
               if i in visible_at and sent[i][2] - t0 >= WARMUP_S]
        missing = len(sent) - len(visible_at)
        extra = {"produce_rate_readings_per_s": round(rate), "frames": len(sent),
                 "frames_not_visible_in_60s": missing, "poll_interval_s": POLL_S,
                 "poll_query_s_median": round(statistics.median(query_s), 4) if query_s else None,
                 "warmup_s": WARMUP_S, "paced_s": seconds}
        return lat, extra
    finally:
        stop.set()
        pipe.close()


def _line(name: str, values: list[float], runs: int, unit: str, digits: int = 0,
          **extra: Any) -> dict[str, Any]:
    def r(x: float) -> float:
        return round(x, digits) if digits else round(x)

    return {"name": name, "value": r(statistics.median(values)), "unit": unit, "runs": runs,
            "min": r(min(values)), "max": r(max(values)), **extra}


def run(runs: int = 3, quick: bool = False) -> Iterable[dict[str, Any]]:
    runs = max(1, runs)
    n = int(os.environ.get("BENCH_PIPELINE_READINGS", 50_000 if quick else 5_000_000))
    n_naive = int(os.environ.get("BENCH_PIPELINE_NAIVE", 20_000 if quick else 200_000))
    lat_s = float(os.environ.get("BENCH_PIPELINE_LATENCY_S", 10 if quick else 60))
    # start only what does not answer at the addresses this run uses, stop only that
    started = [name for name, addr in (("kafka", KAFKA), ("clickhouse", CLICKHOUSE))
               if not tcp_open(addr)]
    # the latency phase runs on the e2e worker + sink, after the replay (steady state)
    warm: list[_Pipeline] = []
    if started:
        _log(f"starting {', '.join(started)}")
        services("start", *started)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            log_dir = Path(tmp)
            _log(f"encoding {n} readings")
            msgs, total = _encoded(n, COALESCE_S)
            single = _single(n_naive)
            e2e, raw, naive, ratio_n, ratio_r = [], [], [], [], []
            e2e_extra: dict[str, Any] = {}
            lat: list[float] = []
            lat_extra: dict[str, Any] = {}
            for i in range(runs):
                _log(f"run {i + 1}/{runs}: end to end")
                rate, e2e_extra, prefix = _e2e(log_dir, msgs, total, timeout=600 + n / 5000,
                                               keep=warm)
                _log(f"run {i + 1}/{runs}: e2e {rate:.0f} readings/s; latency at "
                     f"{LATENCY_RATE:.0f} readings/s for {lat_s:.0f} s")
                got, lat_extra = _latency(log_dir, lat_s + WARMUP_S, warm.pop(0), skip=total)
                lat.extend(got)
                _log(f"run {i + 1}/{runs}: {len(got)} latency samples; raw consumer")
                raw_rate = _raw_consumer(prefix, total, timeout=300 + n / 10_000)
                _drop_topics(prefix)
                _log(f"run {i + 1}/{runs}: raw {raw_rate:.0f} readings/s; naive agent")
                naive_rate = _naive(log_dir, single, timeout=300 + n_naive / 500)
                _log(f"run {i + 1}/{runs}: naive {naive_rate:.0f} readings/s")
                e2e.append(rate)
                raw.append(raw_rate)
                naive.append(naive_rate)
                ratio_n.append(rate / naive_rate)
                ratio_r.append(rate / raw_rate)
            if not lat:
                raise RuntimeError(f"no frame became visible in ClickHouse: {lat_extra}")
            common: dict[str, Any] = {"readings": total, "city_sensors": 5000, "scenario": "normal_day",
                      "kafka": KAFKA, "clickhouse": CLICKHOUSE}
            yield _line("e2e_readings_per_s", e2e, runs, "readings/s", **common, **e2e_extra,
                        method="first produce -> count() FINAL of readings_* == N and the "
                               "worker processed all N and the sink stored every derived "
                               "message it had sent by then; 1 worker + 1 sink subprocess, "
                               "all derived outputs on")
            yield _line("naive_readings_per_s", naive, runs, "readings/s",
                        readings=len(single),
                        method="Faust agent (bench/naive_agent.py), 1 reading/message, "
                               "rolling mean per event; first -> last event, topic pre-filled")
            yield _line("raw_consumer_readings_per_s", raw, runs, "readings/s", **common,
                        method="aiokafka consumer, decode frames only; first fetch -> last "
                               "reading decoded")
            yield _line("ratio_vs_naive", ratio_n, runs, "x", digits=2)
            yield _line("ratio_vs_raw_consumer", ratio_r, runs, "x", digits=3)
            method = ("frames re-stamped with wall-clock send time, paced at 10,000 readings/s; "
                      f"poll max(seq) per sensor every {POLL_S}s; latency = first poll seeing "
                      "the frame's last reading - send time; pooled over runs; on the e2e worker + "
                      "sink right after the replay")
            for q in (50, 95, 99):
                v = float(np.percentile(lat, q)) if lat else float("nan")
                yield {"name": f"latency_p{q}_s", "value": round(v, 3), "unit": "s",
                       "runs": runs, "min": round(min(lat), 3) if lat else None,
                       "max": round(max(lat), 3) if lat else None, "samples": len(lat),
                       "method": method, **lat_extra}
    finally:
        for pipe in warm:
            pipe.close()
        if started:
            _log(f"stopping what this run started: {', '.join(started)}")
            services("stop", *started)
