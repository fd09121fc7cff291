"""Graceful handover (issue 12): a node being shut down reports `leaving`; the checker moves the role to a healthy
standby in a planned switchover (no fencing by force), never picks a leaving node, and alerts when nothing can
take over."""

from __future__ import annotations

import json
from typing import Any

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


def test_an_alert_written_meanwhile_never_erases_what_another_run_recorded(cluster: Harness) -> None:
    """Runs overlap since the loop lease (an operator action beside the probe loop): the no-standby alert's
    bookkeeping must not rewrite the checker item from this run's older read and drop a hold or a failure count
    another run recorded meanwhile. Failed before the fix (a whole-item PutItem; review finding 8)."""
    cluster.agent("node1").leaving = True
    cluster.agent("node2").efs_ok = False

    def another_run_records_a_hold(_params: dict[str, Any]) -> None:
        item = cluster.item("checker")
        cluster.put_item({**item, "pk": "checker", "service_failed_at": {"node2": cluster.clock.now()}})

    cluster.call_hooks["Publish"] = another_run_records_a_hold
    cluster.invoke(max_probes=2)
    cluster.call_hooks.clear()
    assert "node2" in cluster.item("checker").get("service_failed_at", {})


def test_a_failed_probe_count_never_erases_a_hold_another_run_recorded(cluster: Harness) -> None:
    """The failure counters are written as their own attributes, never as the whole checker item from this run's
    earlier read (second review: a count erased a no-ping-pong hold an overlapping run had just recorded)."""
    cluster.invoke(max_probes=1)
    cluster.agent("node1").efs_ok = False
    cluster.settle(1)
    recorded: list[bool] = []

    def another_run_records_a_hold(params: dict[str, Any]) -> None:
        key = (params.get("Key") or params.get("Item") or {}).get("pk", {}).get("S")
        if key == "checker" and not recorded:
            recorded.append(True)
            item = cluster.item("checker")
            cluster.put_item({**item, "pk": "checker", "service_failed_at": {"node2": cluster.clock.now()}})

    cluster.call_hooks["PutItem"] = another_run_records_a_hold
    cluster.call_hooks["UpdateItem"] = another_run_records_a_hold
    result = cluster.invoke(max_probes=1)
    cluster.call_hooks.clear()
    assert result["outcomes"][0].startswith("node1 failing 1/3")
    checker = cluster.item("checker")
    assert "node2" in checker.get("service_failed_at", {}) and checker["failures"] == {"node1": 1}
