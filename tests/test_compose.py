"""docker-compose.yml: every citybrain command is real, every setting exists and validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from citybrain.cli import build_parser
from config.settings import Settings, load_settings

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
_INTERP = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def _resolve(value: object) -> str:
    """Compose's ${VAR:-default} interpolation with the defaults (as on a fresh machine)."""
    return _INTERP.sub(lambda m: m.group(2) or "", str(value))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _citybrain_services(compose: dict) -> dict:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("citybrain")}


def test_roles_present(compose):
    assert {"kafka", "clickhouse", "sim", "worker", "sink", "dashboard"} <= set(compose["services"])


def test_images_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:4."), \
        "same Kafka major version as the tests (4.x)"


def test_commands_are_real_subcommands(compose):
    parser = build_parser()
    for name, svc in _citybrain_services(compose).items():
        args = parser.parse_args(svc["command"])  # exits (SystemExit) on an unknown command
        assert callable(args.func), name


def test_environment_is_real_settings(compose):
    fields = set(Settings.model_fields)
    for name, svc in _citybrain_services(compose).items():
        env = {k: _resolve(v) for k, v in svc["environment"].items()}
        for key in env:
            assert key.startswith("CITYBRAIN_"), f"{name}: {key} is not a citybrain setting"
            assert key[len("CITYBRAIN_"):].lower() in fields, f"{name}: unknown setting {key}"
        values = {k[len("CITYBRAIN_"):].lower(): v for k, v in env.items()}
        load_settings(**values)  # validates every value


def test_scalable_worker_and_health(compose):
    services = compose["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "worker must scale"
    for dep in ("kafka", "clickhouse"):
        assert worker["depends_on"][dep]["condition"] == "service_healthy"
    for name in ("kafka", "clickhouse", "dashboard"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: publishes {port} beyond loopback"
