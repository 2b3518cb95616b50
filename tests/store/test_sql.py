"""``citybrain sql`` against the server, through the hub (embedded mode) and on chDB directly;
and a query with the real ``clickhouse-client``."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.base import Store
from tests.conftest import ROOT, free_port

QUERY = "SELECT district, name FROM dim_districts FINAL ORDER BY district"


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "citybrain", "sql", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, input=stdin)


@pytest.fixture()
def server_env(server_store: Store, clickhouse_hostport: str, default_city) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from store.dimensions import load_dimensions

    load_dimensions(server_store, default_city)
    return {"CITYBRAIN_STORE": "clickhouse",
            "CITYBRAIN_CLICKHOUSE_URL": f"clickhouse://{clickhouse_hostport}/{server_store.database}"}


def test_server_formats_and_errors(server_env: dict[str, str], tmp_path: Path) -> None:
    out = _cli(server_env, QUERY)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["district", "name"] and lines[2].startswith("D01  ")
    assert len(lines) == 2 + 12
    rows = list(csv.DictReader(io.StringIO(_cli(server_env, QUERY, "--format", "csv").stdout)))
    assert rows[0]["district"] == "D01" and len(rows) == 12
    js = json.loads(_cli(server_env, QUERY, "--format", "json").stdout)
    assert js[11]["district"] == "D12"
    f = tmp_path / "q.sql"
    f.write_text(QUERY + ";\n")
    assert _cli(server_env, "--file", str(f)).stdout == out.stdout
    # read-only by default, errors shown plainly with exit code 1
    bad = _cli(server_env, "DROP TABLE dim_districts")
    assert bad.returncode == 1 and "readonly" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli(server_env, "SELECT no_such_column FROM dim_districts")
    assert bad.returncode == 1 and "no_such_column" in bad.stderr
    cut = _cli(server_env, "SELECT number FROM system.numbers LIMIT 1000", "--max-rows", "10",
               "--format", "csv")
    assert cut.returncode == 0 and len(cut.stdout.splitlines()) == 11
    assert "cut at 10 rows" in cut.stderr


def test_real_clickhouse_client(server_store: Store, clickhouse_hostport: str, default_city) -> None:  # type: ignore[no-untyped-def]
    from store.dimensions import load_dimensions

    exe = shutil.which("clickhouse-client")
    assert exe, "clickhouse-client is not installed"
    load_dimensions(server_store, default_city)
    host, _, port = clickhouse_hostport.rpartition(":")
    out = subprocess.run(
        [exe, "--host", host, "--port", port, "--database", server_store.database,
         "--readonly", "1", "--format", "TSV", "--query",
         "SELECT count() FROM dim_sensors FINAL WHERE kind = 'water_flow'"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "75"


@pytest.fixture()
def hub(chdb_root: Path, unique: str, default_city) -> Iterator[tuple[str, Store]]:  # type: ignore[no-untyped-def]
    """The hub's SQL endpoint (citybrain.hub.add_api) over a chDB store, on a free port."""
    from flask import Flask
    from werkzeug.serving import make_server

    from citybrain.hub import add_api
    from store.dimensions import load_dimensions
    from store.embedded import EmbeddedStore
    from store.schema import apply_schema

    s = EmbeddedStore(path=chdb_root, database=unique)
    apply_schema(s)
    load_dimensions(s, default_city)
    app = Flask("hub-test")
    add_api(app, s)
    port = free_port()
    srv = make_server("127.0.0.1", port, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}", s
    srv.shutdown()
    s.command(f"DROP DATABASE {unique}")
    s.close()


def test_embedded_through_the_hub(hub: tuple[str, Store], tmp_path: Path) -> None:
    url, _ = hub
    env = {"CITYBRAIN_STORE": "chdb", "CITYBRAIN_HUB_URL": url,
           "CITYBRAIN_CHDB_PATH": str(tmp_path / "chdb")}
    out = _cli(env, QUERY, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert [r["district"] for r in json.loads(out.stdout)][:2] == ["D01", "D02"]
    bad = _cli(env, "DROP TABLE dim_districts")
    assert bad.returncode == 1 and "readonly" in bad.stderr.lower()
    bad = _cli(env, "SELEC 1")
    assert bad.returncode == 1 and "Syntax error" in bad.stderr


def test_embedded_without_a_hub_opens_chdb(tmp_path: Path) -> None:
    # prepared in another process: this one's chDB is bound to the shared test directory
    prep = subprocess.run(
        [sys.executable, "-c", "from config.settings import load_settings; "
         "from store import open_store; open_store(load_settings()).close()"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_")},
             "CITYBRAIN_CHDB_PATH": str(tmp_path / "chdb")},
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert prep.returncode == 0, prep.stderr
    env = {"CITYBRAIN_STORE": "chdb", "CITYBRAIN_HUB_URL": f"http://127.0.0.1:{free_port()}",
           "CITYBRAIN_CHDB_PATH": str(tmp_path / "chdb")}
    out = _cli(env, "--file", "-", "--format", "csv", stdin=QUERY)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].startswith("D01,")
