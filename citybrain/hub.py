"""The hub: one process that owns the store and serves the screen (and, optionally, runs the sink).

In the embedded mode chDB allows one process per data directory, so the sink, the dashboard and
the analysts' SQL endpoint (``POST /api/sql``) live here together. In server mode the same code
runs the dashboard alone (``citybrain dashboard``) or the sink alone (``citybrain sink``).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from config.settings import Settings
from store import open_store
from store.base import Store, StoreError

log = logging.getLogger("citybrain.hub")


def install_stop_handlers(stop: threading.Event, on_stop: Any = None) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        if on_stop is not None:
            threading.Thread(target=on_stop, daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def add_api(server: Any, store: Store) -> None:
    """JSON endpoints next to the screen: health and read-only SQL."""
    from flask import jsonify, request

    @server.get("/api/health")
    def health() -> Any:
        try:
            return jsonify({"ok": True, "store": store.backend, "version": store.version()})
        except StoreError as exc:
            return jsonify({"ok": False, "error": str(exc)}), 503

    @server.post("/api/sql")
    def sql() -> Any:
        body = request.get_json(force=True, silent=True) or {}
        text = body.get("sql")
        if not isinstance(text, str) or not text.strip():
            return jsonify({"error": "body must be {\"sql\": \"SELECT ...\"}"}), 400
        settings: dict[str, int | str] = {
            "readonly": 0 if body.get("write") else 1,
            "max_execution_time": int(body.get("max_execution_time", 60)),
            "max_result_rows": int(body.get("max_result_rows", 100000)),
            "result_overflow_mode": "break",
        }
        try:
            df = store.query(text, settings=settings)
        except StoreError as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify(
            {
                "columns": [str(c) for c in df.columns],
                "types": [str(t) for t in df.dtypes],
                "rows": df.astype(object).where(df.notna(), None).values.tolist(),
            }
        )


def _maintain_loop(store: Store, settings: Settings, stop: threading.Event,
                   every_s: float = 3600.0) -> None:
    import datetime as dt

    from citybrain.commands.maintain import maintain_once

    while not stop.wait(every_s):
        try:
            log.info("maintenance: %s", maintain_once(
                store, settings, days=3, now=dt.datetime.now(tz=dt.UTC)))
        except Exception:  # upkeep must never take the screen or the sink down
            log.exception("maintenance failed; retrying in %.0fs", every_s)


def run_hub(settings: Settings, *, sink: bool = True, dashboard: bool = True) -> int:
    from werkzeug.serving import make_server

    stop = threading.Event()
    failed = threading.Event()
    store = open_store(settings)
    log.info("store: %r (ClickHouse %s)", store, store.version())
    threads: list[threading.Thread] = []
    server: Any = None
    if dashboard:
        from dashboards.app import create_app

        app = create_app(store, settings)
        add_api(app.server, store)
        server = make_server(
            settings.dashboard_host, settings.dashboard_port, app.server, threaded=True
        )
    if sink:
        from streams.sink import Sink
        from streams.topics import ensure_topics

        ensure_topics(settings)
        the_sink = Sink(settings, store)
        the_sink.metrics.serve(settings.metrics_port, settings.metrics_host)

        def sink_main() -> None:
            try:
                the_sink.run(stop)
            except Exception:
                log.exception("the sink failed; stopping the process")
                failed.set()
                stop.set()
                if server is not None:
                    threading.Thread(target=server.shutdown, daemon=True).start()

        t = threading.Thread(target=sink_main, name="sink", daemon=True)
        t.start()
        threads.append(t)
    if sink and dashboard:
        # the embedded hub is the only process that may touch chDB: it does the upkeep itself
        # (retention + rollup repair, hourly); in server mode `citybrain maintain` does it
        t = threading.Thread(target=_maintain_loop, args=(store, settings, stop),
                             name="maintain", daemon=True)
        t.start()
        threads.append(t)
    if server is not None:
        print(
            f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port}/", flush=True
        )
    install_stop_handlers(stop, server.shutdown if server else None)
    try:
        if server is not None:
            server.serve_forever()
        else:
            stop.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        store.close()
    return 1 if failed.is_set() else 0
