"""Stores for the warehouse tests: every test that takes ``store`` or ``seeded`` runs on the
ClickHouse 18.16 server *and* on chDB 26.x.

chDB runs one embedded server per process, bound to the first data directory it opens, so all
in-process chDB stores share one directory (``chdb_root``) and differ by database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from config.city import load_city
from store.base import Store

SEED_DAYS = 4
SEED_STEP_S = 1800


def _server(hostport: str, database: str) -> Store:
    from store.server import ServerStore

    host, _, port = hostport.rpartition(":")
    return ServerStore(host=host, port=int(port), database=database)


def _open(kind: str, request: pytest.FixtureRequest, database: str) -> Store:
    if kind == "server":
        hostport = request.getfixturevalue("clickhouse_hostport")
        return _server(hostport, database)
    from store.embedded import EmbeddedStore

    return EmbeddedStore(path=request.getfixturevalue("chdb_root"), database=database)


def _drop(store: Store) -> None:
    store.command(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


@pytest.fixture(scope="session")
def default_city():  # type: ignore[no-untyped-def]
    return load_city()


@pytest.fixture(params=["server", "chdb"])
def store(request: pytest.FixtureRequest, unique: str, default_city) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """A fresh database with the schema and the default city's dimensions."""
    from store.dimensions import load_dimensions
    from store.schema import apply_schema

    s = _open(request.param, request, unique)
    apply_schema(s)
    load_dimensions(s, default_city)
    yield s
    _drop(s)


def seed_start() -> int:
    """Seeded data end at the current hour, so queries relative to now() see them."""
    now = int(time.time()) // 3600 * 3600
    return now - SEED_DAYS * 86400


@pytest.fixture(scope="session", params=["server", "chdb"])
def seeded(request: pytest.FixtureRequest, default_city) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """One seeded database per backend for the session (synthetic days of the default city)."""
    import uuid

    from store.dimensions import load_dimensions
    from store.schema import apply_schema
    from store.synth import synth_store

    s = _open(request.param, request, "tseed" + uuid.uuid4().hex[:8])
    apply_schema(s)
    load_dimensions(s, default_city)
    synth_store(s, default_city, start=seed_start(), days=SEED_DAYS, step_s=SEED_STEP_S)
    yield s
    _drop(s)
