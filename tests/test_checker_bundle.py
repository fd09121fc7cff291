"""The checker's asset build (constructs/checker_bundle.py): dependencies installed once per requirements file
into a cache, never again while it is unchanged, and a failed install is one clear error."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from constructs import checker_bundle


class FakePip:
    def __init__(self, returncode: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode

    def __call__(self, command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        if self.returncode == 0:
            target = Path(command[command.index("--target") + 1])
            (target / "aws_lambda_powertools").mkdir(parents=True)
        return subprocess.CompletedProcess(command, self.returncode, "", "ERROR: No matching distribution found")


def test_dependencies_are_installed_once_for_the_lambda_runtime_and_then_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip = FakePip()
    monkeypatch.setattr(checker_bundle.subprocess, "run", pip)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aws-lambda-powertools==3.37.0\n")
    first = checker_bundle.dependencies_dir(requirements, tmp_path / "cache")
    again = checker_bundle.dependencies_dir(requirements, tmp_path / "cache")
    assert first == again and (first / "aws_lambda_powertools").is_dir()
    (command,) = pip.calls  # the second synth copies, it does not install
    assert command[command.index("--python-version") + 1] == "3.13"
    assert command[command.index("--platform") + 1] == "manylinux2014_x86_64"
    assert "--only-binary=:all:" in command
    # A changed pin is a new cache entry
    requirements.write_text("aws-lambda-powertools==3.38.0\n")
    assert checker_bundle.dependencies_dir(requirements, tmp_path / "cache") != first
    assert len(pip.calls) == 2


def test_a_failed_install_is_one_clear_error_and_leaves_no_partial_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checker_bundle.subprocess, "run", FakePip(returncode=1))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aws-lambda-powertools==3.37.0\n")
    with pytest.raises(checker_bundle.BundleError, match=r"requirements\.txt.*No matching distribution.*index"):
        checker_bundle.dependencies_dir(requirements, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
