"""Who may look and who may act: operators (acknowledge, resolve) and viewers (read-only).

Users live in a YAML file (``CITYBRAIN_DASHBOARD_USERS_FILE``) with hashed passwords::

    users:
      - {name: alice, role: operator, password_hash: "scrypt:32768:8:1$..."}
      - {name: bob, role: viewer, password_hash: "..."}

Make a hash with ``python -m dashboards.auth hash`` (asks for the password) or
:func:`hash_password`. Without a users file the screen runs as a demo: no login, everyone acts
as the operator ``demo``, and a banner on every page says so.

Sessions are Flask's signed cookies (``CITYBRAIN_DASHBOARD_SECRET_KEY``; random per process if
unset). API clients (``/api/sql``) may send HTTP Basic credentials instead.
"""

from __future__ import annotations

import html
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from werkzeug.security import check_password_hash, generate_password_hash

from config.errors import ConfigError

ROLES = ("operator", "viewer")
DEMO_USER = ("demo", "operator")
OPEN_PATHS = ("/login", "/logout", "/api/health")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def load_users(path: Path) -> dict[str, User]:
    """Read and validate the users file; errors name the file and the entry."""
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"dashboard_users_file={str(path)!r}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    entries = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected 'users:' with a list of {{name, role, password_hash}}")
    users: dict[str, User] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ConfigError(f"{path}: users[{i}]: expected a mapping, got {e!r}")
        name, role, ph = e.get("name"), e.get("role"), e.get("password_hash")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: users[{i}].name={name!r}: must be a non-empty string")
        if role not in ROLES:
            raise ConfigError(f"{path}: users[{i}].role={role!r}: must be one of {ROLES}")
        if not isinstance(ph, str) or "$" not in ph:
            raise ConfigError(f"{path}: users[{i}].password_hash: not a password hash "
                              "(make one with: python -m dashboards.auth hash)")
        if name in users:
            raise ConfigError(f"{path}: users[{i}].name={name!r}: listed twice")
        users[name] = User(name, str(role), ph)
    return users


def current_user() -> tuple[str, str]:
    """(name, role) of the request's user; the demo operator when no users are configured."""
    from flask import current_app, session

    if not current_app.config.get("CITYBRAIN_USERS"):
        return DEMO_USER
    return str(session.get("user", "")), str(session.get("role", "viewer"))


def may_act() -> bool:
    return current_user()[1] == "operator"


_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>citybrain · sign in</title>
<style>body{{background:#0b1220;color:#e2e8f0;font-family:system-ui,sans-serif;display:flex;
height:100vh;align-items:center;justify-content:center}}form{{background:#111a2e;padding:32px;
border-radius:10px;width:320px}}input{{width:100%;margin:6px 0 14px;padding:8px;border-radius:6px;
border:1px solid #334155;background:#0b1220;color:#e2e8f0}}button{{width:100%;padding:10px;
background:#2563eb;color:white;border:0;border-radius:6px}}.err{{color:#f87171}}</style></head>
<body><form method="post" action="/login"><h2>citybrain</h2><div class="err" id="err">{error}</div>
<label>User / 用户名<input name="user" id="user" autofocus></label>
<label>Password / 密码<input name="password" id="password" type="password"></label>
<button type="submit" id="login-btn">Sign in / 登录</button></form></body></html>"""


def install(server: Any, users: dict[str, User] | None, secret_key: str | None) -> None:
    """Add login, logout and the access check to the Flask ``server``."""
    from flask import Response, redirect, request, session

    server.secret_key = secret_key or secrets.token_hex(32)
    server.config["CITYBRAIN_USERS"] = users or {}
    server.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    server.config["SESSION_COOKIE_HTTPONLY"] = True
    if not users:
        return

    def check(name: str, password: str) -> User | None:
        u = users.get(name)
        if u is not None and check_password_hash(u.password_hash, password):
            return u
        return None

    @server.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "POST":
            u = check(request.form.get("user", ""), request.form.get("password", ""))
            if u is not None:
                session.clear()
                session["user"], session["role"] = u.name, u.role
                return redirect("/")
            return Response(_LOGIN_PAGE.format(error=html.escape(
                "Wrong user or password / 用户名或密码错误")), status=401)
        return _LOGIN_PAGE.format(error="")

    @server.route("/logout")
    def logout() -> Any:
        session.clear()
        return redirect("/login")

    @server.before_request
    def guard() -> Any:
        if request.path in OPEN_PATHS or session.get("user"):
            return None
        basic = request.authorization
        if basic is not None and basic.username and check(basic.username, basic.password or ""):
            return None
        if request.path.startswith(("/_dash", "/api/")):
            return Response("login required", status=401)
        return redirect("/login")


def main(argv: list[str] | None = None) -> int:
    """``python -m dashboards.auth hash``: print a password hash for the users file."""
    import getpass

    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["hash"]:
        print("usage: python -m dashboards.auth hash", file=sys.stderr)
        return 2
    pw = getpass.getpass("password: ")
    if pw != getpass.getpass("again: "):
        print("the passwords differ", file=sys.stderr)
        return 1
    print(hash_password(pw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
