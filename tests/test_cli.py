"""The CLI: --help works for every command, and bad input is one line on stderr with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sparseshift.experiments.cli import COMMANDS, build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparseshift.experiments", *args], capture_output=True, text=True,
        timeout=300,
    )


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name.replace("_", "-") in text


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("envs", "--env", "sparseshift/Nope-v0"), "unknown env id 'sparseshift/Nope-v0'; valid:"),
        (("render", "sparseshift/Nope-v0", "--out", "x.png"), "unknown env id"),
        (("bogus",), "invalid choice"),
        (("render",), "required"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], needle: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
