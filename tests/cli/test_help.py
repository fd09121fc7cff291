"""`--help` on every command, through the installed console script and through click."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import invoke

CONSOLE_SCRIPT = Path(sys.executable).parent / "efs-ha"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert CONSOLE_SCRIPT.exists(), "run `.venv/bin/pip install -e .` to install the efs-ha console script"
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


def test_console_script_top_level_help() -> None:
    result = _run("--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: efs-ha [OPTIONS] COMMAND [ARGS]...")
    for word in ("--stack-name", "--region", "--json", "status", "switchover", "maintenance", "verify"):
        assert word in result.stdout


def test_console_script_status_help() -> None:
    result = _run("status", "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: efs-ha status [OPTIONS]")
    assert "DRIFT" in result.stdout and "--json" in result.stdout


@pytest.mark.parametrize("command, expected", [
    ("switchover", "--to NODE"), ("maintenance", "{on|off}"), ("verify", "--timeout"), ("status", "--json")])
def test_every_command_has_help(command: str, expected: str) -> None:
    result = invoke(command, "--help")

    assert result.exit_code == 0
    assert expected in result.stdout


def test_switchover_without_target_is_a_usage_error() -> None:
    result = invoke("switchover")

    assert result.exit_code == 64  # usage error
    assert "Missing option '--to'" in result.stderr
