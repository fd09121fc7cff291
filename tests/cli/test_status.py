"""`efs-ha status`: computed from the table and EC2 with failover_lambda's status code."""

from __future__ import annotations

import json
from decimal import Decimal

import boto3

from tests.cli.conftest import FUNCTION, REGION, STACK, FakeCluster


def _row(output: str, needle: str) -> str:
    """The first table row with `needle` (the verdict line and the next steps may name it too)."""
    lines = output.splitlines()
    return next(line for line in lines[1:] if needle in line and not line.startswith("- "))


def test_table_shows_cluster_nodes_and_routes(cluster: FakeCluster) -> None:
    result = cluster.cli("status")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{STACK} ({REGION}, CREATE_COMPLETE)" in out
    assert "172.16.0.1/32" in out
    assert "1 / stable" in out
    assert _row(out, "Maintenance").split()[-1] == "off"
    node1, node2 = cluster.agents["node1"], cluster.agents["node2"]
    assert "active" in _row(out, node1.instance_id) and "healthy" in _row(out, node1.instance_id)
    assert "standby" in _row(out, node2.instance_id) and "healthy" in _row(out, node2.instance_id)
    lines = out.splitlines()
    assert node1.eni in lines[lines.index(_row(out, node1.instance_id)) + 1]  # the ENI under its instance
    for table in cluster.route_tables:
        row = _row(out, table)
        assert node1.eni in row and "node1" in row and "ok" in row and "DRIFT" not in row


def test_json_has_every_field_an_operator_needs(cluster: FakeCluster) -> None:
    cluster.clock.t += 1.5  # the last renewals were 1.5 s ago; status watches until it sees the next ones

    result = cluster.cli("--json", "status")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["cluster"]["active"] == "node1"
    assert report["cluster"]["epoch"] == 1
    assert report["cluster"]["phase"] == "stable"
    assert report["cluster"]["maintenance"] is False
    node2 = report["nodes"]["node2"]
    assert node2["role"] == "standby"
    assert node2["lease_fresh"] is True and node2["lease_renewal_age_seconds"] is not None
    assert node2["lease_seq"] >= 2 and node2["clock_skew_seconds"] is not None
    assert (node2["efs_ok"], node2["serving"], node2["healthy"]) == (True, False, True)
    assert node2["instance_id"] == cluster.agents["node2"].instance_id
    assert node2["eni"] == cluster.agents["node2"].eni
    assert report["nodes"]["node1"]["serving"] is True and report["nodes"]["node1"]["minio_ok"] is True
    assert [r["route_table_id"] for r in report["route_tables"]] == cluster.route_tables
    assert all(r["target_node"] == "node1" and r["drift"] is False for r in report["route_tables"])
    assert report["stack"]["thresholds_from"] == f"function {FUNCTION}"
    assert report["stack"]["node_groups"] == [f"EfsHaCluster-{name}-group" for name in ("node1", "node2")]


def test_command_level_json_flag_works_too(cluster: FakeCluster) -> None:
    result = cluster.cli("status", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cluster"]["active"] == "node1"


def test_drift_is_flagged_in_the_table_and_in_json(cluster: FakeCluster) -> None:
    drifted = cluster.route_tables[1]
    cluster.set_route(drifted, cluster.agents["node2"].eni)

    table = cluster.cli("status")
    report = json.loads(cluster.cli("status", "--json").stdout)

    assert table.exit_code == 1, table.output  # DEGRADED: one of three tables sends the VIP elsewhere
    assert "DRIFT" in _row(table.stdout, drifted) and "node2" in _row(table.stdout, drifted)
    for other in (cluster.route_tables[0], cluster.route_tables[2]):
        assert "DRIFT" not in _row(table.stdout, other)
    assert {r["route_table_id"]: r["drift"] for r in report["route_tables"]} == {
        cluster.route_tables[0]: False, drifted: True, cluster.route_tables[2]: False}


def test_unhealthy_node_shows_the_reason(cluster: FakeCluster) -> None:
    cluster.agents["node2"].efs_ok = False
    cluster.tick()

    result = cluster.cli("status")

    assert "EFS not writable" in _row(result.stdout, cluster.agents["node2"].instance_id)


def test_health_uses_the_deployed_checker_thresholds(cluster: FakeCluster) -> None:
    """A standby without a watchdog is unhealthy with the default (WATCHDOG=required) but not with the
    function's WATCHDOG=off."""
    node2 = cluster.agents["node2"]
    cluster.clock.on_sleep.append(lambda: cluster.heartbeat(node2, watchdog="off"))
    boto3.client("lambda", region_name=REGION).update_function_configuration(
        FunctionName=FUNCTION, Environment={"Variables": {**cluster.checker_env(), "WATCHDOG": "off"}})

    lenient = json.loads(cluster.cli("status", "--json").stdout)
    boto3.client("lambda", region_name=REGION).update_function_configuration(
        FunctionName=FUNCTION, Environment={"Variables": cluster.checker_env()})
    strict = json.loads(cluster.cli("status", "--json").stdout)

    assert lenient["nodes"]["node2"]["healthy"] is True
    assert strict["nodes"]["node2"]["healthy"] is False
    assert strict["nodes"]["node2"]["problems"] == [
        "watchdog off, timeout 1s (required: armed, or ready while not serving; timeout <= 1s)"]


def test_before_the_checker_first_ran(cluster: FakeCluster) -> None:
    cluster.ddb.delete_item(TableName="EfsHaCluster-state", Key={"pk": {"S": "cluster"}})

    result = cluster.cli("status", "--json")

    assert result.exit_code == 3, result.output  # UNKNOWN: nothing to judge yet
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["verdict"] == "UNKNOWN"
    assert report["cluster"]["phase"] == "uninitialised" and report["cluster"]["active"] is None


def test_agent_text_is_not_read_as_markup(cluster: FakeCluster) -> None:
    cluster.agents["node2"].efs_ok = False
    cluster.clock.on_sleep.append(lambda: cluster.heartbeat(cluster.agents["node2"], efs_ok=False,
                                                            detail="write failed [Errno 5] [bold]EIO"))

    result = cluster.cli("status")

    assert "EFS not writable (write failed [Errno 5] [bold]EIO)" in result.stdout


def test_a_node_held_back_after_a_minio_failure_is_flagged(cluster: FakeCluster) -> None:
    # The checker recorded that node2 lost the role because MinIO failed there a minute ago.
    cluster.put({"pk": "checker", "service_failed_at": {"node2": Decimal(str(cluster.clock.now() - 60.0))},
                 "last_probe_at": Decimal(str(cluster.clock.now()))})

    table = cluster.cli("status")
    report = json.loads(cluster.cli("--json", "status").stdout)

    assert table.exit_code == 1, table.output  # DEGRADED: the only standby is no automatic failover target
    assert "held back until" in table.stdout and "MinIO failed here" in table.stdout
    assert report["nodes"]["node2"]["held_back"] is True and report["nodes"]["node1"]["held_back"] is False


def test_a_node_being_shut_down_is_shown_handing_over_and_a_leaving_standby_as_no_target(
        cluster: FakeCluster) -> None:
    """Issue 12: the active node's shutdown asks for a handover; a leaving standby is never a failover target."""
    leaving_active = lambda: cluster.heartbeat(cluster.agents["node1"], leaving=True)  # noqa: E731
    cluster.clock.on_sleep.append(leaving_active)
    table = cluster.cli("status")
    report = json.loads(cluster.cli("--json", "status").stdout)
    assert "shutting down: handing the role over" in table.stdout
    assert report["nodes"]["node1"]["leaving"] is True and report["nodes"]["node2"]["leaving"] is False
    cluster.clock.on_sleep.remove(leaving_active)
    cluster.clock.on_sleep.append(lambda: cluster.heartbeat(cluster.agents["node2"], leaving=True))
    table = cluster.cli("status")
    assert table.exit_code == 1, table.output  # DEGRADED: no healthy standby
    assert "shutting down (it asked for a handover)" in table.stdout
