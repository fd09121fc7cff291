"""AWS API errors make a probe "unknown": never a failed probe, never a reset, never a failover."""

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
    cluster.agent("node1").alive = False
    cluster.settle(3)
    cluster.put_item({"pk": "checker", "failures": {"node1": 2}, "failing_since": {"node1": cluster.clock.now()}})


@pytest.mark.parametrize(("operation", "error"), [
    ("DescribeInstances", throttled("DescribeInstances")),
    ("DescribeRouteTables", throttled("DescribeRouteTables")),
    ("DescribeInstances", timed_out),
    ("Scan", unreachable),
    ("Scan", throttled("Scan")),
])
def test_api_errors_neither_fail_over_nor_reset_the_failure_count(cluster: Harness, operation: str,
                                                                  error: Any) -> None:
    # Given node1 is really failing (two failed probes so far) and an AWS API keeps failing
    given_two_failed_probes(cluster)
    cluster.call_hooks[operation] = error
    # When the checker probes many times
    result = cluster.invoke(max_probes=8)
    # Then every probe is "unknown": counted as such, the counter untouched, nothing moved
    assert result["outcomes"] == ["unknown"] * 8
    assert cluster.metric_total("ProbeUnknown") == 8
    assert cluster.item("checker")["failures"] == {"node1": 2}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    assert not {"UpdateItem", "ReplaceRoute", "StopInstances", "SendCommand"} & set(cluster.operations())
    # And when the API recovers, the very next failed probe is the third one: takeover
    del cluster.call_hooks[operation]
    assert cluster.invoke(max_probes=1)["outcomes"] == ["failover node1 -> node2"]


def test_throttling_on_a_healthy_cluster_changes_nothing(cluster: Harness) -> None:
    cluster.call_hooks["DescribeInstances"] = throttled("DescribeInstances")
    result = cluster.invoke(max_probes=5)
    assert set(result["outcomes"]) == {"unknown"}
    assert cluster.item("checker").get("failures", {}) == {}
    assert cluster.cluster()["epoch"] == 1


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
