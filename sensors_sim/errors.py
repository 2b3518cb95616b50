"""Root exceptions of the simulator."""

from __future__ import annotations

from config.errors import ConfigError


class SimError(Exception):
    """The simulator cannot do what was asked; the message names the culprit."""


class ScenarioError(SimError, ConfigError):
    """A scenario file is wrong: the message names the file, the key path and the value."""


class RecordingError(SimError):
    """A recording file is unreadable or not a citybrain recording."""
