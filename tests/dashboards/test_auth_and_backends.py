"""Users and roles (no browser needed), and the screen's queries on both backends."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError


def _users_file(tmp_path: Path) -> Path:
    from dashboards.auth import hash_password

    p = tmp_path / "users.yaml"
    p.write_text(
        "users:\n"
        f"  - {{name: alice, role: operator, password_hash: '{hash_password('a-secret')}'}}\n"
        f"  - {{name: bob, role: viewer, password_hash: '{hash_password('b-secret')}'}}\n"
    )
    return p


def test_users_file_is_validated(tmp_path: Path) -> None:
    from dashboards.auth import load_users

    users = load_users(_users_file(tmp_path))
    assert {u.name: u.role for u in users.values()} == {"alice": "operator", "bob": "viewer"}
    assert "a-secret" not in (tmp_path / "users.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("users:\n  - {name: eve, role: admin, password_hash: 'x$y'}\n")
    with pytest.raises(ConfigError, match=r"users\[0\]\.role='admin'"):
        load_users(bad)
    bad.write_text("users:\n  - {name: eve, role: viewer, password_hash: plaintext}\n")
    with pytest.raises(ConfigError, match="not a password hash"):
        load_users(bad)


def test_login_roles_and_api_access(tmp_path: Path, server_store: Any) -> None:
    import base64

    from citybrain.hub import add_api
    from config.settings import load_settings
    from dashboards import auth
    from dashboards.app import create_app

    settings = load_settings(dashboard_users_file=str(_users_file(tmp_path)))
    app = create_app(server_store, settings)
    add_api(app.server, server_store)
    c = app.server.test_client()
    assert c.get("/").status_code == 302 and "/login" in c.get("/").headers["Location"]
    assert c.get("/api/health").status_code == 200
    assert c.post("/api/sql", json={"sql": "SELECT 1 AS x"}).status_code == 401
    basic = base64.b64encode(b"bob:b-secret").decode()
    ok = c.post("/api/sql", json={"sql": "SELECT 1 AS x"},
                headers={"Authorization": f"Basic {basic}"})
    assert ok.status_code == 200 and ok.get_json()["rows"] == [[1]]
    assert c.post("/login", data={"user": "bob", "password": "wrong"}).status_code == 401
    assert c.post("/login", data={"user": "bob", "password": "b-secret"}).status_code == 302
    assert c.get("/").status_code == 200
    with c.application.test_request_context("/"):
        from flask import session

        session["user"], session["role"] = "bob", "viewer"
        assert auth.current_user() == ("bob", "viewer") and not auth.may_act()
        session["user"], session["role"] = "alice", "operator"
        assert auth.may_act()
    c.get("/logout")
    assert c.get("/").status_code == 302


def test_snapshot_is_the_same_on_clickhouse_server_and_chdb(chdb_root: Path, unique: str,
                                                             server_store: Any) -> None:
    """The screen's SQL runs on ClickHouse 18.16 and on chDB 26.x, with equal results."""
    from config.city import load_city
    from dashboards.data import Geometry, snapshot
    from dashboards.seed import seed_store
    from store.embedded import EmbeddedStore
    from store.schema import apply_schema
    from tests.dashboards.conftest import SEED_START

    city = load_city()
    geo = Geometry.from_city(city)
    emb = EmbeddedStore(path=chdb_root, database=unique)
    try:
        apply_schema(emb)
        snaps = []
        for store in (server_store, emb):
            seed_store(store, city, scenario="bad_day", start=SEED_START + 1800, duration_s=1200)
            snaps.append(snapshot(store, geo, now=SEED_START + 3000))
        a, b = snaps
        assert a.t == b.t > 0
        for name in ("ci", "aqi", "water_inflow", "grid_load", "availability"):
            va, vb = getattr(a, name), getattr(b, name)
            assert math.isclose(va, vb, rel_tol=1e-9), (name, va, vb)
        assert a.active_by_severity == b.active_by_severity
        assert sorted(a.alerts["alert_id"]) == sorted(b.alerts["alert_id"])
        assert (a.status == b.status).all()
        assert len(a.ci_trend) == len(b.ci_trend) > 0
    finally:
        emb.command(f"DROP DATABASE IF EXISTS {unique}")
        emb.close()
