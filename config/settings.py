"""The one place that reads the environment.

Every process of citybrain (simulator, Faust workers, sink, dashboard, the ``up`` supervisor)
builds its configuration with :func:`load_settings`. Values come, in increasing priority, from
the defaults below, an optional YAML file (``CITYBRAIN_CONFIG=path/to/file.yaml``, keys named
like the fields) and ``CITYBRAIN_<FIELD>`` environment variables. The result is frozen.

A bad value fails at start with a :class:`ConfigError` naming the key, the value and where it
came from::

    >>> import os
    >>> os.environ["CITYBRAIN_KAFKA_PARTITIONS"] = "many"
    >>> load_settings()  # doctest: +SKIP
    ConfigError: CITYBRAIN_KAFKA_PARTITIONS='many': Input should be a valid integer
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CITY = PACKAGE_DIR / "city.yaml"
ENV_PREFIX = "CITYBRAIN_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """All configuration of a citybrain process. Field ``x`` is read from ``CITYBRAIN_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", case_sensitive=False
    )

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password (wins over kafka_sasl_password)"
    )
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_partitions: int = Field(4, ge=1, le=1024, description="partitions of created topics")
    kafka_replication: int = Field(1, ge=1, le=16)
    kafka_partition_by: Literal["kind", "gateway"] = Field(
        "kind",
        description="how producers spread frames over the readings partitions: 'kind' (every "
        "gateway of a kind in one partition: scores independent of the number of workers) or "
        "'gateway' (Kafka's default, by key: even load); see config/partitioning.py",
    )
    topic_prefix: str = Field("city", pattern=r"^[A-Za-z0-9._-]{1,100}$")

    # --- Store -------------------------------------------------------------------------------
    store: Literal["chdb", "clickhouse"] = "chdb"
    clickhouse_url: str = Field(
        "clickhouse://127.0.0.1:9000/citybrain",
        description="clickhouse://host:port/database (native protocol)",
    )
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    clickhouse_password_file: Path | None = None
    chdb_path: Path = Path("var/chdb")
    hub_url: str = Field(
        "http://127.0.0.1:8050", description="the hub (dashboard + SQL) in embedded mode"
    )

    # --- City and simulation ------------------------------------------------------------------
    city_file: Path = DEFAULT_CITY
    sim_scenario: str = "normal_day"
    sim_seed: int = 1
    sim_speed: float = Field(60.0, ge=0.0, description="x real time; 0 = as fast as possible")
    sim_start: str = Field("2026-01-05T00:00:00Z", description="simulated start (ISO 8601)")

    # --- Processing ----------------------------------------------------------------------------
    window_s: int = Field(300, ge=10, le=86400, description="rolling indicator window, seconds")
    allowed_lateness_s: int = Field(120, ge=0, le=86400)
    worker_batch: int = Field(200, ge=1, le=100000, description="frames per stream.take()")
    worker_batch_timeout_s: float = Field(0.5, gt=0, le=60)
    group_id: str = "citybrain-worker"
    worker_data_dir: Path = Path("var/faust")
    sink_batch_rows: int = Field(20000, ge=1, le=10_000_000)
    sink_flush_s: float = Field(1.0, gt=0, le=600)
    sink_group_id: str = "citybrain-sink"
    sink_rejoin_after_s: float = Field(
        30.0, ge=0, le=3600,
        description="rejoin the group after this long without partitions; 0 = never",
    )
    max_frame_bytes: int = Field(4_000_000, ge=1024)
    worker_models: bool = Field(True, description="run the model stack in the worker")
    worker_multivariate: bool | None = Field(
        None, description="IsolationForest on/off (None: as config/models.yaml says)"
    )
    worker_seed: int = 0
    tick_s: float = Field(
        60.0, gt=0, le=86400, description="event-time seconds between risk/alert/health ticks"
    )
    anomaly_score: float = Field(
        0.95, ge=0, le=1, description="combined score from which a reading is reported"
    )
    city_wait_s: float = Field(
        30.0, gt=0, le=3600,
        description="the city tick waits this long (wall clock) for a readings partition that "
        "stays behind (its worker died or it carries no data), then ticks without it",
    )
    worker_session_timeout_s: float = Field(
        30.0, ge=6, le=600, description="a dead worker's partitions move after this long"
    )
    state_snapshot_s: float = Field(
        5.0, gt=0, le=3600, description="worker checkpoint interval (state table + acks)"
    )
    worker_restore_delay_s: float = Field(
        0.0, ge=0, le=600,
        description="fault injection for tests: wait this long before each read of the state "
        "changelog, as a slow broker would (0 in production)",
    )
    sink_max_buffer_rows: int = Field(
        200_000, ge=1000, le=100_000_000,
        description="the sink stops fetching while it holds this many rows",
    )

    # --- Dashboard -----------------------------------------------------------------------------
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8050, ge=1, le=65535)
    dashboard_refresh_s: float = Field(2.0, gt=0, le=3600)
    dashboard_users_file: Path | None = Field(
        None, description="YAML of dashboard users (name, role, password_hash); unset = demo, "
        "no login, with a banner saying so"
    )
    dashboard_secret_key: SecretStr | None = Field(
        None, description="signs login sessions; unset = random per process"
    )
    dashboard_stale_s: float = Field(
        120.0, gt=0, le=86400, description="no new data for this long -> stale-data warning"
    )
    dashboard_lang: Literal["en", "zh"] = "en"

    # --- Runtime -------------------------------------------------------------------------------
    data_dir: Path = Path("var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port; 0 = off")
    metrics_host: str = Field("127.0.0.1", description="Prometheus endpoint address")

    # --- Warehouse retention (days of event time; 0 = keep forever) -----------------------------
    # Off by default: simulated data carries past event times, which a retention window
    # measured from today would delete at once. See docs/analysts.md for production values.
    retention_raw_days: int = Field(
        0, ge=0, le=36500, description="raw readings, indicators, anomalies, district risk"
    )
    retention_rollup_1m_days: int = Field(0, ge=0, le=36500, description="1-minute rollups")
    retention_rollup_1h_days: int = Field(0, ge=0, le=36500, description="1-hour rollups")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for part in value.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _check_ch_url(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme != "clickhouse" or not url.hostname:
            raise ValueError(f"expected clickhouse://host:port/database, got {value!r}")
        return value

    # --- derived -------------------------------------------------------------------------------
    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("readings.traffic") -> "city.readings.traffic"``."""
        return f"{self.topic_prefix}.{name}"

    @cached_property
    def clickhouse(self) -> dict[str, Any]:
        url = urlparse(self.clickhouse_url)
        password = self.clickhouse_password.get_secret_value()
        if self.clickhouse_password_file:
            password = _read_secret(self.clickhouse_password_file, "clickhouse_password_file")
        return {
            "host": url.hostname,
            "port": url.port or 9000,
            "database": unquote(url.path.lstrip("/")) or "citybrain",
            "user": url.username or self.clickhouse_user,
            "password": password,
        }

    def kafka_common(self) -> dict[str, Any]:
        """Security options in kafka-python / aiokafka spelling (they share the names)."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            opts["sasl_mechanism"] = self.kafka_sasl_mechanism or "PLAIN"
            opts["sasl_plain_username"] = self.kafka_sasl_username
            opts["sasl_plain_password"] = self.sasl_password()
        return opts

    def sasl_password(self) -> str | None:
        if self.kafka_sasl_password_file:
            return _read_secret(self.kafka_sasl_password_file, "kafka_sasl_password_file")
        return self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None

    def ssl_context(self) -> Any:
        """An ``ssl.SSLContext`` for the SSL protocols, else ``None``."""
        if not self.kafka_security_protocol.endswith("SSL"):
            return None
        import ssl

        ctx = ssl.create_default_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        )
        if self.kafka_ssl_certfile:
            ctx.load_cert_chain(
                str(self.kafka_ssl_certfile),
                str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
            )
        return ctx

    def env(self) -> dict[str, str]:
        """This configuration as ``CITYBRAIN_*`` variables, for child processes."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            out[ENV_PREFIX + name.upper()] = str(value)
        return out


def _read_secret(path: Path, key: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}={str(path)!r}: cannot read the file ({exc.strerror})") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from defaults, ``$CITYBRAIN_CONFIG`` (YAML) and the environment.

    Keyword ``overrides`` win over everything (used by tests and the CLI's flags).
    """
    unknown = sorted(
        k for k in os.environ
        if k.startswith(ENV_PREFIX)
        and k != ENV_PREFIX + "CONFIG"
        and not k.startswith(ENV_PREFIX + "TEST_")  # the test harness's own switches
        and k[len(ENV_PREFIX):].lower() not in Settings.model_fields
    )
    if unknown:
        raise ConfigError(f"unknown setting(s) in the environment: {', '.join(unknown)}")
    file_values: dict[str, Any] = {}
    source = "defaults"
    cfg = os.environ.get(ENV_PREFIX + "CONFIG")
    if cfg:
        source = cfg
        try:
            loaded = yaml.safe_load(Path(cfg).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"CITYBRAIN_CONFIG={cfg!r}: cannot read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cfg}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{cfg}: expected a mapping of setting names, got {type(loaded).__name__}")
        known = set(Settings.model_fields)
        for key in loaded:
            if key not in known:
                raise ConfigError(f"{cfg}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        # the environment wins over the file: drop file keys that the environment sets
        file_values = {
            k: v for k, v in loaded.items() if (ENV_PREFIX + k.upper()) not in os.environ
        }
    try:
        return Settings(**{**file_values, **overrides})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, file_values, source)) from None


def _explain(exc: ValidationError, file_values: dict[str, Any], source: str) -> str:
    lines = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        env_name = ENV_PREFIX + key.upper()
        if env_name in os.environ:
            where, value = env_name, os.environ[env_name]
        elif key in file_values:
            where, value = f"{source}: {key}", file_values[key]
        else:
            where, value = key, err.get("input")
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown setting")
        else:
            lines.append(f"{where}={value!r}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)
