"""``citybrain eval --scenario NAME --seed S [--json]``: run a simulated scenario through the
models (no Kafka) and report precision, recall, F1, median detection delay and false alarms,
per incident and fault type, for the models and two baselines side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from citybrain.errors import CitybrainError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate the models on a simulated scenario with ground truth",
        description="Simulate a scenario (sensors_sim), run it through the model stack and two "
        "baselines (fixed thresholds, rolling z-score), and report per incident and fault type: "
        "precision, recall, F1, median detection delay, false alarms per district per day.",
    )
    p.add_argument("--scenario", required=True, help="scenario name (citybrain sim scenarios)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--city", type=Path, default=None, help="city file (default: the packaged city)")
    p.add_argument("--params", type=Path, default=None, help="model parameters file")
    p.add_argument("--no-baselines", action="store_true", help="evaluate only the model stack")
    p.add_argument(
        "--duration",
        default=None,
        help="simulate only this long from the start (e.g. 90m, 2h; default: the scenario's)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from config.city import load_city
    from models.evaluation import evaluate, format_report
    from models.params import load_params
    from models.sensors import SensorTable

    try:  # the simulator is imported lazily: models never depend on it
        from sensors_sim.engine import Simulator
        from sensors_sim.scenario import list_scenarios, load_scenario
    except ImportError as exc:
        raise CitybrainError(f"the simulator is not available ({exc})") from exc
    known = list(list_scenarios())
    names = [getattr(s, "name", s) for s in known]
    if args.scenario not in names:
        raise CitybrainError(
            f"unknown scenario {args.scenario!r} (known: {', '.join(map(str, names))})"
        )
    city = load_city(args.city)
    scenario = load_scenario(args.scenario)
    params = load_params(args.params)
    offset = getattr(city, "utc_offset_s", None)
    if offset is not None:  # profiles follow the city's local clock
        from dataclasses import replace

        params = replace(params, time=replace(params.time, utc_offset_h=float(offset) / 3600.0))
    from sensors_sim.scenario import parse_duration

    duration = None
    if args.duration is not None:
        try:
            duration = parse_duration(args.duration)
        except ValueError as exc:
            raise CitybrainError(f"--duration {args.duration!r}: {exc}") from exc
    sim = Simulator(city, scenario, seed=args.seed, duration=duration)
    # a shortened run is scored only on the labels that start inside it
    labels = [lab for lab in sim.labels if lab.start < sim.end]
    table = SensorTable.from_city(city)

    last = [0.0]

    def progress(t: float) -> None:
        if not args.json and t - last[0] >= 3600:
            last[0] = t
            print(f"\r  simulated up to {t:.0f}", end="", file=sys.stderr, flush=True)

    report: dict[str, Any] = evaluate(
        sim.steps(),
        labels,
        table,
        params,
        seed=args.seed,
        baselines=not args.no_baselines,
        progress=progress,
    )
    report = {"scenario": args.scenario, "seed": args.seed, **report}
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    else:
        print(file=sys.stderr)
        print(f"scenario {args.scenario}, seed {args.seed}")
        print(format_report(report))
    return 0
