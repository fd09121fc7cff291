"""Graceful handover (issue 12): a node being shut down reports `leaving`; the checker moves the role to a healthy
standby in a planned switchover (no fencing by force), never picks a leaving node, and alerts when nothing can
take over."""

from __future__ import annotations

import json

from tests.failover.conftest import Harness


def test_a_leaving_active_node_is_switched_over_to_the_standby(cluster: Harness) -> None:
    cluster.agent("node1").leaving = True
    result = cluster.invoke(max_probes=4)
    assert result["ok"] is True
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert "handover" in item["reason"] and "node1 is shutting down" in item["reason"]
    assert "serving=false at epoch 2" in item["reason"]  # node1's agent stopped MinIO the planned way
    assert "StopInstances" not in cluster.operations()
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert cluster.metric_total("Switchovers") == 1 and cluster.metric_total("Failovers") == 0
    assert cluster.agent("node1").serving is False and cluster.agent("node2").serving is True
    cluster.check_invariants()


def test_a_leaving_standby_is_never_made_active(cluster: Harness) -> None:
    cluster.agent("node2").leaving = True
    cluster.agent("node1").efs_ok = False
    cluster.invoke(max_probes=8)
    assert cluster.cluster()["active"] == "node1"
    assert cluster.agent("node2").serving is False
    status = cluster.invoke({"action": "status"})
    assert "shutting down" in "; ".join(status["nodes"]["node2"]["problems"])
    assert cluster.invoke({"action": "switchover", "target": "node2"})["ok"] is False


def test_a_leaving_active_node_without_a_healthy_standby_keeps_the_role_and_alerts_once(cluster: Harness) -> None:
    cluster.agent("node1").leaving = True
    cluster.agent("node2").efs_ok = False
    cluster.invoke(max_probes=6)
    item = cluster.cluster()
    assert (item["active"], item["epoch"]) == ("node1", 1)
    assert cluster.agent("node1").serving is True  # it serves until the OS stops it: then the checker fails over
    alerts = [m for m in cluster.sns_messages() if "shutting down" in json.dumps(m["body"])]
    assert len(alerts) == 1
    assert "no healthy standby" in alerts[0]["subject"]


def test_with_maintenance_on_a_leaving_active_node_is_not_switched_over(cluster: Harness) -> None:
    cluster.update_cluster(maintenance=True)
    cluster.agent("node1").leaving = True
    cluster.invoke(max_probes=4)
    assert cluster.cluster()["active"] == "node1"
    assert cluster.metric_total("Switchovers") == 0
