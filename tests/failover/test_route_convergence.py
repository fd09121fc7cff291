"""Review finding 4 (liveness): once the table names a new active node, the VIP follows it even when every
EC2 Describe* is throttled, a promote's response is lost (the SDK's resend fails its condition), or the checker
dies between the promote and the route writes. The cluster item's `routes_epoch` records the epoch whose routes
were all written; while it is behind `epoch`, every cycle writes the VIP route in every table."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.failover.conftest import Harness


class CheckerKilled(BaseException):
    """The Lambda runtime ending the invocation (timeout, crash): nothing in the checker catches it."""


def is_promote(params: dict[str, Any]) -> bool:
    return "active = :node" in params.get("UpdateExpression", "")


def route_writes(cluster: Harness) -> list[tuple[str, str]]:
    return [(p["RouteTableId"], p["NetworkInterfaceId"]) for o, p in cluster.calls
            if o in ("ReplaceRoute", "CreateRoute")]


def test_a_lost_promote_response_still_moves_the_routes(cluster: Harness) -> None:
    # Given the describes are throttled, and the promote UpdateItem reaches DynamoDB but its response is lost:
    # the SDK's standard retry re-sends it and the resend fails its condition (phase is no longer fencing)
    cluster.throttle("DescribeInstances", "DescribeRouteTables")
    applied: list[dict[str, Any]] = []

    def response_lost(params: dict[str, Any]) -> None:
        if is_promote(params) and not applied:
            applied.append(params)
            cluster.ddb.update_item(**params)  # attempt 1 was applied; the client saw a timeout and re-sends

    cluster.call_hooks["UpdateItem"] = response_lost
    cluster.agent("node1").frozen = True
    # When the checker probes
    result = cluster.invoke(max_probes=12)
    # Then it recognises its own promotion in the table and moves the routes in the same run
    assert applied
    assert "failover node1 -> node2" in result["outcomes"]
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert item["routes_epoch"] == 2


def test_a_checker_that_dies_between_promote_and_routes_is_completed_by_the_next_run(cluster: Harness) -> None:
    # Given the describes are throttled (drift cannot be seen) and the checker dies right after its promote
    cluster.throttle("DescribeInstances", "DescribeRouteTables")

    def die_after_promote(params: dict[str, Any]) -> None:
        if is_promote(params):
            cluster.ddb.update_item(**params)
            raise CheckerKilled

    cluster.call_hooks["UpdateItem"] = die_after_promote
    cluster.agent("node1").frozen = True
    with pytest.raises(CheckerKilled):
        cluster.invoke(max_probes=12)
    del cluster.call_hooks["UpdateItem"]
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert int(item.get("routes_epoch", 0)) < 2
    assert set(cluster.routes().values()) == {cluster.agent("node1").eni}  # the VIP still goes to the dead node
    # When the next run probes, with the describes still throttled
    cluster.calls.clear()
    result = cluster.invoke(max_probes=3)
    # Then it writes the VIP route in every table blindly, records the epoch, and writes no more after that
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert cluster.cluster()["routes_epoch"] == 2
    assert sorted(table for table, _ in route_writes(cluster)) == sorted(cluster.route_tables)
    assert result["outcomes"][1:] == ["ok", "ok"]


def test_routes_epoch_stays_behind_until_every_table_was_written(cluster: Harness) -> None:
    # Given the describes are throttled and one table's route write fails while node1 is failed over
    cluster.throttle("DescribeInstances", "DescribeRouteTables")
    stubborn = cluster.route_tables[1]
    failures: list[str] = []

    def fail_one_table(params: dict[str, Any]) -> None:
        if params["RouteTableId"] == stubborn and len(failures) < 2:
            failures.append(stubborn)
            raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}, "ReplaceRoute")

    cluster.call_hooks["ReplaceRoute"] = fail_one_table
    cluster.agent("node1").efs_ok = False
    # When the checker probes
    result = cluster.invoke(max_probes=8)
    # Then the failover completed, and a later cycle wrote the table that failed, then recorded the epoch
    assert "failover node1 -> node2" in result["outcomes"]
    assert failures == [stubborn, stubborn]
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert cluster.cluster()["routes_epoch"] == 2


def test_routes_that_can_be_read_and_point_at_the_active_node_are_recorded_without_writes(
        cluster: Harness) -> None:
    # Given a cluster item with no routes_epoch yet (bootstrap, or an item from before the attribute)
    assert "routes_epoch" not in cluster.cluster()
    # When the checker probes with EC2 readable and every VIP route on node1
    result = cluster.invoke(max_probes=2)
    # Then the epoch is recorded from the describe alone: no route was written
    assert set(result["outcomes"]) == {"ok"}
    assert cluster.cluster()["routes_epoch"] == 1
    assert route_writes(cluster) == []
