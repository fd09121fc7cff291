"""`efs-ha status --require-healthy [--wait]` (issue 13): the pipeline's gate before and after a deploy. Each
degraded state exits with its own documented code; plain `status` keeps its codes and JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from efs_ha_cli.verdict import GATE_EXIT_CODES
from tests.cli.conftest import STACK, TABLE, FakeCluster, aws_client


def _gate(cluster: FakeCluster, *args: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, the JSON report, the table run's stderr)."""
    table = cluster.cli("status", "--require-healthy", *args)
    report = cluster.cli("status", "--require-healthy", "--json", *args)
    assert table.exception is None or isinstance(table.exception, SystemExit), table.output
    assert report.exit_code == table.exit_code
    return table.exit_code, json.loads(report.stdout), table.stderr


def test_the_documented_gate_codes_are_distinct_from_every_other_exit_code() -> None:
    assert GATE_EXIT_CODES == {"fencing": 10, "active_down": 11, "no_standby": 12, "maintenance": 13,
                               "checker": 14, "route_drift": 15, "unknown": 3}
    assert not set(GATE_EXIT_CODES.values()) & {0, 1, 2, 4, 5, 6, 64, 130}


def test_a_healthy_cluster_passes_the_gate(cluster: FakeCluster) -> None:
    code, report, stderr = _gate(cluster)
    assert code == 0 and report["verdict"] == "HEALTHY"
    assert report["gate"] == {"exit_code": 0, "blocked_by": []}
    assert stderr == ""


def test_takeover_fencing_in_progress_exits_10(cluster: FakeCluster) -> None:
    cluster.update_cluster(phase="fencing", active=None, fencing_node="node1", candidate="node2", epoch=2)

    code, report, stderr = _gate(cluster)

    assert code == 10 and report["gate"]["blocked_by"][0] == "fencing"
    assert "efs-ha: not healthy (exit 10, fencing)" in stderr and "no active node: takeover fencing" in stderr


def test_the_active_node_down_exits_11(cluster: FakeCluster) -> None:
    cluster.agents["node1"].alive = False
    cluster.clock.t += 17

    code, report, _ = _gate(cluster)

    assert code == 11 and report["gate"]["blocked_by"][0] == "active_down"


def test_no_healthy_standby_exits_12(cluster: FakeCluster) -> None:
    cluster.agents["node2"].alive = False
    cluster.clock.t += 17

    code, report, stderr = _gate(cluster)

    assert code == 12 and report["gate"] == {"exit_code": 12, "blocked_by": ["no_standby"]}
    assert report["verdict"] == "DEGRADED" and report["exit_code"] == 1  # the verdict's own code is unchanged
    assert "no failover target" in stderr


def test_maintenance_on_exits_13(cluster: FakeCluster) -> None:
    cluster.update_cluster(maintenance=True, maintenance_changed_at=cluster.clock.now() - 60)

    code, report, _ = _gate(cluster)

    assert code == 13 and report["gate"]["blocked_by"] == ["maintenance"]


def test_a_silent_checker_exits_14(cluster: FakeCluster) -> None:
    cluster.checker_probing = False
    cluster.clock.t += 60

    code, report, _ = _gate(cluster)

    assert code == 14 and "checker" in report["gate"]["blocked_by"]


def test_a_drifted_route_table_exits_15(cluster: FakeCluster) -> None:
    cluster.set_route(cluster.route_tables[0], cluster.agents["node2"].eni)

    code, report, _ = _gate(cluster)

    assert code == 15 and report["gate"]["blocked_by"] == ["route_drift"]


def test_an_uninitialised_cluster_exits_3_cannot_tell(cluster: FakeCluster) -> None:
    aws_client("dynamodb").delete_item(TableName=TABLE, Key={"pk": {"S": "cluster"}})

    code, report, _ = _gate(cluster)

    assert code == 3 and report["gate"]["blocked_by"] == ["unknown"]


def test_the_worst_problem_decides_the_code(cluster: FakeCluster) -> None:
    cluster.update_cluster(maintenance=True)
    cluster.agents["node2"].alive = False
    cluster.clock.t += 17

    code, report, _ = _gate(cluster)

    assert code == 12 and report["gate"]["blocked_by"] == ["no_standby", "maintenance"]


def test_plain_status_keeps_its_codes_and_the_gate_key_is_only_added(cluster: FakeCluster) -> None:
    cluster.update_cluster(maintenance=True)
    result = cluster.cli("status", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["gate"]["exit_code"] == 13


def test_wait_returns_0_as_soon_as_the_cluster_is_healthy(cluster: FakeCluster) -> None:
    cluster.update_cluster(maintenance=True)
    start = cluster.clock.now()

    def end_maintenance() -> None:
        if cluster.clock.now() - start >= 30 and cluster.item("cluster").get("maintenance"):
            cluster.update_cluster(maintenance=False)

    cluster.clock.on_sleep.append(end_maintenance)

    result = cluster.cli("status", "--require-healthy", "--wait", "--timeout", "120", "--interval", "5")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "HEALTHY"
    assert 30 <= cluster.clock.now() - start < 120
    assert "waiting for HEALTHY" in result.stderr and "maintenance on" in result.stderr


def test_wait_gives_up_after_the_timeout_with_the_last_readings_code(cluster: FakeCluster) -> None:
    cluster.update_cluster(maintenance=True)
    start = cluster.clock.now()

    result = cluster.cli("status", "--require-healthy", "--wait", "--timeout", "60", "--interval", "10", "--json")

    assert result.exit_code == 13
    assert 60 <= cluster.clock.now() - start < 80
    assert json.loads(result.stdout)["gate"]["blocked_by"] == ["maintenance"]
    assert "still not healthy after 60 s" in result.stderr


def test_wait_keeps_waiting_while_the_checker_has_not_initialised_the_cluster(cluster: FakeCluster) -> None:
    item = cluster.item("cluster")
    aws_client("dynamodb").delete_item(TableName=TABLE, Key={"pk": {"S": "cluster"}})
    start = cluster.clock.now()

    def bootstrap() -> None:
        if cluster.clock.now() - start >= 20 and not cluster.item("cluster"):
            cluster.put(item)

    cluster.clock.on_sleep.insert(0, bootstrap)

    result = cluster.cli("status", "--require-healthy", "--wait", "--timeout", "300")

    assert result.exit_code == 0, result.output


def test_if_deployed_lets_a_first_deploy_through(cluster: FakeCluster) -> None:
    result = cluster.cli("--stack-name", "NotYetDeployed", "status", "--require-healthy", "--if-deployed")
    assert result.exit_code == 0, result.output
    assert "NotYetDeployed is not deployed yet" in result.stderr

    missing = cluster.cli("--stack-name", "NotYetDeployed", "status", "--require-healthy")
    assert missing.exit_code == 3
    deployed = cluster.cli("--stack-name", STACK, "status", "--require-healthy", "--if-deployed")
    assert deployed.exit_code == 0 and deployed.stdout.splitlines()[0] == "HEALTHY"


@pytest.mark.parametrize("args", [
    ("--wait",),
    ("--if-deployed",),
    ("--timeout", "60"),
    ("--require-healthy", "--watch"),
])
def test_gate_options_need_require_healthy_and_exclude_watch(cluster: FakeCluster, args: tuple[str, ...]) -> None:
    result = cluster.cli("status", *args)
    assert result.exit_code == 64
    assert "--require-healthy" in result.stderr


def test_a_handover_in_progress_exits_10_like_a_takeover(cluster: FakeCluster) -> None:
    """The active node is being shut down (`leaving`): the role is about to move; a deploy that replaces nodes
    now could take down the node it moves to (issue 12's handover)."""
    cluster.clock.on_sleep.append(lambda: cluster.heartbeat(cluster.agents["node1"], leaving=True))

    code, report, _stderr = _gate(cluster)

    assert code == 10, report
    assert report["gate"]["blocked_by"] == ["fencing"]
    assert any("shutting down" in reason["text"] for reason in report["reasons"])
