from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from sensors_sim.engine import Simulator
from sensors_sim.errors import ScenarioError
from sensors_sim.scenario import list_scenarios, load_scenario, parse_duration, parse_scenario
from tests.sensors_sim.helpers import city

REQUIRED = {
    "normal_day",
    "rush_hour_crash",
    "pollution_episode",
    "water_main_burst",
    "heat_wave",
    "sensor_fault_storm",
    "bad_day",
}


def test_the_required_scenarios_exist_and_load() -> None:
    names = set(list_scenarios())
    assert names >= REQUIRED
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name and sc.description
        Simulator(city(), sc, seed=3)  # resolves against the city


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration(90) == 90
    assert parse_duration("1d") == 86400
    assert parse_duration("forever") == float("inf")
    with pytest.raises(ValueError):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("duration: soon\n", "duration='soon': expected a duration"),
        ("colour: red\n", "colour='red': unknown key"),
        (
            "incidents:\n  - {type: meteor, at: '08:00'}\n",
            "incidents[0].type='meteor': unknown incident type",
        ),
        (
            "incidents:\n  - {type: crash, at: '08:00', severity: 1.5}\n",
            "incidents[0].severity=1.5: must be in (0, 1]",
        ),
        ("incidents:\n  - {type: crash, at: '25:99'}\n", "incidents[0].at='25:99'"),
        ("incidents:\n  - {type: crash}\n", "incidents[0].at: missing"),
        (
            "incidents:\n  - {type: crash, at: '08:00', lanes: 2}\n",
            "incidents[0].lanes=2: unknown key",
        ),
        ("faults:\n  - {type: stuck, at: random, count: 0}\n", "faults[0].count=0"),
        ("faults:\n  - {type: wobble, at: random}\n", "faults[0].type='wobble'"),
        (
            "faults:\n  - {type: stuck, at: random, kind: loops}\n",
            "faults[0].kind='loops': unknown kind",
        ),
        ("weather:\n  wind_ms: -3\n", "weather.wind_ms=-3.0: must be in [0, 40]"),
        ("start: yesterday\n", "start='yesterday'"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_scenario_files_name_file_key_and_value(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert needle in msg
    assert isinstance(exc.value, ConfigError)  # the CLI reports it as a configuration error


def test_not_yaml_and_unknown_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("incidents: [\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match=r"no such scenario.*normal_day"):
        load_scenario("no_such_scenario")


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (
            {"incidents": [{"type": "crash", "at": "08:00", "segment": "SEG99999"}]},
            "incidents[0].segment='SEG99999': unknown segment",
        ),
        (
            {"incidents": [{"type": "burst", "at": "08:00", "zone": "DMA-X"}]},
            "incidents[0].zone='DMA-X': unknown DMA zone",
        ),
        (
            {"incidents": [{"type": "event", "at": "08:00", "venue": "moon"}]},
            "incidents[0].venue='moon': unknown venue",
        ),
        (
            {"incidents": [{"type": "heatwave", "at": "08:00", "districts": ["D99"]}]},
            "incidents[0].districts='D99'",
        ),
        (
            {"faults": [{"type": "stuck", "at": "+1h", "sensors": ["NOPE"]}]},
            "faults[0].sensors='NOPE': unknown sensor",
        ),
        (
            {"faults": [{"type": "stuck", "at": "+1h", "count": 99999, "kind": "weather"}]},
            "faults[0].count=99999",
        ),
    ],
)
def test_references_to_the_city_are_checked(doc: dict, needle: str) -> None:
    sc = parse_scenario({"name": "x", **doc}, source="config/scenarios/x.yaml")
    with pytest.raises(ScenarioError) as exc:
        Simulator(city(), sc, seed=1)
    assert "config/scenarios/x.yaml" in str(exc.value)
    assert needle in str(exc.value)


def test_times_resolve_against_the_local_day() -> None:
    sc = parse_scenario(
        {
            "name": "x",
            "start": "2026-01-05T06:00",
            "incidents": [{"type": "burst", "at": "08:30"}, {"type": "burst", "at": "+15m"}],
        }
    )
    sim = Simulator(city(), sc, seed=1)
    starts = sorted(lab.start for lab in sim.labels)
    assert starts == [sim.start + 900, sim.start + 2.5 * 3600]


def test_hyperparameters_are_validated() -> None:
    sc = load_scenario("normal_day")
    with pytest.raises(ValueError, match="seed must be"):
        Simulator(city(), sc, seed=-1)
    with pytest.raises(ValueError, match="duration must be"):
        Simulator(city(), sc, seed=1, duration=0)
