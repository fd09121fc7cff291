"""Distinct exit codes (usage / AWS access / refused / timeout), JSON errors under --json, AWS_REGION alone,
and `verify`'s confirmation (it performs two live switchovers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from efs_ha_cli import main
from tests.cli.conftest import REGION, STACK, FakeCluster, invoke
from tests.cli.test_verify import FakeNodes


def _json_error(result: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(result.stdout)
    assert payload["ok"] is False and payload["exit_code"] == result.exit_code
    assert "Error: " in result.stderr, result.stderr  # the one-line message still goes to stderr
    return payload


# ----- AWS_REGION -----
def test_aws_region_alone_is_honoured(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    result = cluster.cli("status", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stack"]["region"] == REGION


def test_aws_region_wins_over_aws_default_region(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")

    result = cluster.cli("status", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stack"]["region"] == REGION


def test_region_option_wins_over_aws_region(cluster: FakeCluster) -> None:
    result = cluster.cli("--region", "us-east-2", "status")

    assert result.exit_code == 3
    assert f"stack {STACK} not found in region us-east-2" in result.stderr


# ----- JSON errors and their exit codes -----
def test_status_error_under_json_is_unknown(cluster: FakeCluster) -> None:
    result = cluster.cli("--stack-name", "Nope", "status", "--json")

    payload = _json_error(result)
    assert result.exit_code == 3
    assert payload["verdict"] == "UNKNOWN" and payload["kind"] == "error"
    assert payload["error"] == f"stack Nope not found in region {REGION}; deploy it or pass --stack-name"


def test_aws_access_error_under_json(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    result = invoke("--json", "status")

    payload = _json_error(result)
    assert result.exit_code == 6 and payload["kind"] == "aws" and payload["verdict"] == "UNKNOWN"
    assert payload["error"].startswith("no AWS credentials found")


def test_usage_errors_exit_64_with_json(cluster: FakeCluster) -> None:
    missing = cluster.cli("switchover", "--json")
    unknown_node = cluster.cli("--json", "switchover", "--to", "node9")
    bad_option = cluster.cli("--json", "--no-such-option", "status")

    for result in (missing, unknown_node, bad_option):
        assert result.exit_code == 64, result.output
        assert _json_error(result)["kind"] == "usage"
    assert "Missing option '--to'" in json.loads(missing.stdout)["error"]
    assert "unknown node 'node9'" in json.loads(unknown_node.stdout)["error"]


def test_refused_exits_4_with_json(cluster: FakeCluster) -> None:
    result = cluster.cli("--json", "switchover", "--to", "node1")

    payload = _json_error(result)
    assert result.exit_code == 4 and payload["kind"] == "refused"
    assert payload["error"] == "node1 is already active"


def test_timeout_exits_5_with_json(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"  # queued, and no checker runs it

    result = cluster.cli("--json", "switchover", "--to", "node2", "--timeout", "3")

    payload = _json_error(result)
    assert result.exit_code == 5 and payload["kind"] == "timeout"
    assert payload["error"].startswith("switchover to node2 not complete after")


def test_errors_without_json_print_nothing_on_stdout(cluster: FakeCluster) -> None:
    result = cluster.cli("switchover", "--to", "node1")

    assert result.exit_code == 4 and result.stdout == ""


# ----- verify asks first -----
def test_verify_without_a_terminal_and_without_yes_refuses_and_does_nothing(cluster: FakeCluster) -> None:
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 4
    assert "two live switchovers" in result.stderr and "re-run with --yes" in result.stderr
    assert nodes.calls == [] and cluster.lambda_client.events == []


def test_verify_declined_at_the_prompt_does_nothing(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main, "interactive", lambda: True)
    nodes = FakeNodes(cluster)

    result = main_invoke(cluster, nodes, "n\n")

    assert result.exit_code == 4 and "verify not confirmed; nothing was changed" in result.stderr
    assert "Continue?" in result.stderr
    assert nodes.calls == [] and cluster.lambda_client.events == []


def test_verify_confirmed_at_the_prompt_runs(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main, "interactive", lambda: True)
    nodes = FakeNodes(cluster)

    result = main_invoke(cluster, nodes, "y\n")

    assert result.exit_code == 0, result.output
    assert "verify passed" in result.stdout
    assert [event["target"] for event in cluster.lambda_client.events] == ["node2", "node1"]


def main_invoke(cluster: FakeCluster, nodes: FakeNodes, answer: str) -> Any:
    return CliRunner(env={"COLUMNS": "220"}).invoke(main.cli, ["verify"], input=answer,
                                                     obj=cluster.hooks(command_runner=nodes))


def test_status_help_documents_the_verdicts_and_exit_codes() -> None:
    result = invoke("status", "--help")

    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for line in ("0 HEALTHY", "1 DEGRADED", "2 DOWN", "3 UNKNOWN", "6 AWS access", "64 usage error", "--watch"):
        assert line in text, line


def test_top_level_help_documents_every_exit_code() -> None:
    text = " ".join(invoke("--help").stdout.split())

    for line in ("4 refused", "5 timed out", "6 AWS access", "64 usage error", "130 interrupted", "AWS_REGION"):
        assert line in text, line
