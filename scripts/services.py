#!/usr/bin/env python3
"""Local services for tests and benchmarks: Apache Kafka (KRaft) and a ClickHouse server.

    python scripts/services.py start [kafka|clickhouse]   # idempotent: running is fine
    python scripts/services.py stop  [kafka|clickhouse]   # leaves nothing running
    python scripts/services.py status
    python scripts/services.py env                        # CITYBRAIN_* settings for them

Everything listens on 127.0.0.1 only and keeps its data under ./var/services/. Kafka's jars are
resolved by Maven (scripts/kafka/pom.xml) once into ./var/cache/kafka-<version>/libs, so a second
start needs no download. ClickHouse is Debian's ``clickhouse-server`` package with its own config.
Standard library only: this runs before the project's virtualenv exists.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("CITYBRAIN_TEST_SERVICES_DIR", ROOT / "var" / "services"))
CACHE = ROOT / "var" / "cache"
HOST = "127.0.0.1"

KAFKA_PORT = int(os.environ.get("CITYBRAIN_TEST_KAFKA_PORT", "39092"))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
KAFKA_SASL_PORT = KAFKA_PORT + 2
SASL_USER, SASL_PASSWORD = "citybrain", "citybrain-test-secret"
CH_TCP_PORT = int(os.environ.get("CITYBRAIN_TEST_CLICKHOUSE_PORT", "39000"))
CH_HTTP_PORT = CH_TCP_PORT - 877  # 38123
CLICKHOUSE_BIN = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"


def say(msg: str) -> None:
    print(f"[services] {msg}", flush=True)


def kafka_version() -> str:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    m = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert m, "scripts/kafka/pom.xml lacks <kafka.version>"
    return m.group(1)


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # a zombie or a recycled pid is not ours: check the command line mentions our dir
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return pid if str(VAR) in cmdline else None


def wait_until(check, what: str, timeout_s: float, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    start = time.monotonic()
    last = start
    while not check():
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise SystemExit(f"[services] {what} exited with code {proc.returncode}\n{tail}")
        now = time.monotonic()
        if now - start > timeout_s:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise SystemExit(f"[services] {what} not ready after {timeout_s:.0f}s\n{tail}")
        if now - last >= 5:
            say(f"  still waiting for {what} ({now - start:.0f}s)")
            last = now
        time.sleep(0.25)


def spawn(argv: list[str], log: Path, pidfile: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=cwd)
    pidfile.write_text(str(proc.pid))
    return proc


def stop_pid(pidfile: Path, what: str, timeout_s: float = 30.0) -> None:
    pid = pid_alive(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        say(f"{what}: not running")
        return
    say(f"{what}: stopping (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        # reap if it is our child (it is not, across invocations, but harmless)
        time.sleep(0.2)
    else:
        say(f"{what}: did not stop in {timeout_s:.0f}s; killing")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


# --- Kafka -------------------------------------------------------------------------------------
def kafka_libs() -> Path:
    version = kafka_version()
    libs = CACHE / f"kafka-{version}" / "libs"
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise SystemExit("[services] Maven (mvn) is needed to fetch the Kafka jars; install it")
    say(f"kafka: resolving Apache Kafka {version} jars with Maven (once; cached in {libs})")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(ROOT / "scripts" / "kafka" / "pom.xml"),
         "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
        check=True,
    )
    tmp.rename(libs)
    return libs


def kafka_properties(data: Path) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT},SASL_PLAINTEXT://{HOST}:{KAFKA_SASL_PORT}
advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},SASL_PLAINTEXT://{HOST}:{KAFKA_SASL_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{SASL_USER}="{SASL_PASSWORD}";
log.dirs={data}
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
log.segment.bytes=268435456
"""


LOG4J2 = """\
Configuration:
  Appenders:
    File:
      name: F
      fileName: "{log}"
      PatternLayout: {{pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {{level: INFO, AppenderRef: [{{ref: F}}]}}
    Logger:
      - {{name: kafka.request.logger, level: WARN}}
      - {{name: org.apache.kafka.controller, level: WARN}}
"""


def kafka_start() -> None:
    d = VAR / "kafka"
    pidfile = d / "kafka.pid"
    if pid_alive(pidfile) and tcp_open(KAFKA_PORT):
        say(f"kafka: already running on {HOST}:{KAFKA_PORT}")
        return
    libs = kafka_libs()
    data = d / "data"
    d.mkdir(parents=True, exist_ok=True)
    props = d / "server.properties"
    props.write_text(kafka_properties(data))
    (d / "log4j2.yaml").write_text(LOG4J2.format(log=d / "server.log"))
    java = shutil.which("java")
    if not java:
        raise SystemExit("[services] Java 17+ is needed for Apache Kafka")
    cp = os.pathsep.join(str(p) for p in sorted(libs.glob("*.jar")))
    jvm = [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={d / 'log4j2.yaml'}",
           "-cp", cp]
    if not (data / "meta.properties").exists():
        say("kafka: formatting KRaft storage (with SCRAM user for the SASL listener)")
        subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(props),
             "--add-scram", f"SCRAM-SHA-256=[name={SASL_USER},password={SASL_PASSWORD}]",
             "--add-scram", f"SCRAM-SHA-512=[name={SASL_USER},password={SASL_PASSWORD}]"],
            check=True, stdout=subprocess.DEVNULL,
        )
    say(f"kafka: starting Apache Kafka {kafka_version()} on {HOST}:{KAFKA_PORT} "
        f"(SASL on {KAFKA_SASL_PORT})")
    proc = spawn([*jvm, "kafka.Kafka", str(props)], d / "stdout.log", pidfile)
    wait_until(lambda: tcp_open(KAFKA_PORT) and tcp_open(KAFKA_SASL_PORT), "kafka", 120, proc,
               d / "server.log")
    say("kafka: ready")


def kafka_stop() -> None:
    stop_pid(VAR / "kafka" / "kafka.pid", "kafka", timeout_s=60)


# --- ClickHouse ----------------------------------------------------------------------------------
def clickhouse_config(d: Path) -> str:
    return f"""<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{d}/log/server.log</log>
    <errorlog>{d}/log/error.log</errorlog>
    <size>100M</size>
    <count>2</count>
  </logger>
  <http_port>{CH_HTTP_PORT}</http_port>
  <tcp_port>{CH_TCP_PORT}</tcp_port>
  <listen_host>{HOST}</listen_host>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>1073741824</uncompressed_cache_size>
  <mark_cache_size>536870912</mark_cache_size>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
"""


CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"""


def ch_ping() -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{CH_HTTP_PORT}/ping", timeout=1) as r:
            return r.read().strip() == b"Ok."
    except OSError:
        return False


def clickhouse_start() -> None:
    d = VAR / "clickhouse"
    pidfile = d / "clickhouse.pid"
    if pid_alive(pidfile) and ch_ping():
        say(f"clickhouse: already running on {HOST}:{CH_TCP_PORT}")
        return
    if not Path(CLICKHOUSE_BIN).exists():
        raise SystemExit("[services] clickhouse-server is not installed (apt-get install clickhouse-server)")
    for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "config.xml").write_text(clickhouse_config(d))
    (d / "users.xml").write_text(CLICKHOUSE_USERS)
    say(f"clickhouse: starting ClickHouse server on {HOST}:{CH_TCP_PORT} (http {CH_HTTP_PORT})")
    proc = spawn([CLICKHOUSE_BIN, f"--config-file={d / 'config.xml'}"], d / "log" / "stdout.log",
                 pidfile, cwd=d)
    wait_until(ch_ping, "clickhouse", 60, proc, d / "log" / "error.log")
    say("clickhouse: ready")


def clickhouse_stop() -> None:
    stop_pid(VAR / "clickhouse" / "clickhouse.pid", "clickhouse")


SERVICES = {"kafka": (kafka_start, kafka_stop), "clickhouse": (clickhouse_start, clickhouse_stop)}


def env_lines() -> list[str]:
    return [
        f"CITYBRAIN_KAFKA_BOOTSTRAP={HOST}:{KAFKA_PORT}",
        "CITYBRAIN_STORE=clickhouse",
        f"CITYBRAIN_CLICKHOUSE_URL=clickhouse://{HOST}:{CH_TCP_PORT}/citybrain",
    ]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "stop", "status", "env", "restart"):
        print(__doc__)
        return 2
    cmd, names = argv[0], argv[1:] or list(SERVICES)
    for n in names:
        if n not in SERVICES:
            raise SystemExit(f"[services] unknown service {n!r} (known: {', '.join(SERVICES)})")
    if cmd == "env":
        print("\n".join(env_lines()))
        return 0
    if cmd == "status":
        up = {"kafka": tcp_open(KAFKA_PORT), "clickhouse": ch_ping()}
        for n in names:
            print(f"{n}: {'running' if up[n] else 'stopped'}")
        return 0 if all(up[n] for n in names) else 1
    if cmd in ("stop", "restart"):
        for n in reversed(names):
            SERVICES[n][1]()
    if cmd in ("start", "restart"):
        for n in names:
            SERVICES[n][0]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
