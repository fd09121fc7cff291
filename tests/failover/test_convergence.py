"""Concurrent runs, interrupted runs, route drift and replaced instances all converge on the table's view."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from failover_lambda import handler as handler_module
from tests.failover.conftest import SCHEDULED_EVENT, VIP_CIDR, FakeContext, Harness


class LambdaKilled(BaseException):
    """Stands in for the Lambda runtime killing the invocation (not an Exception the code could catch)."""


def is_begin_fencing(params: dict[str, Any]) -> bool:
    return str(params.get("UpdateExpression", "")).startswith("SET phase = :fencing")


def test_two_concurrent_runs_bump_the_epoch_exactly_once(cluster: Harness) -> None:
    """Two runs can still overlap although the loop lease keeps one probe loop: a holder frozen mid-takeover
    whose lease expired meanwhile (or one run's clock ahead of the other's). The epoch write decides."""
    # Given node1 failed twice already, so the next failed probe of either run decides a takeover
    cluster.agent("node1").alive = False
    cluster.settle(3)
    cluster.put_item({"pk": "checker", "failures": {"node1": 2}, "failing_since": {"node1": cluster.clock.now()},
                      "last_failed_at": {"node1": cluster.clock.now()}})
    a_waiting, b_done = threading.Event(), threading.Event()
    fence_writes: list[str] = []

    def hold_run_a(params: dict[str, Any]) -> None:
        if is_begin_fencing(params):
            fence_writes.append(threading.current_thread().name)
            if threading.current_thread().name == "run-a":
                a_waiting.set()
                assert b_done.wait(30)

    cluster.call_hooks["UpdateItem"] = hold_run_a
    cluster.configure(MAX_PROBES="4")
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            results[name] = handler_module.handler(SCHEDULED_EVENT, FakeContext(cluster.clock, 120))
        finally:
            if name == "run-b":
                b_done.set()

    # When run A has read epoch 1 and is about to write, and freezes there until its loop lease has expired,
    # run B takes the loop over and does the whole takeover
    run_a = threading.Thread(target=run, args=("run-a",), name="run-a")
    run_a.start()
    assert a_waiting.wait(30)
    run_b = threading.Thread(target=run, args=("run-b",), name="run-b")
    run_b.start()
    run_b.join(30)
    run_a.join(30)
    # Then both tried, one won: a single epoch bump, a single failover, and A lost the conditional write
    assert sorted(fence_writes) == ["run-a", "run-b"]
    # (B's wait for the expiry aged A's count out: B counts its own three failed probes)
    assert results["run-b"]["outcomes"][2] == "failover node1 -> node2"
    assert results["run-a"]["outcomes"] == ["lost race"]
    # And A, thawed, probed no more: its next cycle's read showed B's lease
    assert results["run-a"]["ended"].startswith("lost the probe-loop lease")
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert cluster.metric_total("Failovers") == 1
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}


def test_a_run_killed_mid_route_move_is_completed_by_the_next_run(cluster: Harness) -> None:
    # Given the Lambda is killed while one table's ReplaceRoute of a takeover is in flight
    doomed = cluster.route_tables[1]

    def kill_on_doomed(params: dict[str, Any]) -> None:
        if params["RouteTableId"] == doomed:
            raise LambdaKilled

    cluster.call_hooks["ReplaceRoute"] = kill_on_doomed
    cluster.agent("node1").efs_ok = False
    with pytest.raises(LambdaKilled):
        cluster.invoke(max_probes=6)
    # Then the writes sent alongside it landed: only the doomed table is left behind on node1
    node1_eni, node2_eni = cluster.agent("node1").eni, cluster.agent("node2").eni
    assert cluster.routes() == {t: node1_eni if t == doomed else node2_eni for t in cluster.route_tables}
    assert cluster.cluster()["active"] == "node2"
    # When the next run starts
    del cluster.call_hooks["ReplaceRoute"]
    result = cluster.invoke(max_probes=1)
    # Then drift repair converges every table on the active node; the epoch did not change again
    assert result["outcomes"] == ["drift repaired in 1 table(s)"]
    assert set(cluster.routes().values()) == {node2_eni}
    assert cluster.cluster()["epoch"] == 2
    assert cluster.metric_total("RouteDriftRepaired") == 1


def test_every_table_is_moved_at_once_when_one_replace_route_fails_and_the_next_run_converges(
        cluster: Harness) -> None:
    # Given the first table's ReplaceRoute fails with an AWS error, and the first writes of the takeover only
    # go through once all three are in flight together (a one-after-another move would never get there)
    failing, others = cluster.route_tables[0], cluster.route_tables[1:]
    in_flight = threading.Barrier(len(cluster.route_tables), timeout=30)
    attempts: list[str] = []

    def first_table_fails(params: dict[str, Any]) -> None:
        attempts.append(params["RouteTableId"])
        if len(attempts) <= len(cluster.route_tables):
            in_flight.wait()
        if params["RouteTableId"] == failing:
            raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "Rate exceeded"}},
                              "ReplaceRoute")

    cluster.call_hooks["ReplaceRoute"] = first_table_fails
    cluster.agent("node1").efs_ok = False
    result = cluster.invoke(max_probes=6)
    # Then every table was attempted in the takeover; the failure hid neither the others' moves nor itself
    assert sorted(attempts[:3]) == sorted(cluster.route_tables)
    assert "failover node1 -> node2" in result["outcomes"]
    node1_eni, node2_eni = cluster.agent("node1").eni, cluster.agent("node2").eni
    assert cluster.routes() == {failing: node1_eni, **dict.fromkeys(others, node2_eni)}
    [moved] = [m["body"] for m in cluster.sns_messages() if "route_failures" in m["body"]]
    assert sorted(moved["routes_changed"]) == sorted(others)
    assert list(moved["route_failures"]) == [failing]
    assert moved["route_failures"][failing].startswith("RequestLimitExceeded")
    # When the AWS error clears and the next run starts
    del cluster.call_hooks["ReplaceRoute"]
    result = cluster.invoke(max_probes=1)
    # Then drift repair moves the one table left behind, and nothing else changes
    assert result["outcomes"] == ["drift repaired in 1 table(s)"]
    assert set(cluster.routes().values()) == {node2_eni}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)


def test_route_drift_is_repaired_and_counted(cluster: Harness) -> None:
    # Given someone pointed one table at node2 and deleted the VIP route from another
    node1, node2 = cluster.agent("node1"), cluster.agent("node2")
    cluster.set_route(cluster.route_tables[0], node2.eni)
    cluster.ec2.delete_route(RouteTableId=cluster.route_tables[1], DestinationCidrBlock=VIP_CIDR)
    # When the checker runs
    result = cluster.invoke(max_probes=2)
    # Then both are back on node1 (the missing route was created), the rest untouched, nothing failed over
    assert result["outcomes"] == ["drift repaired in 2 table(s)", "ok"]
    assert set(cluster.routes().values()) == {node1.eni}
    assert sorted(p["RouteTableId"] for o, p in cluster.calls if o in ("ReplaceRoute", "CreateRoute")) == sorted(
        cluster.route_tables[:2])
    assert "CreateRoute" in cluster.operations()
    assert cluster.metric_total("RouteDriftRepaired") == 2
    assert cluster.cluster()["epoch"] == 1


def test_a_longer_address_sharing_the_vip_prefix_is_never_mistaken_for_the_vip(cluster: Harness) -> None:
    # Given look-alikes 172.16.0.10/32 and 172.16.0.100/32: only the exact 172.16.0.1/32 is the VIP
    node1, node2 = cluster.agent("node1"), cluster.agent("node2")
    table = cluster.route_tables[2]
    cluster.ec2.delete_route(RouteTableId=table, DestinationCidrBlock=VIP_CIDR)
    cluster.ec2.create_route(RouteTableId=table, DestinationCidrBlock="172.16.0.10/32", NetworkInterfaceId=node2.eni)
    cluster.ec2.create_route(RouteTableId=table, DestinationCidrBlock="172.16.0.100/32",
                             NetworkInterfaceId=node1.eni)
    # When the checker runs
    cluster.invoke(max_probes=1)
    # Then the VIP route was created, and the look-alike routes were left exactly as they were
    routes = cluster.ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
    targets = {r["DestinationCidrBlock"]: r.get("NetworkInterfaceId") for r in routes}
    assert targets[VIP_CIDR] == node1.eni
    assert targets["172.16.0.10/32"] == node2.eni
    assert targets["172.16.0.100/32"] == node1.eni
    status = cluster.invoke({"action": "status"})
    assert [t["drift"] for t in status["route_tables"]] == [False, False, False]


def test_a_replaced_node_is_picked_up_and_routes_follow_the_table_not_node1(cluster: Harness) -> None:
    # Given node2 is active after a switchover
    assert cluster.invoke({"action": "switchover", "target": "node2"})["ok"] is True
    old_node1 = cluster.agent("node1")
    # When a deploy replaces node1 (new instance, new ENI) and resets every VIP route to the new node1
    cluster.terminate_instance(old_node1.instance_id)
    new_node1 = cluster.launch("node1", cluster.subnets[2])
    for table in cluster.route_tables:
        cluster.set_route(table, new_node1.eni)
    cluster.settle(2)
    cluster.invoke(max_probes=2)
    # Then the routes go back to the active node2: the table is authoritative, the template is not
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)
    assert new_node1.serving is False
    # And when node2 later fails, the takeover uses node1's new instance and ENI
    cluster.agent("node2").efs_ok = False
    cluster.invoke(max_probes=6)
    item = cluster.cluster()
    assert (item["active"], item["active_instance"], item["epoch"]) == ("node1", new_node1.instance_id, 3)
    assert set(cluster.routes().values()) == {new_node1.eni}
    status = cluster.invoke({"action": "status"})
    assert status["nodes"]["node1"]["eni"] == new_node1.eni


def test_a_second_instance_of_the_active_node_never_serves_alongside_the_first(cluster: Harness) -> None:
    # Given a deploy starts a replacement node1 instance while the old one still serves
    old = cluster.agent("node1")
    replacement = cluster.launch("node1", cluster.subnets[2])
    cluster.settle(3)
    # Then the replacement does not serve: the role is bound to the old instance (S1 is checked every tick)
    assert old.serving and not replacement.serving
    # When the deploy terminates the old instance
    cluster.terminate_instance(old.instance_id)
    cluster.invoke(max_probes=6)
    # Then the checker sees the role's instance gone and fails over to the standby, not to the twin
    item = cluster.cluster()
    assert (item["active"], item["epoch"]) == ("node2", 2)
    assert f"instance {old.instance_id} is" in item["reason"]
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}


def test_drift_is_seen_through_the_cached_route_view_within_its_age_plus_one_probe(cluster: Harness) -> None:
    # README / docs ("Drift repair"): the route tables are described every EC2_CACHE_SECONDS (5 s), so an edit
    # made right after a describe is put back within that plus one probe interval, not within one probe.
    node1, node2 = cluster.agent("node1"), cluster.agent("node2")
    drifted_at: list[float] = []
    repaired_at: list[float] = []

    def drift_after_the_first_cycle(_: Any) -> None:
        if not drifted_at and "DescribeRouteTables" in cluster.operations():
            cluster.set_route(cluster.route_tables[0], node2.eni)
            drifted_at.append(cluster.clock.now())

    cluster.call_hooks["Scan"] = drift_after_the_first_cycle
    cluster.call_hooks["ReplaceRoute"] = lambda _: repaired_at.append(cluster.clock.now())
    cluster.invoke(max_probes=10)
    assert drifted_at and repaired_at
    delay = repaired_at[0] - drifted_at[0]
    assert 4.0 <= delay <= 5.0 + 1.0, delay
    assert set(cluster.routes().values()) == {node1.eni}
