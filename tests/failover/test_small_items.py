"""Issue 9, item 6 and the hold rule: failure counters age, EC2 events are filtered cheaply, the operator can
confirm a fencing that cannot complete (refused against evidence), a takeover that would not fit in the
invocation is deferred (never cut), only `minio_failed` holds a node back, a standby needs its watchdog."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.failover.conftest import Harness


def fail(cluster: Harness, operation: str, code: str = "RequestLimitExceeded") -> None:
    def raise_error(_: dict[str, Any]) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "no"}}, operation)

    cluster.call_hooks[operation] = raise_error


# ----- failure counters age -----
def test_an_old_failure_count_plus_one_blip_after_a_checker_outage_does_not_fail_over(cluster: Harness) -> None:
    # Given two failed probes recorded 10 minutes ago, before the checker stopped running for a while
    now = cluster.clock.now()
    cluster.put_item({"pk": "checker", "failures": {"node1": 2}, "failing_since": {"node1": now - 602},
                      "last_failed_at": {"node1": now - 600}})
    # When node1 has a single blip
    node1 = cluster.agent("node1")
    node1.minio_ok = False
    cluster.settle(1)
    first = cluster.invoke(max_probes=1)
    node1.minio_ok = True
    cluster.settle(1)
    second = cluster.invoke(max_probes=3)
    # Then the old count restarted at 1 and nothing moved
    assert first["outcomes"][0].startswith("node1 failing 1/3")
    assert set(second["outcomes"]) == {"ok"}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)


def test_a_recent_count_goes_on_across_invocations(cluster: Harness) -> None:
    cluster.agent("node1").efs_ok = False
    cluster.settle(1)
    assert cluster.invoke(max_probes=2)["outcomes"][-1].startswith("node1 failing 2/3")
    cluster.clock.sleep(3)  # the hand-over to the next invocation
    assert "failover node1 -> node2" in cluster.invoke(max_probes=2)["outcomes"]


# ----- EC2 state-change events -----
def test_an_ec2_event_for_an_instance_that_is_not_a_node_returns_at_once(cluster: Harness) -> None:
    event = {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
             "detail": {"instance-id": "i-0123456789abcdef0", "state": "stopped"}}
    result = cluster.invoke(event)
    assert result["ok"] is True and "not a cluster node" in result["ignored"]
    assert "outcomes" not in result  # no probe loop
    assert cluster.operations() == ["Scan"]  # one read of the table, no EC2 call


def test_an_ec2_event_for_a_node_starts_the_probe_loop(cluster: Harness) -> None:
    node2 = cluster.agent("node2")
    event = {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
             "detail": {"instance-id": node2.instance_id, "state": "stopping"}}
    result = cluster.invoke(event, max_probes=1)
    assert result["trigger"] == f"ec2 {node2.instance_id} stopping" and result["outcomes"] == ["ok"]


# ----- operator override: confirm_fenced -----
def given_a_fencing_that_stop_instances_cannot_complete(cluster: Harness) -> None:
    """Watchdog off, node1's agent frozen (no renewals, no stop report), StopInstances keeps failing."""
    cluster.configure(WATCHDOG="off")
    for node in ("node1", "node2"):
        cluster.agent(node).watchdog = "off"
    cluster.settle(1)
    cluster.agent("node1").frozen = True
    fail(cluster, "StopInstances", "UnauthorizedOperation")
    result = cluster.invoke(max_probes=4)
    assert "not confirmed yet" in result["outcomes"][-1]
    assert cluster.cluster()["phase"] == "fencing"


def test_confirm_fenced_is_refused_while_ec2_shows_the_instance_running(cluster: Harness) -> None:
    given_a_fencing_that_stop_instances_cannot_complete(cluster)
    result = cluster.invoke({"action": "confirm_fenced", "node": "node1"})
    assert result["ok"] is False and "is running according to EC2" in result["reason"]
    assert cluster.cluster()["phase"] == "fencing"


def test_confirm_fenced_is_refused_when_the_node_renews_its_lease(cluster: Harness) -> None:
    # Given a hung agent that keeps serving and renewing, and StopInstances failing
    node1 = cluster.agent("node1")
    node1.efs_ok = False
    node1.obeys = False
    fail(cluster, "StopInstances")
    cluster.invoke(max_probes=3)
    assert cluster.cluster()["phase"] == "fencing"
    fail(cluster, "DescribeInstances")  # EC2 says nothing: the lease alone must refuse it
    result = cluster.invoke({"action": "confirm_fenced", "node": "node1"})
    assert result["ok"] is False and "renewed its lease while being watched" in result["reason"]
    assert cluster.cluster()["phase"] == "fencing"


def test_confirm_fenced_completes_the_takeover_with_the_operators_confirmation_recorded(cluster: Harness) -> None:
    given_a_fencing_that_stop_instances_cannot_complete(cluster)
    # Given the operator powered node1 off by other means, and EC2 cannot be read right now
    node1 = cluster.agent("node1")
    cluster.stop_instance(node1.instance_id)
    fail(cluster, "DescribeInstances")
    # When the operator confirms it is down
    result = cluster.invoke({"action": "confirm_fenced", "node": "node1"})
    # Then (no renewal seen during LEASE_DEADLINE_SECONDS, EC2 unreadable) the takeover completes
    assert result["ok"] is True and result["to"] == "node2"
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert "confirmed by the operator: node1 is down" in item["reason"]
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}


def test_confirm_fenced_queued_behind_a_probe_loop_is_run_by_it(cluster: Harness) -> None:
    given_a_fencing_that_stop_instances_cannot_complete(cluster)
    cluster.stop_instance(cluster.agent("node1").instance_id)
    fail(cluster, "DescribeInstances")
    cluster.put_item({"pk": "request", "action": "confirm_fenced", "target": "node1",
                      "requested_at": cluster.clock.now(), "request_id": "op-1"})
    cluster.invoke(max_probes=1)
    assert cluster.cluster()["active"] == "node2"
    assert cluster.item("request") == {}


@pytest.mark.parametrize(("event", "reason"), [
    ({"action": "confirm_fenced", "node": "node1"}, "no fencing of node1 is in progress"),
    ({"action": "confirm_fenced", "node": "node9"}, "unknown node 'node9'"),
    ({"action": "confirm_fenced"}, 'confirm_fenced needs "node"'),
])
def test_confirm_fenced_is_refused_without_a_fencing_of_that_node(cluster: Harness, event: Any,
                                                                   reason: str) -> None:
    result = cluster.invoke(event)
    assert result["ok"] is False and reason in result["reason"]
    assert cluster.cluster()["epoch"] == 1


# ----- a takeover never starts unless it fits -----
def test_a_takeover_that_would_not_fit_in_the_invocation_is_deferred_not_cut(cluster: Harness) -> None:
    # Given a loop margin too small for a takeover (as misconfigured), node1 failing, and 30 s left
    cluster.configure(LOOP_SAFETY_MARGIN_SECONDS="5")
    node1 = cluster.agent("node1")
    node1.efs_ok = False
    node1.obeys = False  # hung: fencing would need the fence timeout and a force stop
    result = cluster.invoke(max_probes=5, budget=30)
    # Then no fencing began: the epoch is unchanged and nothing moved
    assert any(o.startswith("takeover deferred: it needs up to") for o in result["outcomes"])
    assert (cluster.cluster()["epoch"], cluster.cluster()["phase"]) == (1, "stable")
    assert "SendCommand" not in cluster.operations()
    # And the next invocation, with its full time, does the takeover
    result = cluster.invoke(max_probes=4)
    assert "failover node1 -> node2" in result["outcomes"]
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)


def test_promotion_after_fencing_is_deferred_when_its_reserve_is_gone(cluster: Harness) -> None:
    # Given a fencing left unconfirmed, then node1's instance is stopped (confirmable at the next look)
    given_a_fencing_that_stop_instances_cannot_complete(cluster)
    cluster.stop_instance(cluster.agent("node1").instance_id)
    # When a run with less time left than promote + routes need resumes it
    cluster.configure(LOOP_SAFETY_MARGIN_SECONDS="5")
    result = cluster.invoke(max_probes=1, budget=20)
    # Then fencing is confirmed but nothing is promoted and no route is touched: the next run does both
    assert "promotion deferred" in result["outcomes"][0]
    assert cluster.cluster()["phase"] == "fencing"
    assert not {"ReplaceRoute", "CreateRoute"} & set(cluster.operations())
    cluster.invoke(max_probes=1)
    assert (cluster.cluster()["active"], cluster.cluster()["phase"]) == ("node2", "stable")


# ----- the no-ping-pong hold -----
@pytest.mark.parametrize(("stop_reason", "held"), [
    ("minio_failed", True), ("lease_lost", False), ("role_lost", False), ("agent_stopped", False)])
def test_only_minio_failed_puts_the_old_active_node_on_hold(cluster: Harness, stop_reason: str,
                                                            held: bool) -> None:
    # Given node1 stopped MinIO for `stop_reason` (EFS and the node otherwise fine)
    cluster.agent("node1").stopped_for = stop_reason
    # When the checker fails over
    cluster.invoke(max_probes=10)
    assert cluster.cluster()["active"] == "node2"
    # Then only a MinIO failure holds node1 back as a failover target
    assert ("node1" in cluster.item("checker").get("service_failed_at", {})) is held


# ----- a standby needs its watchdog -----
@pytest.mark.parametrize("watchdog", ["unavailable", "off"])
def test_a_standby_without_a_working_watchdog_is_no_failover_target(cluster: Harness, watchdog: str) -> None:
    cluster.agent("node2").watchdog = watchdog
    cluster.settle(1)
    cluster.agent("node1").efs_ok = False
    result = cluster.invoke(max_probes=5)
    assert result["outcomes"][-1] == "no healthy standby"
    assert cluster.cluster()["epoch"] == 1
    status = cluster.invoke({"action": "status"})
    assert any(p.startswith(f"watchdog {watchdog}") for p in status["nodes"]["node2"]["problems"])
