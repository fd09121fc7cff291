"""`efs-ha confirm-fenced NODE --yes`: the operator's override for a fencing that cannot be confirmed."""

from __future__ import annotations

import json

from tests.cli.conftest import TABLE, FakeCluster


def given_node1_fencing_stuck(cluster: FakeCluster) -> None:
    """A takeover from node1 to node2 waits in phase fencing; node1's agent no longer renews anything."""
    node1 = cluster.agents["node1"]
    node1.alive = False
    node1.serving = False
    cluster.update_cluster(phase="fencing", epoch=2, fencing_node="node1", fencing_instance=node1.instance_id,
                           candidate="node2", changed_at=cluster.clock.now(), reason="failover: node1 failed")
    cluster.ddb.update_item(TableName=TABLE, Key={"pk": {"S": "cluster"}},
                            UpdateExpression="REMOVE active, active_instance")


def test_without_yes_nothing_is_sent(cluster: FakeCluster) -> None:
    given_node1_fencing_stuck(cluster)
    result = cluster.cli("confirm-fenced", "node1")
    assert result.exit_code == 4  # refused
    assert "Re-run with --yes" in result.stderr
    assert cluster.lambda_client.events == []


def test_refused_when_no_fencing_of_that_node_is_in_progress(cluster: FakeCluster) -> None:
    result = cluster.cli("confirm-fenced", "node1", "--yes")
    assert result.exit_code == 4  # refused
    assert "no fencing of node1 is in progress" in result.stderr
    assert cluster.lambda_client.events == []


def test_refused_by_the_checker_while_ec2_shows_the_instance_running(cluster: FakeCluster) -> None:
    given_node1_fencing_stuck(cluster)
    result = cluster.cli("confirm-fenced", "node1", "--yes")
    assert result.exit_code == 4  # refused
    assert "confirm-fenced node1 refused:" in result.stderr and "running according to EC2" in result.stderr
    assert cluster.item("cluster")["phase"] == "fencing"


def test_completes_the_takeover_once_node1_is_really_down(cluster: FakeCluster) -> None:
    given_node1_fencing_stuck(cluster)
    cluster.ec2.stop_instances(InstanceIds=[cluster.agents["node1"].instance_id])  # powered off by the operator
    result = cluster.cli("--json", "confirm-fenced", "node1", "--yes")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["ok"], answer["active"], answer["queued"]) == (True, "node2", False)
    assert cluster.lambda_client.events == [{"action": "confirm_fenced", "node": "node1"}]
    item = cluster.item("cluster")
    assert (item["active"], item["phase"]) == ("node2", "stable")
    assert "confirmed by the operator" in item["reason"]
    assert set(cluster.routes().values()) == {cluster.agents["node2"].eni}


def test_queued_when_the_checker_is_busy_and_run_by_its_probe_loop(cluster: FakeCluster) -> None:
    given_node1_fencing_stuck(cluster)
    cluster.ec2.stop_instances(InstanceIds=[cluster.agents["node1"].instance_id])
    cluster.lambda_client.mode = "throttled"
    queued: list[dict[str, object]] = []
    running = [False]

    def probe_loop_next_cycle() -> None:
        request = cluster.item("request")
        if request and not running[0]:
            running[0] = True
            queued.append(request)
            cluster.probe()
            running[0] = False

    cluster.clock.on_sleep.append(probe_loop_next_cycle)
    result = cluster.cli("--json", "confirm-fenced", "node1", "--yes")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["queued"] is True
    assert queued[0]["action"] == "confirm_fenced" and queued[0]["target"] == "node1"
    assert cluster.item("cluster")["active"] == "node2"
    assert cluster.item("request") == {}
