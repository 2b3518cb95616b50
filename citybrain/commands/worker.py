"""``citybrain worker``: a Faust stream worker (scale out by starting more)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run a Faust stream worker",
        description="Consume the readings topics in the consumer group CITYBRAIN_GROUP_ID, "
        "compute indicators and write them to the derived topics. Start N of them to share the "
        "partitions. Stops cleanly on SIGINT/SIGTERM.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from config.settings import load_settings
    from streams.app import run_worker
    from streams.topics import ensure_topics

    settings = load_settings()
    import logging

    from streams.redact import install

    logging.basicConfig(level=settings.log_level)
    install(settings)  # ensure_topics logs through kafka-python before Faust starts
    ensure_topics(settings)
    run_worker(settings)
    return 0
