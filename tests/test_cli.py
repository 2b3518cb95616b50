"""The `citybrain` command: every subcommand has --help; errors are one plain line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from citybrain.cli import build_parser

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_expected_subcommands():
    assert {"up", "worker", "sink", "hub", "dashboard", "sim", "bench", "score", "eval"} <= set(
        SUBCOMMANDS
    )


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help(name):
    out = subprocess.run(
        [sys.executable, "-m", "citybrain", name, "--help"], capture_output=True, text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"citybrain {name}" in out.stdout


def test_config_error_is_one_line_exit_2():
    out = subprocess.run(
        [sys.executable, "-m", "citybrain", "worker"], capture_output=True, text=True, timeout=60,
        env={"CITYBRAIN_KAFKA_PARTITIONS": "zero", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert "CITYBRAIN_KAFKA_PARTITIONS='zero'" in out.stderr
    assert "Traceback" not in out.stderr
