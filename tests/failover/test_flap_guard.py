"""A MinIO that cannot run anywhere must not bounce the role between the nodes (no ping-pong)."""

from __future__ import annotations

from tests.failover.conftest import Harness


def test_a_node_that_lost_the_role_to_a_minio_failure_is_not_an_automatic_target_again(cluster: Harness) -> None:
    # Given MinIO fails on node1 and the role moves to node2
    cluster.agent("node1").minio_ok = False
    cluster.invoke(max_probes=8)
    assert cluster.cluster()["active"] == "node2"
    # When MinIO fails on node2 as well (the same bad release, say)
    cluster.agent("node2").minio_ok = False
    cluster.invoke(max_probes=30)
    # Then the role stays on node2: no move back to node1, an alert instead, and status says why
    assert cluster.cluster()["active"] == "node2"
    assert int(cluster.cluster()["epoch"]) == 2
    assert cluster.metric_total("NoHealthyStandby") >= 1
    status = cluster.invoke({"action": "status"})
    assert status["nodes"]["node1"]["held_back"] is True
    assert status["nodes"]["node2"]["held_back"] is False


def test_a_node_that_failed_for_other_reasons_remains_a_target(cluster: Harness) -> None:
    # Given node1 lost the role because its EFS writes failed (a node problem, visible in its own health)
    cluster.agent("node1").efs_ok = False
    cluster.invoke(max_probes=8)
    assert cluster.cluster()["active"] == "node2"
    # When node1 recovers and node2 then fails
    cluster.agent("node1").efs_ok = True
    cluster.invoke(max_probes=3)
    cluster.agent("node2").efs_ok = False
    cluster.invoke(max_probes=10)
    # Then the role goes back to node1: the hold applies only to MinIO failures
    assert cluster.cluster()["active"] == "node1"


def test_a_planned_switchover_ignores_the_hold(cluster: Harness) -> None:
    cluster.agent("node1").minio_ok = False
    cluster.invoke(max_probes=8)
    cluster.agent("node1").minio_ok = True
    result = cluster.invoke({"action": "switchover", "target": "node1"})
    assert result["ok"] is True and cluster.cluster()["active"] == "node1"
