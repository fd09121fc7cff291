"""`efs-ha status` tells the truth (issue 10): a verdict first, an exit code per verdict, stale data never shown
as live, the checker's liveness, the countdowns and a next step per problem; `--watch`."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from efs_ha_cli import render
from failover_lambda.aws import AwsUnavailable
from failover_lambda.ec2_view import Ec2Reader
from tests.cli.conftest import TABLE, FakeCluster


def _status(cluster: FakeCluster, *args: str) -> tuple[int, str, dict[str, Any]]:
    """(exit code, the table's text, the JSON report), from two runs on the same world."""
    table = cluster.cli("status", *args)
    report = cluster.cli("status", "--json", *args)
    assert table.exception is None or isinstance(table.exception, SystemExit), table.output
    return table.exit_code, table.stdout, json.loads(report.stdout)


def _row(output: str, needle: str) -> str:
    return next(line for line in output.splitlines()[1:] if needle in line and not line.startswith("- "))


def _kill(cluster: FakeCluster, node: str) -> None:
    cluster.agents[node].alive = False


# ----- HEALTHY -----
def test_a_healthy_cluster_is_healthy_first_and_exits_0(cluster: FakeCluster) -> None:
    code, out, report = _status(cluster)

    assert code == 0
    assert out.splitlines()[0] == "HEALTHY"
    assert report["ok"] is True and report["verdict"] == "HEALTHY" and report["exit_code"] == 0
    assert report["reasons"] == [] and report["hints"] == []
    assert report["checker"]["state"] == "probing"
    assert "checker probing" in _row(out, "Checker")
    assert "Next steps" not in out


def test_a_healthy_standbys_stopped_minio_is_neutral(cluster: FakeCluster) -> None:
    code, out, report = _status(cluster)

    node2 = report["nodes"]["node2"]
    assert code == 0 and node2["minio_ok"] is False and node2["healthy"] is True
    assert "stopped" in _row(out, cluster.agents["node2"].instance_id)
    table = render._nodes_table(report)
    minio, serving = table.columns[6]._cells, table.columns[7]._cells
    assert (minio[1], serving[1]) == ("[dim]stopped[/]", "[dim]no[/]")  # not red
    assert (minio[0], serving[0]) == ("[green]yes[/]", "[green]yes[/]")


# ----- DEGRADED -----
def test_a_dead_standby_is_down_with_its_last_report_marked_and_the_cluster_degraded(cluster: FakeCluster) -> None:
    _kill(cluster, "node2")
    cluster.clock.t += 17  # its last write is 17 s old (no hooks run: nobody else writes meanwhile)

    code, out, report = _status(cluster)

    assert code == 1
    assert out.splitlines()[0].startswith("DEGRADED (no failover target: node2 no lease renewal seen; last heartbeat")
    node2 = report["nodes"]["node2"]
    assert (node2["role"], node2["assigned_role"], node2["live"]) == ("down", "standby", False)
    assert node2["last_heartbeat_age_seconds"] >= 17
    row = _row(out, cluster.agents["node2"].instance_id)
    assert row.split()[1] == "down"
    assert "was yes" in row and "standby" not in row  # last-known values, never as live ones
    assert "EFS, MinIO and Serving are its last report" in out and "(node clock)" in out
    instance = cluster.agents["node2"].instance_id
    assert any(f"aws ssm start-session --target {instance} --region eu-west-1" in hint
               and "journalctl -u efs-ha-agent -u minio" in hint for hint in report["hints"])
    assert "Next steps" in out and "aws ssm start-session" in out


def test_a_standby_that_dies_while_watched_shows_how_long_ago_it_was_seen(cluster: FakeCluster) -> None:
    start = cluster.clock.now()

    def die_after_two_refreshes() -> None:
        if cluster.clock.now() - start >= 6:
            _kill(cluster, "node2")

    cluster.clock.on_sleep.append(die_after_two_refreshes)

    result = cluster.cli("status", "--json", "--watch", "--interval", "5", "--refreshes", "5")

    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["verdict"] for r in reports][:2] == ["HEALTHY", "HEALTHY"]
    last = reports[-1]["nodes"]["node2"]
    # Seen renewing by this run, then silent: its age on this machine's clock
    assert last["role"] == "down" and last["lease_renewal_age_seconds"] > 5
    assert reports[-1]["verdict"] == "DEGRADED" and result.exit_code == 1
    assert "no failover target: node2 no lease renewal seen for" in reports[-1]["verdict_line"]


def test_a_held_back_standby_says_until_when_and_how_to_override(cluster: FakeCluster) -> None:
    now = cluster.clock.now()
    cluster.put({"pk": "checker", "service_failed_at": {"node2": Decimal(str(now - 60.0))},
                 "last_probe_at": Decimal(str(now))})

    code, out, report = _status(cluster)

    assert code == 1
    assert "no failover target: node2 held back until" in report["verdict_line"]
    assert report["nodes"]["node2"]["held_back_until"] == pytest.approx(now - 60 + 600)
    assert "(in 9 min)" in report["verdict_line"]
    assert any("`efs-ha switchover --to node2` overrides" in hint for hint in report["hints"])
    assert "`efs-ha switchover --to node2` overrides" in out


def test_maintenance_says_for_how_long_and_how_to_end_it(cluster: FakeCluster) -> None:
    assert cluster.cli("maintenance", "on").exit_code == 0
    cluster.clock.sleep(300)

    code, out, report = _status(cluster)

    assert code == 1
    assert "maintenance on for 5 min" in report["verdict_line"]
    assert "ON for 5 min" in _row(out, "Maintenance")
    assert "`efs-ha maintenance off` when the work is done" in report["hints"]


def test_partial_route_drift_names_the_table_by_its_name_tag(cluster: FakeCluster) -> None:
    names = ["private-a", "private-b", "private-c"]
    for table, name in zip(cluster.route_tables, names, strict=True):
        cluster.ec2.create_tags(Resources=[table], Tags=[{"Key": "Name", "Value": name}])
    drifted = cluster.route_tables[1]
    cluster.set_route(drifted, cluster.agents["node2"].eni)

    code, out, report = _status(cluster)

    assert code == 1
    assert f"VIP route drift in private-b ({drifted}) -> node2" in report["verdict_line"]
    assert [r["name"] for r in report["route_tables"]] == names
    assert f"private-a ({cluster.route_tables[0]})" in out
    assert any("CloudTrail ReplaceRoute" in hint and drifted in hint for hint in report["hints"])


def test_a_silent_checker_degrades_and_says_since_when(cluster: FakeCluster) -> None:
    cluster.checker_probing = False
    cluster.clock.sleep(70)

    code, out, report = _status(cluster)

    assert code == 1
    assert report["checker"]["state"] == "silent" and report["checker"]["age_seconds"] >= 70
    assert "checker silent for 7" in _row(out, "Checker")
    assert "checker silent for" in report["verdict_line"] and "no automatic failover" in report["verdict_line"]
    assert any("CheckerNotRunning" in hint for hint in report["hints"])


def test_the_in_process_checker_records_its_probes_for_status(cluster: FakeCluster) -> None:
    cluster.checker_probing = False  # only the real checker code records from here on
    cluster.clock.sleep(70)
    assert _status(cluster)[0] == 1

    cluster.probe()

    code, _, report = _status(cluster)
    assert code == 0 and report["checker"]["state"] == "probing"


# ----- DOWN -----
def test_a_dead_active_node_is_down(cluster: FakeCluster) -> None:
    _kill(cluster, "node1")
    cluster.put({"pk": "checker", "failures": {"node1": 2}, "last_probe_at": Decimal(str(cluster.clock.now()))})

    code, out, report = _status(cluster)

    assert code == 2
    assert out.splitlines()[0].startswith("DOWN (active node1 down: no lease renewal seen")
    assert "(fails 2/3, failover then)" in report["verdict_line"]
    node1 = report["nodes"]["node1"]
    assert (node1["role"], node1["assigned_role"]) == ("down", "active")
    assert "down (was active)" in _row(out, cluster.agents["node1"].instance_id)
    assert "fails 2/3" in _row(out, "Active node")


def test_minio_stopped_on_the_active_node_with_no_healthy_standby_is_down_not_ok(cluster: FakeCluster) -> None:
    """The issue's case: this exited 0 with "ok": true and green routes."""
    node1 = cluster.agents["node1"]
    cluster.clock.on_sleep.append(lambda: cluster.heartbeat(node1, minio_ok=False, serving=False,
                                                            stop_reason="minio_failed"))
    cluster.agents["node2"].efs_ok = False

    code, _, report = _status(cluster)

    assert code == 2 and report["ok"] is True and report["verdict"] == "DOWN"
    assert "active node1 failing: MinIO not running (stop reason: minio_failed)" in report["verdict_line"]
    assert "no failover target: node2 EFS not writable" in report["verdict_line"]


def test_a_takeover_in_progress_is_down_and_points_at_confirm_fenced(cluster: FakeCluster) -> None:
    cluster.update_cluster(phase="fencing", epoch=2, fencing_node="node1", candidate="node2",
                           changed_at=cluster.clock.now() - 30, active=None)
    item = cluster.item("cluster")
    item.pop("active", None)
    cluster.put(item)

    code, _, report = _status(cluster)

    assert code == 2
    assert "no active node: takeover fencing node1 for 3" in report["verdict_line"]
    assert any("efs-ha confirm-fenced node1 --yes" in hint for hint in report["hints"])


def test_no_route_table_to_the_active_node_is_down(cluster: FakeCluster) -> None:
    for table in cluster.route_tables:
        cluster.set_route(table, cluster.agents["node2"].eni)

    code, _, report = _status(cluster)

    assert code == 2 and "no route table sends the VIP to node1" in report["verdict_line"]


# ----- UNKNOWN -----
def test_before_the_first_checker_run_it_is_not_initialised(cluster: FakeCluster) -> None:
    cluster.checker_probing = False
    for key in ("cluster", "checker"):
        cluster.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": key}})

    code, out, report = _status(cluster)

    assert code == 3
    assert out.splitlines()[0] == "UNKNOWN (not initialised yet (the checker starts within a minute))"
    assert report["verdict"] == "UNKNOWN" and report["checker"]["state"] == "not_initialised"
    assert "epoch 0" not in out.lower() and "fencing ?" not in out and "Epoch / phase" not in out


def test_unreadable_routes_are_unknown(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    def throttled(_self: Ec2Reader) -> None:
        raise AwsUnavailable("DescribeRouteTables",
                             ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow"}},
                                         "DescribeRouteTables"))

    monkeypatch.setattr(Ec2Reader, "_routes", throttled)

    code, out, report = _status(cluster)

    assert code == 3 and report["verdict"] == "UNKNOWN"
    assert "VIP routes unreadable" in report["verdict_line"]
    assert "unknown (EC2 unreadable)" in out


# ----- --watch -----
def test_watch_refreshes_until_the_bound_and_exits_with_the_last_verdict(cluster: FakeCluster) -> None:
    refreshes: list[float] = []
    cluster.clock.on_sleep.append(lambda: refreshes.append(cluster.clock.now()))

    result = cluster.cli("status", "--watch", "--refreshes", "3", "--interval", "2")

    assert result.exit_code == 0, result.output
    assert [line for line in result.stdout.splitlines() if line == "HEALTHY"] == ["HEALTHY"] * 3


def test_watch_stops_on_ctrl_c_with_the_last_verdicts_exit_code(cluster: FakeCluster) -> None:
    state = {"sleeps": 0}
    _kill(cluster, "node2")

    def interrupt_during_the_second_wait() -> None:
        state["sleeps"] += 1
        if state["sleeps"] > 12:
            raise KeyboardInterrupt

    cluster.clock.on_sleep.insert(0, interrupt_during_the_second_wait)

    result = cluster.cli("status", "--watch", "--interval", "2")

    assert result.exit_code == 1  # the last verdict shown: DEGRADED
    assert sum(line.startswith("DEGRADED") for line in result.stdout.splitlines()) >= 1
    assert "Traceback" not in result.output


def test_watch_in_json_prints_one_object_per_line(cluster: FakeCluster) -> None:
    result = cluster.cli("--json", "status", "--watch", "--refreshes", "2")

    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(line)["verdict"] == "HEALTHY" for line in lines)
    assert result.exit_code == 0
