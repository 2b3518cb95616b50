"""Settings: environment, YAML file, frozen, and errors that name the key and the value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.errors import ConfigError
from config.settings import load_settings


def test_defaults_and_env(monkeypatch):
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092" and s.store == "chdb"
    monkeypatch.setenv("CITYBRAIN_KAFKA_PARTITIONS", "8")
    monkeypatch.setenv("CITYBRAIN_TOPIC_PREFIX", "test")
    s = load_settings()
    assert s.kafka_partitions == 8
    assert s.topic("readings.traffic") == "test.readings.traffic"


def test_frozen():
    s = load_settings()
    with pytest.raises(ValidationError):
        s.kafka_partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("CITYBRAIN_KAFKA_PARTITIONS", "many", "CITYBRAIN_KAFKA_PARTITIONS='many'"),
        ("CITYBRAIN_KAFKA_BOOTSTRAP", "nohostport", "CITYBRAIN_KAFKA_BOOTSTRAP='nohostport'"),
        ("CITYBRAIN_STORE", "postgres", "CITYBRAIN_STORE='postgres'"),
        ("CITYBRAIN_CLICKHOUSE_URL", "http://x", "CITYBRAIN_CLICKHOUSE_URL='http://x'"),
        ("CITYBRAIN_KAFKA_SECURITY_PROTOCOL", "TLS", "CITYBRAIN_KAFKA_SECURITY_PROTOCOL='TLS'"),
    ],
)
def test_bad_env_value_names_key_and_value(monkeypatch, key, value, fragment):
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert fragment in str(err.value)


def test_unknown_env_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("CITYBRAIN_KAFKA_BOOTSRAP", "x:1")  # typo
    with pytest.raises(ConfigError, match="CITYBRAIN_KAFKA_BOOTSRAP"):
        load_settings()


def test_yaml_file_and_env_precedence(monkeypatch, tmp_path):
    cfg = tmp_path / "citybrain.yaml"
    cfg.write_text("kafka_partitions: 6\ntopic_prefix: fromfile\n")
    monkeypatch.setenv("CITYBRAIN_CONFIG", str(cfg))
    monkeypatch.setenv("CITYBRAIN_TOPIC_PREFIX", "fromenv")
    s = load_settings()
    assert s.kafka_partitions == 6 and s.topic_prefix == "fromenv"


def test_yaml_errors_name_file_and_key(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka_partitions: -1\n")
    monkeypatch.setenv("CITYBRAIN_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=r"c\.yaml: kafka_partitions=-1"):
        load_settings()
    cfg.write_text("no_such_key: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'no_such_key'"):
        load_settings()
    monkeypatch.setenv("CITYBRAIN_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_settings()


def test_secrets_never_in_repr(monkeypatch, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t-from-file\n")
    monkeypatch.setenv("CITYBRAIN_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CITYBRAIN_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("CITYBRAIN_KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("CITYBRAIN_KAFKA_SASL_PASSWORD", "s3cr3t-env")
    monkeypatch.setenv("CITYBRAIN_CLICKHOUSE_PASSWORD_FILE", str(secret))
    s = load_settings()
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s)
    assert s.kafka_common()["sasl_plain_password"] == "s3cr3t-env"
    assert s.clickhouse["password"] == "s3cr3t-from-file"
