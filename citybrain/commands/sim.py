"""``citybrain sim ...``: the simulator's commands (implemented in :mod:`sensors_sim.cli`)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from citybrain.errors import CitybrainError


def _wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from sensors_sim.errors import SimError

        try:
            return func(args)
        except SimError as exc:
            if isinstance(exc, CitybrainError):
                raise
            raise CitybrainError(str(exc)) from exc

    return run


def register(sub: Any) -> None:
    from sensors_sim import cli

    cli.register(sub)
    sim_parser = sub.choices["sim"]
    for action in sim_parser._subparsers._group_actions:
        for parser in action.choices.values():
            func = parser.get_default("func")
            if func is not None:
                parser.set_defaults(func=_wrap(func))
