"""Helpers of the end-to-end stream tests: paced producing, checksums, private services."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from kafka import KafkaProducer

from config.settings import load_settings
from models.frame import Frame, encode
from streams.topics import ensure_topics
from tests.conftest import ROOT, SMALL_CITY, free_port, tcp_open

WINDOW, LATENESS = 300, 120


def env(prefix: str, bootstrap: str, **extra: str) -> dict[str, str]:
    return {
        "CITYBRAIN_KAFKA_BOOTSTRAP": bootstrap,
        "CITYBRAIN_TOPIC_PREFIX": prefix,
        "CITYBRAIN_CITY_FILE": str(SMALL_CITY),
        "CITYBRAIN_GROUP_ID": f"{prefix}-worker",
        "CITYBRAIN_SINK_GROUP_ID": f"{prefix}-sink",
        "CITYBRAIN_WINDOW_S": str(WINDOW),
        "CITYBRAIN_ALLOWED_LATENESS_S": str(LATENESS),
        "CITYBRAIN_SINK_FLUSH_S": "0.5",
        "CITYBRAIN_STATE_SNAPSHOT_S": "1",
        "CITYBRAIN_WORKER_SESSION_TIMEOUT_S": "6",
        **extra,
    }


class PacedProducer(threading.Thread):
    """Produce frames (and extra raw messages) at a steady pace in the background."""

    def __init__(self, bootstrap: str, prefix: str, frames: list[Frame], *, seconds: float,
                 extra: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
                 hold_at: float | None = None, **kafka: object) -> None:
        """``hold_at`` (a fraction of the frames): stop there until :meth:`release`, so a test
        that must act mid-stream (kill a worker) still finds the stream running when a loaded
        machine makes the workers slow. Without a hold the pace alone decides."""
        super().__init__(daemon=True)
        self.hold_at = None if hold_at is None else int(len(frames) * hold_at)
        self.released = threading.Event()
        settings = load_settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
        ensure_topics(settings)
        self.topic = settings.topic("readings.traffic")
        self.frames, self.seconds = frames, seconds
        self.extra = sorted(extra, key=lambda x: x[0])  # (insert before frame i, raw)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                      **kafka)
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            pause = self.seconds / max(1, len(self.frames))
            extra = list(self.extra)
            for i, f in enumerate(self.frames):
                if i == self.hold_at:
                    self.producer.flush()
                    self.released.wait(600)
                while extra and extra[0][0] <= i:
                    self.producer.send(self.topic, key=b"TR-G001", value=extra.pop(0)[1])
                self.producer.send(self.topic, key=f.gateway.encode(), value=encode(f))
                self.sent = i + 1
                if pause:
                    time.sleep(pause)
            for _, raw in extra:
                self.producer.send(self.topic, key=b"TR-G001", value=raw)
            self.producer.flush()
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.producer.close()

    def release(self) -> None:
        self.released.set()

    def finish(self, timeout: float = 120) -> None:
        self.release()
        self.join(timeout)
        assert not self.is_alive(), "the producer did not finish"
        assert self.error is None, f"producer failed: {self.error!r}"


def readings_checksum(sensor_id, seq, flow, speed, occ) -> tuple[int, str]:
    """Count and SHA-256 over the sorted (sensor_id, seq, values) rows."""
    df = pd.DataFrame({"s": np.asarray(sensor_id).astype(str), "q": np.asarray(seq, np.int64),
                       "f": np.asarray(flow, float), "v": np.asarray(speed, float),
                       "o": np.asarray(occ, float)}).sort_values(["s", "q"])
    h = hashlib.sha256()
    for r in df.itertuples(index=False):
        h.update(f"{r.s}|{r.q}|{r.f:.6f}|{r.v:.6f}|{r.o:.6f}\n".encode())
    return len(df), h.hexdigest()


def frames_checksum(frames: list[Frame]) -> tuple[int, str]:
    return readings_checksum(
        np.concatenate([f.sensor_id for f in frames]), np.concatenate([f.seq for f in frames]),
        *(np.concatenate([f.metrics[m] for f in frames])
          for m in ("flow_vph", "speed_kmh", "occupancy_pct")))


def stored_checksum(store) -> tuple[int, str]:
    df = store.query("SELECT sensor_id, seq, flow_vph, speed_kmh, occupancy_pct "
                     "FROM readings_traffic FINAL")
    return readings_checksum(df["sensor_id"], df["seq"], df["flow_vph"], df["speed_kmh"],
                             df["occupancy_pct"])


def sensor_indicators(store) -> dict[tuple[str, str, int], float]:
    df = store.query("SELECT entity_id, name, toUInt32(ts) AS t, value FROM indicators FINAL "
                     "WHERE entity_type = 'sensor'")
    return {(str(r.entity_id), str(r.name), int(r.t)): float(r.value) for r in df.itertuples()}


def metric_value(port: int, name: str) -> float:
    """Sum of a Prometheus metric's samples (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] == name:
                total += float(value)
    return total


class PrivateClickHouse:
    """A second ClickHouse server (same binary and config as scripts/services.py) on free ports,
    with its data under the test's tmp dir, so it can be stopped without touching the shared
    one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        while True:
            self.port = free_port()
            if self.port > 2000 and not tcp_open(f"127.0.0.1:{self.port - 877}"):
                break
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")},
                    "CITYBRAIN_TEST_SERVICES_DIR": str(root),
                    "CITYBRAIN_TEST_CLICKHOUSE_PORT": str(self.port)}

    def _run(self, cmd: str) -> None:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "services.py"), cmd, "clickhouse"],
                       env=self.env, check=True, stdout=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


class PrivateKafka:
    """A second Apache Kafka broker (scripts/services.py, same jars and config) with its data
    under the test's tmp dir and its own ports, so the test can stop and restart it without
    touching the shared one. Ports: ``CITYBRAIN_TEST_KAFKA_PORT`` + 10 (+ 11 controller, + 12
    SASL), or the next free block of ten above."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = int(os.environ.get("CITYBRAIN_TEST_KAFKA_PORT", "39092"))
        self.started = False
        self._pick(1)

    def _pick(self, first: int) -> None:
        """The first block of three ports from ``base + 10 * first`` nobody listens on *and*
        that can be bound: a port in the ephemeral range may be the local end of some client's
        connection, which a connect test does not see (seen: the broker failed with "Address
        already in use" on a port ``tcp_open`` had found free)."""
        for k in range(first, first + 50):
            port = self.base + 10 * k
            if not any(tcp_open(f"127.0.0.1:{port + i}") or not _bindable(port + i)
                       for i in range(3)):
                break
        else:  # pragma: no cover - the machine is full of brokers
            raise AssertionError(f"no free port block for a private broker above {self.base}")
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")},
                    # a directory per port block: KRaft storage is formatted for its ports
                    "CITYBRAIN_TEST_SERVICES_DIR": str(self.root / str(port)),
                    "CITYBRAIN_TEST_KAFKA_PORT": str(port)}

    def _run(self, cmd: str) -> None:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "services.py"), cmd, "kafka"],
                       env=self.env, check=True, stdout=subprocess.DEVNULL, timeout=180)

    def start(self) -> None:
        """Start the broker; the first start moves to the next free port block (twice at most)
        if the broker cannot bind its ports (taken between the check and the start). A restart
        keeps the port: the clients know it."""
        for attempt in range(3):
            try:
                self._run("start")
                break
            except subprocess.CalledProcessError:
                if self.started or attempt == 2:
                    raise
                self._run("stop")
                self._pick((self.port - self.base) // 10 + 1)
        self.started = True

    def stop(self) -> None:
        self._run("stop")


def _bindable(port: int) -> bool:
    """Whether a listening socket could bind 127.0.0.1:port now (SO_REUSEADDR, as the JVM)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
