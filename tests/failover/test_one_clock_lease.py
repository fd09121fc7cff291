"""Issue 9, holes 1-3: a lease is judged on ONE clock (the checker's), counts as fencing only behind an
enforcing watchdog, and nothing a node's clock or a late-applied write says can shorten it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from failover_lambda.lease import LeaseTracker
from failover_lambda.model import NodeReport
from tests.failover.conftest import LEASE_DEADLINE, Harness


def ssm_unreachable(cluster: Harness) -> None:
    def denied(_: dict[str, Any]) -> None:
        raise ClientError({"Error": {"Code": "InvalidInstanceId", "Message": "not connected"}}, "SendCommand")

    cluster.call_hooks["SendCommand"] = denied


def record_route_writes(cluster: Harness) -> list[float]:
    times: list[float] = []

    def record(_: dict[str, Any]) -> None:
        times.append(cluster.clock.now())

    cluster.call_hooks["ReplaceRoute"] = record
    cluster.call_hooks["CreateRoute"] = record
    return times


def test_a_frozen_agent_that_ssm_cannot_reach_is_fenced_only_at_its_lease_deadline(cluster: Harness) -> None:
    # Given node1's agent freezes while MinIO runs on, its watchdog armed, and SSM cannot reach the node
    node1 = cluster.agent("node1")
    node1.frozen = True
    ssm_unreachable(cluster)
    routes_moved = record_route_writes(cluster)
    # When the checker probes
    cluster.invoke(max_probes=12)
    # Then the VIP moved, but not before the lease deadline on the checker's clock: the last renewal the
    # checker can have seen + LEASE_DEADLINE_SECONDS (the watchdog has reset node1 by then: S1/S3 hold)
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert routes_moved and routes_moved[0] >= node1.last_beat + LEASE_DEADLINE
    assert "lease expired on the checker's clock" in item["reason"]
    assert "watchdog (armed, 1s; node lease 1.5s)" in item["reason"]
    assert "StopInstances" not in cluster.operations()
    assert not node1.serving  # the simulated watchdog reset it


@pytest.mark.parametrize("setup", ["watchdog off in config", "node watchdog timeout too long"])
def test_without_an_enforcing_watchdog_a_frozen_node_is_fenced_only_by_stopping_it(cluster: Harness,
                                                                                      setup: str) -> None:
    # Given a frozen agent whose node has no watchdog the checker may count on
    if setup == "watchdog off in config":
        cluster.configure(WATCHDOG="off")
        for node in ("node1", "node2"):
            cluster.agent(node).watchdog = "off"
        cluster.settle(1)
    else:
        cluster.agent("node1").watchdog_timeout = 10.0  # > WATCHDOG_TIMEOUT_SECONDS: too late to count on
        cluster.settle(1)
    node1 = cluster.agent("node1")
    node1.frozen = True
    ssm_unreachable(cluster)
    routes_moved = record_route_writes(cluster)
    stops: list[float] = []
    cluster.call_hooks["StopInstances"] = lambda _: stops.append(cluster.clock.now())
    # When the checker probes well past the lease deadline
    cluster.invoke(max_probes=12)
    # Then the lease alone fenced nothing: the instance was force-stopped after the fence timeout, and the
    # routes moved only after that (node1 would otherwise still serve: S3 would have caught it)
    item = cluster.cluster()
    assert (item["active"], item["phase"]) == ("node2", "stable")
    assert stops and routes_moved and stops[0] < routes_moved[0]
    assert f"instance {node1.instance_id} is stopped" in item["reason"]
    assert "lease expired" not in item["reason"]


def test_a_dead_node_whose_clock_runs_30s_ahead_is_detected_in_the_normal_time(cluster: Harness) -> None:
    # Given node1's clock runs 30 s ahead (its heartbeat_at looks 30 s in the future) and node1 dies
    node1 = cluster.agent("node1")
    node1.clock_skew = 30.0
    cluster.settle(1)
    node1.alive = False
    died_at = cluster.clock.now()
    # When the checker probes
    result = cluster.invoke(max_probes=10)
    # Then node1 is failed over as fast as with a correct clock: S + k probes + the lease deadline
    assert "failover node1 -> node2" in result["outcomes"]
    item = cluster.cluster()
    assert (item["active"], item["epoch"]) == ("node2", 2)
    assert float(item["changed_at"]) - died_at <= 2 + 3 + LEASE_DEADLINE + 2


def test_a_dead_standby_whose_clock_runs_ahead_is_not_promoted(cluster: Harness) -> None:
    node2 = cluster.agent("node2")
    node2.clock_skew = 30.0
    cluster.settle(1)
    node2.alive = False
    cluster.agent("node1").efs_ok = False
    result = cluster.invoke(max_probes=6)
    assert result["outcomes"][-1] == "no healthy standby"
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)


def test_a_healthy_node_whose_clock_runs_10s_behind_is_never_failed_over(
        cluster: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    # Given both nodes' clocks run 10 s behind the checker's
    for node in ("node1", "node2"):
        cluster.agent(node).clock_skew = -10.0
    cluster.settle(1)
    # When the checker probes for a long time
    result = cluster.invoke(max_probes=20)
    # Then nothing happens, and the skew is reported (metric and status), not judged
    assert set(result["outcomes"]) == {"ok"}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    skews = [json.loads(line)["ClockSkewSeconds"] for line in capsys.readouterr().out.splitlines()
             if '"ClockSkewSeconds"' in line]
    assert skews and all(-11 <= value[0] <= -9 for value in skews)
    status = cluster.invoke({"action": "status"})
    assert status["nodes"]["node1"]["healthy"] is True and status["nodes"]["node2"]["healthy"] is True
    assert -11 <= status["nodes"]["node1"]["clock_skew_seconds"] <= -9


def test_clock_skew_is_a_per_node_metric_with_the_node_health_dimensions(
        cluster: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.agent("node2").clock_skew = 3.0
    cluster.settle(1)
    capsys.readouterr()
    cluster.invoke(max_probes=2)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"ClockSkewSeconds"' in line]
    assert records
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert sorted(directive["Dimensions"][0]) == ["ClusterId", "Node"]
    node2 = [r for r in records if r["Node"] == "node2"]
    assert node2 and all(2 <= v <= 3.5 for r in node2 for v in (r["ClockSkewSeconds"]
                                                                if isinstance(r["ClockSkewSeconds"], list)
                                                                else [r["ClockSkewSeconds"]]))


def test_a_late_applied_heartbeat_cannot_shorten_the_lease(cluster: Harness) -> None:
    # Given node1's agent freezes, and a write its client had given up on is applied late: it carries an
    # older lease_seq and a heartbeat_at 20 s in the past
    node1 = cluster.agent("node1")
    node1.frozen = True
    last_renewal = node1.last_beat
    late = cluster._beat(node1, lease_seq=node1.lease_seq - 2, heartbeat_at=cluster.clock.now() - 20)
    node1.last_beat = last_renewal  # building the late item is not a renewal
    node1.lease_seq -= 1
    cluster.put_item(late)
    ssm_unreachable(cluster)
    routes_moved = record_route_writes(cluster)
    # When the checker probes
    cluster.invoke(max_probes=12)
    # Then the lease still ended only LEASE_DEADLINE_SECONDS after the last real renewal was observed
    assert cluster.cluster()["active"] == "node2"
    assert routes_moved and routes_moved[0] >= last_renewal + LEASE_DEADLINE


class _Clock:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_900_000_000.0

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def _report(seq: int | None, instance: str = "i-1", heartbeat_at: float = 0.0) -> NodeReport:
    return NodeReport.from_item("node1", {"lease_seq": seq, "instance_id": instance, "heartbeat_at": heartbeat_at})


def test_lease_tracker_rules() -> None:
    clock = _Clock()
    tracker = LeaseTracker(clock, stale_seconds=2.0, deadline_seconds=4.0)
    # A first sighting is recorded but not fresh; it starts the expiry clock
    assert tracker.observe([_report(10)]) == []
    assert not tracker.fresh("node1") and not tracker.expired("node1")
    clock.sleep(0.5)
    # A higher lease_seq is a renewal observed now; skew is heartbeat_at minus the checker's wall clock
    assert tracker.observe([_report(11, heartbeat_at=clock.wall + 30)]) == ["node1"]
    assert tracker.fresh("node1") and tracker.skew("node1") == 30
    clock.sleep(3.0)
    # A lower or equal lease_seq (late-applied or rewound write) is no renewal and changes nothing
    assert tracker.observe([_report(9), _report(11)]) == []
    assert not tracker.fresh("node1") and tracker.silent_for("node1") == 3.0
    clock.sleep(1.0)
    assert tracker.expired("node1")
    # Another instance writing the node item starts over: a first sighting again
    tracker.observe([_report(1, instance="i-2")])
    assert not tracker.expired("node1") and not tracker.renewal_seen("node1")
    # A node item without lease_seq never renews
    clock.sleep(0.5)
    tracker.observe([_report(None, instance="i-2")])
    assert not tracker.renewal_seen("node1")


def test_a_serving_node_that_reports_its_watchdog_only_ready_is_not_fenced_by_lease_expiry(
        cluster: Harness) -> None:
    # Given node1's agent was restarted and disarmed the device (it reports `ready`) while MinIO still runs,
    # and then the agent freezes: nothing will reset node1
    node1 = cluster.agent("node1")
    node1.disarmed = True
    cluster.settle(1)
    assert cluster.item("node#node1")["watchdog"] == "ready" and cluster.item("node#node1")["serving"] is True
    node1.frozen = True
    ssm_unreachable(cluster)
    routes_moved = record_route_writes(cluster)
    stops: list[float] = []
    cluster.call_hooks["StopInstances"] = lambda _: stops.append(cluster.clock.now())
    # When the checker probes well past the lease deadline
    cluster.invoke(max_probes=12)
    # Then the expired lease fenced nothing (S3 would catch a VIP moved while node1 serves): node1 was
    # force-stopped first
    item = cluster.cluster()
    assert (item["active"], item["phase"]) == ("node2", "stable")
    assert stops and routes_moved and stops[0] < routes_moved[0]
    assert "lease expired" not in item["reason"]


@pytest.mark.parametrize("lease_seconds", [3.0, None], ids=["older config G=3", "G not reported"])
def test_a_node_whose_own_lease_is_too_long_is_not_fenced_by_lease_expiry(cluster: Harness,
                                                                          lease_seconds: float | None) -> None:
    # Given node1 runs an older config during a rolling change (G = 3 s: 3 + 2 x 1 + 0.5 > D = 4), or an agent
    # that does not report its lease at all; its watchdog is armed with W = 1 s; then its agent freezes
    node1 = cluster.agent("node1")
    node1.lease_seconds = lease_seconds
    cluster.settle(1)
    node1.frozen = True
    if lease_seconds is not None:
        # The S1 model: MinIO on node1 can run until last renewal + 3 + 2 x 1 > last renewal + D
        assert node1.serves_until() > node1.last_beat + LEASE_DEADLINE
    ssm_unreachable(cluster)
    routes_moved = record_route_writes(cluster)
    stops: list[float] = []
    cluster.call_hooks["StopInstances"] = lambda _: stops.append(cluster.clock.now())
    # When the checker probes well past the lease deadline
    cluster.invoke(max_probes=12)
    # Then the expired lease fenced nothing: node1 was force-stopped before the VIP moved
    item = cluster.cluster()
    assert (item["active"], item["phase"]) == ("node2", "stable")
    assert stops and routes_moved and stops[0] < routes_moved[0]
    assert "lease expired" not in item["reason"]
