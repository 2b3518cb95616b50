"""The local services a benchmark needs, started with ``scripts/services.py`` only when they are
not already answering, and stopped again afterwards only then.

The ports are the ones ``scripts/services.py`` and the tests use: ``CITYBRAIN_TEST_KAFKA_PORT``
(default 39092) and ``CITYBRAIN_TEST_CLICKHOUSE_PORT`` (default 39000) on 127.0.0.1;
``CITYBRAIN_TEST_CLICKHOUSE`` (``host:port``) overrides the ClickHouse address.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "services.py"
HOST = "127.0.0.1"


def clickhouse_hostport() -> str:
    explicit = os.environ.get("CITYBRAIN_TEST_CLICKHOUSE")
    if explicit:
        return explicit
    return f"{HOST}:{int(os.environ.get('CITYBRAIN_TEST_CLICKHOUSE_PORT', '39000'))}"


def kafka_hostport() -> str:
    return f"{HOST}:{int(os.environ.get('CITYBRAIN_TEST_KAFKA_PORT', '39092'))}"


def tcp_open(hostport: str, timeout: float = 1.0) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def services(action: str, *names: str) -> None:
    """``scripts/services.py ACTION [NAMES…]`` (its log goes to stderr; fails loudly)."""
    subprocess.run([sys.executable, str(SCRIPT), action, *names], check=True, stdout=sys.stderr)


_ADDRESS = {"clickhouse": clickhouse_hostport, "kafka": kafka_hostport}


@contextmanager
def running(*names: str) -> Iterator[dict[str, str]]:
    """Make sure the named services (``clickhouse``, ``kafka``) answer; yields their
    ``host:port`` by name. Those this call started are stopped on exit, the others are left
    alone."""
    unknown = [n for n in names if n not in _ADDRESS]
    if unknown:
        raise ValueError(f"unknown service(s) {unknown} (known: {sorted(_ADDRESS)})")
    addresses = {n: _ADDRESS[n]() for n in names}
    started = [n for n in names if not tcp_open(addresses[n])]
    if started:
        services("start", *started)
    try:
        yield addresses
    finally:
        if started:
            services("stop", *started)
