"""Every failure is one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moto import mock_aws

from efs_ha_cli import stack
from efs_ha_cli.stack import default_stack_name
from tests.cli.conftest import REGION, STACK, FakeCluster, invoke


def _one_line_error(result_stderr: str) -> str:
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    assert "Traceback" not in result_stderr
    return lines[0]


def test_no_credentials(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    result = invoke("status")

    assert result.exit_code == 6  # AWS access
    assert _one_line_error(result.stderr).startswith("Error: no AWS credentials found: run `aws configure`")


def test_no_region(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    result = invoke("status")

    assert result.exit_code == 6  # AWS access
    assert _one_line_error(result.stderr).startswith("Error: no AWS region configured: pass --region")


def test_unknown_stack(cluster: FakeCluster) -> None:
    result = cluster.cli("--stack-name", "Nope", "status")

    assert result.exit_code == 3  # status: cannot tell
    assert _one_line_error(result.stderr) == (
        f"Error: stack Nope not found in region {REGION}; deploy it or pass --stack-name")


def test_region_option_is_used(cluster: FakeCluster) -> None:
    result = cluster.cli("--region", "us-east-2", "status")

    assert result.exit_code == 3
    assert _one_line_error(result.stderr) == (
        f"Error: stack {STACK} not found in region us-east-2; deploy it or pass --stack-name")


def test_missing_outputs_are_named(cluster: FakeCluster) -> None:
    partial = {k: v for k, v in cluster.outputs.items() if k not in ("StateTableName", "FailoverFunctionName")}
    cluster.create_stack("OldCluster", partial)

    status = cluster.cli("--stack-name", "OldCluster", "status")
    switch = cluster.cli("--stack-name", "OldCluster", "switchover", "--to", "node2")

    assert status.exit_code == 3 and switch.exit_code == 1  # status: cannot tell; switchover: failed
    assert _one_line_error(status.stderr) == (
        "Error: stack OldCluster (CREATE_COMPLETE) lacks the output(s) StateTableName; "
        "was the stack deployed with this version?")
    assert "lacks the output(s) StateTableName, FailoverFunctionName;" in _one_line_error(switch.stderr)


def test_status_works_without_the_checker_outputs(cluster: FakeCluster) -> None:
    """Only what status needs is required: an older stack without FailoverFunctionName still shows status."""
    partial = {k: v for k, v in cluster.outputs.items() if k not in ("FailoverFunctionName", "AlarmTopicArn")}
    cluster.create_stack("OlderCluster", partial)

    result = cluster.cli("--stack-name", "OlderCluster", "status", "--json")

    report = json.loads(result.stdout)
    assert report["ok"] is True and report["stack"]["thresholds_from"] == "defaults"
    # The call worked; the verdict is the world's: no instance is tagged with this stack's name.
    assert result.exit_code == 2 and report["verdict"] == "DOWN"


def test_malformed_output_is_named(cluster: FakeCluster) -> None:
    cluster.create_stack("Broken", {**cluster.outputs, "RouteTableIds": "not-a-table"})

    result = cluster.cli("--stack-name", "Broken", "status")

    assert result.exit_code == 3
    assert _one_line_error(result.stderr).startswith("Error: stack output RouteTableIds is malformed:")


def test_missing_state_table_is_one_line(cluster: FakeCluster) -> None:
    cluster.create_stack("NoTable", {**cluster.outputs, "StateTableName": "deleted-table"})

    result = cluster.cli("--stack-name", "NoTable", "status")

    assert result.exit_code == 6  # an AWS call failed
    assert "Scan failed: ResourceNotFoundException" in _one_line_error(result.stderr)


def test_default_stack_name_comes_from_cdk_json_in_the_cwd(aws_env: None, tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"stack_name": "FromCwd"}}))

    with mock_aws():
        result = invoke("status")

    assert _one_line_error(result.stderr) == (
        f"Error: stack FromCwd not found in region {REGION}; deploy it or pass --stack-name")


def test_default_stack_name_falls_back_to_the_repository_then_the_constant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_name = json.loads((Path(__file__).parents[2] / "cdk.json").read_text())["context"]["stack_name"]
    (tmp_path / "cdk.json").write_text("{ not json")

    assert default_stack_name(tmp_path) == repo_name
    assert default_stack_name(tmp_path / "empty") == repo_name
    monkeypatch.setattr(stack, "REPO_ROOT", tmp_path / "no-repo")
    assert default_stack_name(tmp_path) == "EfsHaCluster"
