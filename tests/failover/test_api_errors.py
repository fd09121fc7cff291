"""AWS API errors: a failed Scan makes a probe "unknown" (never a failed probe, never a failover); a failed
EC2 Describe* only makes EC2's part unknown: what the state table shows still decides (issue 9, hole 5)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from tests.failover.conftest import Harness


def throttled(operation: str) -> Any:
    def raise_error(_: dict[str, Any]) -> None:
        raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, operation)

    return raise_error


def unreachable(_: dict[str, Any]) -> None:
    raise EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com")


def timed_out(_: dict[str, Any]) -> None:
    raise ReadTimeoutError(endpoint_url="https://ec2.eu-west-1.amazonaws.com")


def given_two_failed_probes(cluster: Harness) -> None:
    cluster.agent("node1").efs_ok = False
    cluster.settle(1)
    now = cluster.clock.now()
    cluster.put_item({"pk": "checker", "failures": {"node1": 2}, "failing_since": {"node1": now - 1},
                      "last_failed_at": {"node1": now}})


@pytest.mark.parametrize("error", [unreachable, throttled("Scan")])
def test_a_failing_scan_neither_fails_over_nor_adds_to_the_failure_count(cluster: Harness, error: Any) -> None:
    # Given node1 is really failing (two failed probes so far) and the state table cannot be read
    given_two_failed_probes(cluster)
    cluster.call_hooks["Scan"] = error
    # When the checker probes many times
    result = cluster.invoke(max_probes=8)
    # Then every probe is "unknown": counted as such, the counter untouched, nothing moved
    assert result["outcomes"] == ["unknown"] * 8
    assert cluster.metric_total("ProbeUnknown") == 8
    assert cluster.item("checker")["failures"] == {"node1": 2}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    assert not {"UpdateItem", "ReplaceRoute", "StopInstances", "SendCommand"} & set(cluster.operations())
    # And when the table is readable again, the old count (8 s old) has aged: counting restarts at 1
    del cluster.call_hooks["Scan"]
    assert cluster.invoke(max_probes=1)["outcomes"][0].startswith("node1 failing 1/3: EFS not writable (sim)")
    assert "failover node1 -> node2" in cluster.invoke(max_probes=3)["outcomes"]


@pytest.mark.parametrize(("operation", "error"), [
    ("DescribeInstances", throttled("DescribeInstances")),
    ("DescribeRouteTables", throttled("DescribeRouteTables")),
    ("DescribeInstances", timed_out),
])
def test_a_failing_describe_does_not_stop_a_failover_the_table_supports(cluster: Harness, operation: str,
                                                                        error: Any) -> None:
    # Given node1 is really failing (two failed probes so far) and an EC2 describe keeps failing
    given_two_failed_probes(cluster)
    cluster.call_hooks[operation] = error
    # When the checker probes
    result = cluster.invoke(max_probes=4)
    # Then the next failed probe is the third one: node1's own stop report fences it and the VIP moves
    assert result["outcomes"][0] == "failover node1 -> node2"
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert cluster.metric_total("ProbeUnknown") >= 1  # the describe errors are counted, not hidden


def test_throttling_on_a_healthy_cluster_changes_nothing(cluster: Harness) -> None:
    cluster.invoke(max_probes=1)  # steady state: the routes of epoch 1 are recorded (routes_epoch)
    assert cluster.cluster()["routes_epoch"] == 1
    cluster.calls.clear()
    cluster.call_hooks["DescribeInstances"] = throttled("DescribeInstances")
    cluster.call_hooks["DescribeRouteTables"] = throttled("DescribeRouteTables")
    result = cluster.invoke(max_probes=5)
    assert set(result["outcomes"]) == {"ok"}
    assert cluster.item("checker").get("failures", {}) == {}
    assert cluster.cluster()["epoch"] == 1
    assert not {"ReplaceRoute", "CreateRoute"} & set(cluster.operations())
    # Nothing but the checker's own bookkeeping (its probe and run times) is updated: no role change
    assert {params["Key"]["pk"]["S"] for operation, params in cluster.calls
            if operation == "UpdateItem" and "loop" not in params["Key"]["pk"]["S"]} <= {"checker"}
    # One attempt per EC2_CACHE_SECONDS, not one per probe: no call storm against a throttled API
    assert cluster.operations().count("DescribeInstances") <= 2


def test_a_route_api_error_on_one_table_does_not_stop_the_others(cluster: Harness) -> None:
    bad_table = cluster.route_tables[1]

    def fail_one(params: dict[str, Any]) -> None:
        if params["RouteTableId"] == bad_table:
            throttled("ReplaceRoute")(params)

    cluster.call_hooks["ReplaceRoute"] = fail_one
    cluster.agent("node1").efs_ok = False
    cluster.invoke(max_probes=4)
    node2_eni = cluster.agent("node2").eni
    routes = cluster.routes()
    assert [routes[t] == node2_eni for t in cluster.route_tables] == [True, False, True]
    assert cluster.metric_total("CheckerErrors") >= 1
    # The next cycle without the error repairs the remaining table as drift
    del cluster.call_hooks["ReplaceRoute"]
    cluster.invoke(max_probes=1)
    assert set(cluster.routes().values()) == {node2_eni}


def test_a_status_request_while_aws_is_unavailable_returns_a_reason(cluster: Harness) -> None:
    cluster.call_hooks["Scan"] = unreachable
    result = cluster.invoke({"action": "status"})
    assert result["ok"] is False
    assert "AWS API unavailable" in result["reason"] and "Scan" in result["reason"]
