"""`efs-ha maintenance on|off`: through the checker, or the cluster item when the checker is busy."""

from __future__ import annotations

import json

from tests.cli.conftest import TABLE, FakeCluster


def _maintenance_shown(cluster: FakeCluster) -> tuple[bool, str]:
    report = json.loads(cluster.cli("status", "--json").stdout)
    line = next(line for line in cluster.cli("status").stdout.splitlines() if "Maintenance" in line)
    return report["cluster"]["maintenance"], line


def test_on_and_off_through_the_checker_are_visible_in_status(cluster: FakeCluster) -> None:
    on = cluster.cli("maintenance", "on")
    shown_on = _maintenance_shown(cluster)
    off = cluster.cli("maintenance", "off")
    shown_off = _maintenance_shown(cluster)

    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    assert cluster.lambda_client.events == [{"action": "maintenance", "enabled": True},
                                            {"action": "maintenance", "enabled": False}]
    assert "maintenance on: automatic failover suspended (set via the checker)" in on.stdout
    assert shown_on[0] is True and "ON for" in shown_on[1] and "automatic failover suspended" in shown_on[1]
    assert shown_off[0] is False and shown_off[1].split()[-1] == "off"


def test_throttled_sets_the_flag_in_the_table(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"

    result = cluster.cli("--json", "maintenance", "on")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "maintenance": True, "via": "state table"}
    assert cluster.item("cluster")["maintenance"] is True
    assert int(cluster.item("cluster")["epoch"]) == 1  # nothing but the flag changed
    assert _maintenance_shown(cluster)[0] is True


def test_throttled_without_cluster_item_says_why(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"
    cluster.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "cluster"}})

    result = cluster.cli("maintenance", "off")

    assert result.exit_code == 4  # refused
    assert "no `cluster` item yet (the checker has never run)" in result.stderr
    assert cluster.item("cluster") == {}  # the conditional update created nothing


def test_checker_refusal_is_one_line(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "answer"
    cluster.lambda_client.answer = {"ok": False, "reason": "AWS API unavailable, try again"}

    result = cluster.cli("maintenance", "on")

    assert result.exit_code == 4  # refused
    assert result.stderr.strip() == "Error: maintenance on refused: AWS API unavailable, try again"


def test_bad_argument_is_a_usage_error(cluster: FakeCluster) -> None:
    result = cluster.cli("maintenance", "maybe")

    assert result.exit_code == 64  # usage error
    assert "'maybe' is not one of 'on', 'off'" in result.stderr
