"""Root exception of the ``config`` package."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration value, file or key is wrong. The message names the culprit."""
