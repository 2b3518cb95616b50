"""``citybrain sim ...`` (and ``python -m sensors_sim ...``): scenarios, run, record, replay.

    citybrain sim scenarios
    citybrain sim run --scenario rush_hour_crash --seed 7 --speed 60
    citybrain sim record --scenario normal_day --seed 1 --duration 24h --out var/day.cbr
    citybrain sim replay var/day.cbr --speed 0 --resume
    citybrain sim labels --scenario bad_day --seed 1
    citybrain sim city --sensors 20000 --out var/city20k.yaml

Defaults come from the settings (``CITYBRAIN_SIM_SCENARIO``, ``_SIM_SEED``, ``_SIM_SPEED``,
``_SIM_START``, ``_CITY_FILE``, Kafka options); flags win. ``run`` and ``replay`` stop cleanly
on SIGTERM or SIGINT: they flush the producer and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sensors_sim.errors import SimError

log = logging.getLogger("sensors_sim")


def _duration(text: str) -> float:
    from sensors_sim.scenario import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def _add_common(p: argparse.ArgumentParser, *, live: bool) -> None:
    p.add_argument("--scenario", help="scenario name or YAML path (default: settings sim_scenario)")
    p.add_argument("--seed", type=int, help="random seed (default: settings sim_seed)")
    p.add_argument(
        "--duration",
        type=_duration,
        help="event time to simulate, e.g. 90m, 24h, 3d"
        + (", forever" if live else "")
        + " (default: the scenario's)",
    )
    p.add_argument(
        "--start",
        help="first reading time, ISO 8601 (local to the city without a zone) "
        "or 'now' (default: the scenario's start, else settings sim_start)",
    )
    p.add_argument("--city", help="city file (default: settings city_file)")
    p.add_argument(
        "--sensors", type=int, help="scale the city's generated part to N sensors (<= 100000)"
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sim",
        help="simulate the city: list scenarios, run live, record, replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ss = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    s = ss.add_parser("scenarios", help="list the scenarios")
    s.set_defaults(func=cmd_scenarios)

    s = ss.add_parser("run", help="publish a simulated run live to Kafka")
    _add_common(s, live=True)
    s.add_argument(
        "--speed",
        type=float,
        help="x real time; 0 = as fast as possible (default: settings sim_speed)",
    )
    s.add_argument(
        "--compression", choices=["gzip", "snappy", "lz4", "zstd"], help="producer compression"
    )
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_run)

    s = ss.add_parser("record", help="write a simulated run to a compressed file (frames + labels)")
    _add_common(s, live=False)
    s.add_argument("--out", required=True, help="recording file (labels go to FILE.labels.jsonl)")
    s.add_argument("--level", type=int, default=6, help="zstd level 1..22 (default 6)")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_record)

    s = ss.add_parser("replay", help="publish a recording to Kafka at any speed (resumable)")
    s.add_argument("file", help="recording file")
    s.add_argument(
        "--speed", type=float, default=0.0, help="x real time; 0 = as fast as possible (default)"
    )
    s.add_argument(
        "--resume",
        action="store_true",
        help="continue after the last checkpoint (FILE.replay.json)",
    )
    s.add_argument(
        "--compression", choices=["gzip", "snappy", "lz4", "zstd"], help="producer compression"
    )
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_replay)

    s = ss.add_parser("labels", help="print a run's ground-truth labels as JSON lines")
    _add_common(s, live=False)
    s.set_defaults(func=cmd_labels)

    s = ss.add_parser("city", help="write a city file scaled to N generated sensors")
    s.add_argument("--sensors", type=int, required=True)
    s.add_argument("--city", help="template city file (default: settings city_file)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_city)


# --- helpers --------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> Any:
    from config.settings import load_settings

    return load_settings()


def _simulator(args: argparse.Namespace, settings: Any, *, clock: Any = None) -> Any:
    from config.city import load_city
    from sensors_sim.engine import Simulator
    from sensors_sim.scenario import load_scenario
    from sensors_sim.timeutil import parse_local_iso

    city = load_city(args.city or settings.city_file, sensors=args.sensors)
    scenario = load_scenario(args.scenario or settings.sim_scenario)
    seed = settings.sim_seed if args.seed is None else args.seed
    start_text = args.start
    if start_text is None and "sim_start" in settings.model_fields_set:
        start_text = settings.sim_start
    start: float | None = None
    if start_text == "now":
        from sensors_sim.clock import RealClock

        start = float(int((clock or RealClock()).wall()))
    elif start_text is not None:
        try:
            start = parse_local_iso(start_text, city.utc_offset_s)
        except ValueError as exc:
            raise SimError(f"--start={start_text!r}: {exc}") from None
    try:
        return Simulator(city, scenario, seed=seed, start=start, duration=args.duration)
    except ValueError as exc:
        raise SimError(str(exc)) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    return stop


def _summary(sim: Any) -> str:
    from sensors_sim.timeutil import iso_utc

    end = "forever" if sim.end == float("inf") else iso_utc(sim.end)
    return (
        f"{sim.scenario.name} seed={sim.seed} {iso_utc(sim.start)} .. {end}, {sim.sensors} sensors, "
        f"{sim.readings_per_second_of_sim():.0f} readings per simulated second, {len(sim.labels)} labels"
    )


# --- commands ---------------------------------------------------------------------------------
def cmd_scenarios(args: argparse.Namespace) -> int:
    from sensors_sim.scenario import list_scenarios, load_scenario

    for name in list_scenarios():
        sc = load_scenario(name)
        print(f"{name:<22} {sc.duration_s / 3600:5.1f} h  {sc.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from sensors_sim.clock import RealClock
    from sensors_sim.progress import Progress
    from sensors_sim.publisher import Publisher, run_live

    logging.basicConfig(level=logging.INFO, format="%(asctime)s sim %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    stop = _stop_on_signals()
    settings = _settings(args)
    clock = RealClock()
    sim = _simulator(args, settings, clock=clock)
    speed = settings.sim_speed if args.speed is None else args.speed
    if speed < 0:
        raise SimError(f"--speed={speed!r}: must be >= 0")
    print(f"sim: {_summary(sim)}; speed x{speed:g} -> {settings.kafka_bootstrap}", file=sys.stderr)
    publisher = Publisher(settings, city=sim.city, compression=args.compression)
    total = None if sim.end == float("inf") else (sim.end - sim.start) / sim.tick_s
    progress = Progress(total=total, clock=clock, enabled=not args.quiet)
    try:
        stats = run_live(
            sim,
            publisher,
            speed=speed,
            clock=clock,
            stop=stop,
            on_tick=lambda t, n: progress.update(n, readings=publisher.stats.readings),
        )
    finally:
        progress.close()
        publisher.close()
    print(
        f"sim: published {stats.readings} readings in {stats.frames} frames, {stats.labels} labels"
        + (" (stopped)" if stop.is_set() else ""),
        file=sys.stderr,
    )
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from sensors_sim.progress import Progress
    from sensors_sim.recording import labels_path, record

    settings = _settings(args)
    sim = _simulator(args, settings)
    if sim.end == float("inf"):
        raise SimError("--duration: a recording needs a finite duration")
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    print(f"sim record: {_summary(sim)} -> {out}", file=sys.stderr)
    stop = _stop_on_signals()
    progress = Progress(total=(sim.end - sim.start) / sim.tick_s, enabled=not args.quiet)
    stats = record(sim, out, level=args.level, progress=progress, stop=stop)
    ratio = stats.raw_bytes / max(stats.file_bytes, 1)
    print(
        f"sim record: {stats.readings} readings, {stats.frames} frames, {stats.ticks} ticks; "
        f"{stats.file_bytes / 1e6:.1f} MB ({stats.raw_bytes / 1e6:.0f} MB of JSON, x{ratio:.1f}); "
        f"labels: {labels_path(out)}" + (" (stopped early)" if stop.is_set() else ""),
        file=sys.stderr,
    )
    return 0


def _recording_city(header: dict[str, Any], settings: Any) -> Any:
    """The city a recording was made of (its partitioning follows that city's gateways): the
    file it names, at its sensor count; else the configured city."""
    from config.city import load_city
    from config.errors import ConfigError

    try:
        city = load_city(header.get("city_source") or settings.city_file)
        n = header.get("sensors")
        if isinstance(n, int) and n != len(city.sensors):
            city = load_city(header.get("city_source"), sensors=n)
        return city
    except (ConfigError, ValueError) as exc:
        log.warning("the recording's city %s cannot be loaded (%s): placing its frames by the "
                    "configured city", header.get("city_source"), exc)
        return load_city(settings.city_file)


def cmd_replay(args: argparse.Namespace) -> int:
    from sensors_sim.clock import RealClock
    from sensors_sim.progress import Progress
    from sensors_sim.publisher import Publisher
    from sensors_sim.recording import Recording, replay

    if args.speed < 0:
        raise SimError(f"--speed={args.speed!r}: must be >= 0")
    stop = _stop_on_signals()
    settings = _settings(args)
    rec = Recording(args.file)
    h = rec.header
    print(
        f"sim replay: {args.file}: {h['scenario']} seed={h['seed']}, {rec.total_ticks} ticks, "
        f"{len(rec.labels)} labels; speed x{args.speed:g} -> {settings.kafka_bootstrap}",
        file=sys.stderr,
    )
    clock = RealClock()
    publisher = Publisher(settings, city=_recording_city(h, settings),
                          compression=args.compression)
    progress = Progress(total=rec.total_ticks, clock=clock, enabled=not args.quiet)
    try:
        stats, done = replay(
            args.file,
            publisher,
            speed=args.speed,
            clock=clock,
            stop=stop,
            resume=args.resume,
            progress=progress,
        )
    finally:
        publisher.close()
    state = "stopped; continue with --resume" if stop.is_set() else "done"
    print(
        f"sim replay: published {stats.readings} readings in {stats.frames} frames "
        f"({done}/{rec.total_ticks} ticks, {state})",
        file=sys.stderr,
    )
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    settings = _settings(args)
    sim = _simulator(args, settings)
    for lab in sim.labels:
        sys.stdout.write(lab.to_json().decode() + "\n")
    return 0


def cmd_city(args: argparse.Namespace) -> int:
    import yaml

    from config.city import load_city

    settings = _settings(args)
    src = Path(args.city or settings.city_file)
    doc = yaml.safe_load(src.read_text())
    if not isinstance(doc, dict) or "generate" not in doc:
        raise SimError(f"{src}: has no generate: block to scale")
    doc["generate"]["sensors"] = args.sensors
    out = Path(args.out)
    out.write_text(
        f"# {src} scaled to {args.sensors} sensors by `citybrain sim city`\n"
        + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    )
    city = load_city(out)
    print(
        f"{out}: {len(city.sensors)} sensors, {len(city.gateways)} gateways, "
        f"{len(city.segments)} segments in {len(city.districts)} districts",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m sensors_sim ...``: the same subcommands as ``citybrain sim``."""
    from config.errors import ConfigError

    parser = argparse.ArgumentParser(prog="python -m sensors_sim")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["sim", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except (ConfigError, SimError) as exc:
        print(f"sim: error: {exc}", file=sys.stderr)
        return 2
