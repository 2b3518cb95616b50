"""Reading generators, one module per domain; :data:`GENERATORS` maps a sensor kind to its class."""

from __future__ import annotations

from sensors_sim.generators.base import Cohort, Generator
from sensors_sim.generators.environment import AirGenerator, NoiseGenerator, WeatherGenerator
from sensors_sim.generators.traffic import LoopGenerator
from sensors_sim.generators.utility import (
    PowerGenerator,
    WaterFlowGenerator,
    WaterPressureGenerator,
)

GENERATORS: dict[str, type[Generator]] = {
    "loop": LoopGenerator,
    "air": AirGenerator,
    "noise": NoiseGenerator,
    "weather": WeatherGenerator,
    "water_flow": WaterFlowGenerator,
    "water_pressure": WaterPressureGenerator,
    "power": PowerGenerator,
}

__all__ = ["GENERATORS", "Cohort", "Generator"]
