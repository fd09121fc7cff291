"""Operator actions: status, planned switchover, maintenance mode, queued requests, bad input."""

from __future__ import annotations

import json

import pytest

from tests.failover.conftest import VIP_CIDR, Harness


def test_status_reports_cluster_nodes_and_routes_as_json(cluster: Harness) -> None:
    node1, node2 = cluster.agent("node1"), cluster.agent("node2")
    cluster.set_route(cluster.route_tables[1], node2.eni)
    status = cluster.invoke({"action": "status"})
    json.dumps(status)  # serialisable as is
    assert status["ok"] is True and status["vip"] == VIP_CIDR
    assert {k: status["cluster"][k] for k in ("active", "epoch", "phase", "maintenance")} == {
        "active": "node1", "epoch": 1, "phase": "stable", "maintenance": False}
    first = status["nodes"]["node1"]
    assert (first["instance_id"], first["eni"], first["role"]) == (node1.instance_id, node1.eni, "active")
    assert first["private_ip"].startswith("10.0.110.")
    assert (first["efs_ok"], first["minio_ok"], first["serving"], first["healthy"]) == (True, True, True, True)
    assert 0 <= first["lease_renewal_age_seconds"] < 2 and first["lease_fresh"] is True
    assert first["clock_skew_seconds"] is not None and abs(first["clock_skew_seconds"]) < 1
    second = status["nodes"]["node2"]
    assert (second["role"], second["serving"], second["healthy"]) == ("standby", False, True)
    tables = {t["route_table_id"]: t for t in status["route_tables"]}
    assert list(tables) == cluster.route_tables
    assert tables[cluster.route_tables[0]] == {"route_table_id": cluster.route_tables[0], "present": True,
                                               "known": True,
                                               "target_eni": node1.eni, "target_node": "node1", "drift": False}
    assert (tables[cluster.route_tables[1]]["target_node"], tables[cluster.route_tables[1]]["drift"]) == (
        "node2", True)
    # status only reports: the drifted route is still there
    assert cluster.routes()[cluster.route_tables[1]] == node2.eni


def test_status_marks_an_unhealthy_node_with_its_problems(cluster: Harness) -> None:
    cluster.agent("node2").efs_ok = False
    cluster.settle(1)
    node2 = cluster.invoke({"action": "status"})["nodes"]["node2"]
    assert node2["healthy"] is False
    assert node2["problems"] == ["EFS not writable (sim)"]


def test_switchover_moves_the_vip_after_the_old_node_stops_by_itself(cluster: Harness) -> None:
    result = cluster.invoke({"action": "switchover", "target": "node2"})
    assert result["ok"] is True
    assert (result["from"], result["to"], result["epoch"]) == ("node1", "node2", 2)
    assert result["seconds"] >= 0 and result["routes_ok"] is True
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert "serving=false at epoch 2" in item["reason"]  # node1's agent stopped MinIO itself
    assert "StopInstances" not in cluster.operations()
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert cluster.agent("node1").serving is False
    assert cluster.metric_total("Switchovers") == 1 and cluster.metric_total("Failovers") == 0
    assert any("switchover node1 -> node2" in m["subject"] for m in cluster.sns_messages())


@pytest.mark.parametrize(("target", "reason"), [
    ("node9", "unknown node 'node9'"),
    ("node1", "node1 is already active"),
])
def test_switchover_refused_for_unknown_or_active_target(cluster: Harness, target: str, reason: str) -> None:
    result = cluster.invoke({"action": "switchover", "target": target})
    assert result["ok"] is False and reason in result["reason"]
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)


def test_switchover_refused_for_an_unhealthy_target(cluster: Harness) -> None:
    cluster.agent("node2").alive = False
    cluster.settle(4)
    result = cluster.invoke({"action": "switchover", "target": "node2"})
    assert result == {"ok": False,
                      "reason": "node2 is not healthy: no lease renewal seen for 2.0s (since first read)"}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    assert set(cluster.routes().values()) == {cluster.agent("node1").eni}


def test_maintenance_mode_suppresses_failover_and_route_changes(cluster: Harness) -> None:
    # Given maintenance is on, a route was edited, and then node1 fails
    assert cluster.invoke({"action": "maintenance", "enabled": True}) == {"ok": True, "maintenance": True}
    assert cluster.cluster()["maintenance"] is True
    cluster.set_route(cluster.route_tables[0], cluster.agent("node2").eni)
    cluster.agent("node1").efs_ok = False
    # When the checker probes well past the threshold
    result = cluster.invoke(max_probes=8)
    # Then it records the failures but moves nothing, not even the drifted route
    assert result["outcomes"][-1] == "maintenance: node1 failing (8 probes)"
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    assert cluster.routes()[cluster.route_tables[0]] == cluster.agent("node2").eni
    assert not {"ReplaceRoute", "CreateRoute", "SendCommand"} & set(cluster.operations())
    # And once maintenance ends, the next probe fails over at once
    assert cluster.invoke({"action": "maintenance", "enabled": False})["maintenance"] is False
    cluster.invoke(max_probes=1)
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}


def test_a_queued_switchover_request_is_executed_and_removed(cluster: Harness) -> None:
    cluster.put_item({"pk": "request", "action": "switchover", "target": "node2",
                      "requested_at": cluster.clock.now(), "request_id": "req-42"})
    result = cluster.invoke(max_probes=2)
    assert result["ok"] is True
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)
    assert cluster.item("request") == {}
    queued = [m for m in cluster.sns_messages() if "queued switchover" in m["subject"]]
    assert queued[0]["body"]["request_id"] == "req-42"
    assert queued[0]["body"]["result"]["ok"] is True


@pytest.mark.parametrize("operator_clock_offset", [-3600.0, 3600.0])
def test_the_operators_clock_decides_nothing_about_a_queued_request(cluster: Harness,
                                                                     operator_clock_offset: float) -> None:
    # Given a request queued by an operator whose clock is an hour off (either way)
    cluster.put_item({"pk": "request", "action": "switchover", "target": "node2",
                      "requested_at": cluster.clock.now() + operator_clock_offset, "request_id": "skewed"})
    # When the checker probes, it claims and runs it like any other: requested_at is display only
    cluster.invoke(max_probes=1)
    assert cluster.item("request") == {}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)


def test_the_checker_claims_a_request_with_a_conditional_write_before_running_it(cluster: Harness) -> None:
    cluster.put_item({"pk": "request", "action": "switchover", "target": "node2",
                      "requested_at": cluster.clock.now(), "request_id": "r1"})
    cluster.invoke(max_probes=1)
    claims = [i for i, (op, p) in enumerate(cluster.calls) if op == "UpdateItem"
              and p["UpdateExpression"] == "SET taken_at = :now"]
    fence = next(i for i, (op, p) in enumerate(cluster.calls) if op == "UpdateItem"
                 and p["UpdateExpression"].startswith("SET phase = :fencing"))
    assert len(claims) == 1 and claims[0] < fence
    assert "attribute_not_exists(taken_at)" in cluster.calls[claims[0]][1]["ConditionExpression"]


def test_a_request_withdrawn_before_the_claim_is_not_run(cluster: Harness) -> None:
    cluster.put_item({"pk": "request", "action": "switchover", "target": "node2",
                      "requested_at": cluster.clock.now(), "request_id": "r1"})

    def withdraw_first(params: dict[str, object]) -> None:
        if params.get("UpdateExpression") == "SET taken_at = :now":
            cluster.ddb.delete_item(TableName=cluster.table, Key={"pk": {"S": "request"}})

    cluster.call_hooks["UpdateItem"] = withdraw_first
    cluster.invoke(max_probes=1)
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)


def test_a_request_taken_by_a_run_that_died_is_not_run_twice(cluster: Harness) -> None:
    cluster.put_item({"pk": "request", "action": "switchover", "target": "node2",
                      "requested_at": cluster.clock.now(), "request_id": "r1", "taken_at": cluster.clock.now()})
    cluster.invoke(max_probes=1)
    assert cluster.item("request") == {}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    assert any("ended before finishing" in str(m["body"]["result"]) for m in cluster.sns_messages())


@pytest.mark.parametrize(("event", "reason"), [
    ("not a dict", "the event must be a JSON object"),
    ({"action": "reboot"}, "unknown action 'reboot'"),
    ({"action": "switchover"}, 'switchover needs "target"'),
    ({"action": "maintenance", "enabled": "yes"}, 'maintenance needs "enabled": true or false'),
])
def test_bad_events_get_a_reason_not_a_traceback(cluster: Harness, event: object, reason: str) -> None:
    result = cluster.invoke(event)
    assert result["ok"] is False and reason in result["reason"]


def test_the_first_run_creates_the_cluster_item_once(cluster: Harness) -> None:
    cluster.ddb.delete_item(TableName=cluster.table, Key={"pk": {"S": "cluster"}})
    cluster.invoke({"action": "status"})
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"], item["maintenance"]) == ("node1", 1, "stable", False)
    assert item["active_instance"] == cluster.agent("node1").instance_id
    # a second bootstrap attempt must not overwrite a live item
    cluster.update_cluster(epoch=7)
    cluster.invoke({"action": "status"})
    assert cluster.cluster()["epoch"] == 7
    assert any(p.get("ConditionExpression") == "attribute_not_exists(pk)" for _, p in cluster.calls)
