"""``citybrain hub`` / ``sink`` / ``dashboard``: the processes that own the store."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    for name, help_, desc in (
        ("hub", "sink + dashboard + SQL endpoint in one process (embedded mode)",
         "Own the store and run the Kafka→ClickHouse sink, the dashboard and the read-only SQL "
         "endpoint in one process. chDB allows one process per data directory, so this is how "
         "the embedded mode runs; it works with a ClickHouse server too."),
        ("sink", "Kafka → ClickHouse sink (server mode)",
         "Consume readings and derived topics and insert them into ClickHouse in batches, "
         "committing offsets only after the rows are stored."),
        ("dashboard", "the operations screen (server mode)",
         "Serve the Dash screen (and /api/sql) on CITYBRAIN_DASHBOARD_HOST:PORT."),
    ):
        p = sub.add_parser(name, help=help_, description=desc)
        p.set_defaults(func=run, role=name)


def run(args: argparse.Namespace) -> int:
    from citybrain.hub import run_hub
    from config.settings import load_settings

    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from streams.redact import install

    install(settings)
    role = args.role
    return run_hub(settings, sink=role in ("hub", "sink"), dashboard=role in ("hub", "dashboard"))
