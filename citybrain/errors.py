"""Root exception of the ``citybrain`` command package."""

from __future__ import annotations


class CitybrainError(Exception):
    """A command cannot do what was asked; the message says why and names the culprit."""
