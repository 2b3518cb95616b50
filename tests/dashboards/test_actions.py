"""An operator's acknowledge/resolve reaches the workers: ``record_action`` writes the
``alert_events`` row (ClickHouse server) and produces the action to the ``actions`` topic (Apache
Kafka), in the wire format the workers' feed decodes. A broker that does not answer is reported
(``ActionPublishError``) after the row was written. No browser, no mocks."""

from __future__ import annotations

import numpy as np
import pytest
from kafka import KafkaConsumer

from config.settings import load_settings
from dashboards.actions import ActionPublisher, ActionPublishError, failure_text
from dashboards.app import record_action
from store import queries
from streams.actions import decode_action
from streams.topics import ensure_topics
from tests.conftest import free_port

T0 = 1767571200  # 2026-01-05 00:00 UTC


def _open_alert(store, alert_id: str) -> None:  # type: ignore[no-untyped-def]
    sensors = np.empty(1, dtype=object)
    sensors[0] = ["TR-S0001", "TR-S0002"]
    queries.insert_rows(store, "alert_events", {
        "ts": np.array([T0], dtype="datetime64[s]"),
        "alert_id": np.array([alert_id], dtype=object),
        "district": np.array(["D01"], dtype=object),
        "type": np.array(["traffic"], dtype=object),
        "event": np.array(["opened"], dtype=object),
        "state": np.array(["open"], dtype=object),
        "severity": np.array([2], dtype=np.uint8),
        "peak": np.array([0.97], dtype=np.float64),
        "sensors": sensors,
        "actor": np.array(["worker"], dtype=object),
    })


def _events(store, alert_id: str) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    df = queries.alert_events_of(store, alert_id)
    return [(str(r.event), str(r.state), str(r.actor)) for r in df.itertuples()]


@pytest.mark.services
def test_record_action_writes_the_row_and_produces_the_action(
    server_store, kafka_bootstrap: str, unique: str  # type: ignore[no-untyped-def]
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique)
    ensure_topics(settings)  # as every worker does at start
    aid = f"D01:traffic:{T0}"
    _open_alert(server_store, aid)
    publisher = ActionPublisher(settings)
    try:
        ts_ack = record_action(server_store, aid, "acknowledged", "alice", publisher)
        ts_res = record_action(server_store, aid, "resolved", "bob", publisher)
    finally:
        publisher.close()
    assert ts_ack > T0 and ts_res > ts_ack

    consumer = KafkaConsumer(settings.topic("actions"), bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    got = []
    for m in consumer:
        got.append((m.key, decode_action(m.value)))
        if len(got) == 2:
            break
    consumer.close()
    assert [k for k, _ in got] == [aid.encode()] * 2  # one partition: in order
    assert [(a.alert_id, a.action, a.by, a.ts) for _, a in got] == [
        (aid, "acknowledged", "alice", float(ts_ack)), (aid, "resolved", "bob", float(ts_res))]
    # the rows: one per action, by the operators (the worker adds none: docs/streams.md)
    assert _events(server_store, aid) == [("opened", "open", "worker"),
                                          ("acknowledged", "acknowledged", "alice"),
                                          ("resolved", "resolved", "bob")]


@pytest.mark.services
def test_unreachable_broker_is_reported_and_the_row_is_still_written(
    server_store, unique: str  # type: ignore[no-untyped-def]
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = load_settings(kafka_bootstrap=dead, topic_prefix=unique)
    aid = f"D01:traffic:{T0}"
    _open_alert(server_store, aid)
    publisher = ActionPublisher(settings, timeout_s=2.0)
    with pytest.raises(ActionPublishError) as err:
        record_action(server_store, aid, "acknowledged", "alice", publisher)
    publisher.close()
    assert _events(server_store, aid)[-1] == ("acknowledged", "acknowledged", "alice")
    text = failure_text(err.value, "en")
    assert "NOT sent" in text and str(err.value) in text
    assert "未能发送" in failure_text(err.value, "zh")


class _Forwarder:
    """A TCP forwarder on ``port`` to the real broker, started late: until then nothing
    listens there (a broker that is away), afterwards a client bootstraps through it and then
    talks to the broker's advertised address."""

    def __init__(self, port: int, target: str) -> None:
        import socket
        import threading

        host, _, tport = target.rpartition(":")
        self.target = (host, int(tport))
        self.srv = socket.create_server(("127.0.0.1", port))
        self.srv.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _pipe(self, a, b) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                s.close()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            c.settimeout(None)
            u = socket.create_connection(self.target)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.srv.close()


@pytest.mark.services
def test_unsent_actions_are_retried_in_order_when_the_broker_is_back(
    server_store, kafka_bootstrap: str, unique: str  # type: ignore[no-untyped-def]
) -> None:
    import time

    port = free_port()
    settings = load_settings(kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix=unique)
    ensure_topics(load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique))
    aid = f"D01:traffic:{T0}"
    _open_alert(server_store, aid)
    publisher = ActionPublisher(settings, timeout_s=2.0, retry_s=0.5)
    fwd = None
    try:
        with pytest.raises(ActionPublishError):
            record_action(server_store, aid, "acknowledged", "alice", publisher)
        with pytest.raises(ActionPublishError):  # queued behind the first, not overtaking it
            record_action(server_store, aid, "resolved", "bob", publisher)
        assert publisher.pending() == 2
        fwd = _Forwarder(port, kafka_bootstrap)  # the broker is back
        deadline = time.monotonic() + 60
        while publisher.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert publisher.pending() == 0
    finally:
        publisher.close()
        if fwd is not None:
            fwd.close()
    consumer = KafkaConsumer(settings.topic("actions"), bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    got = [decode_action(m.value) for m in consumer]
    consumer.close()
    assert [(a.alert_id, a.action, a.by) for a in got] == [
        (aid, "acknowledged", "alice"), (aid, "resolved", "bob")]
