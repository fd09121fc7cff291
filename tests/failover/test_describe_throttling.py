"""Issue 9, hole 5: EC2 Describe* refine, never block. With them throttled for good, a node the state table
shows dead is still failed over: fenced by lease expiry behind its watchdog, routes moved by ReplaceRoute."""

from __future__ import annotations

from tests.failover.conftest import Harness


def test_sustained_describe_throttling_while_the_active_node_dies_still_fails_over(cluster: Harness) -> None:
    # Given DescribeInstances and DescribeRouteTables are throttled account-wide, and node1's agent freezes
    cluster.throttle("DescribeInstances", "DescribeRouteTables")
    cluster.agent("node1").frozen = True
    # When the checker probes
    result = cluster.invoke(max_probes=12)
    # Then the failover completes from the state table alone: no StopInstances, routes rewritten blindly
    assert "failover node1 -> node2" in result["outcomes"]
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert item["active_instance"] == cluster.agent("node2").instance_id  # from node2's own node item
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert "lease expired on the checker's clock" in item["reason"]
    assert "StopInstances" not in cluster.operations()
    # And the throttled API is not hammered: about one attempt per EC2_CACHE_SECONDS, not one per probe
    assert cluster.operations().count("DescribeInstances") <= 6
    assert cluster.agent("node2").serving


def test_with_describe_instances_throttled_a_node_reporting_efs_failure_is_failed_over(cluster: Harness) -> None:
    cluster.throttle("DescribeInstances")
    cluster.agent("node1").efs_ok = False
    result = cluster.invoke(max_probes=6)
    assert "failover node1 -> node2" in result["outcomes"]
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert "serving=false at epoch 2" in cluster.cluster()["reason"]


def test_with_describes_throttled_drift_is_left_alone_until_it_can_be_seen(cluster: Harness) -> None:
    # Given the routes of epoch 1 are recorded as written (routes_epoch): no blind writes are pending
    cluster.invoke(max_probes=1)
    assert cluster.cluster()["routes_epoch"] == 1
    cluster.calls.clear()
    cluster.set_route(cluster.route_tables[0], cluster.agent("node2").eni)
    cluster.throttle("DescribeRouteTables")
    result = cluster.invoke(max_probes=3)
    assert set(result["outcomes"]) == {"ok"}
    assert not {"ReplaceRoute", "CreateRoute"} & set(cluster.operations())
    del cluster.call_hooks["DescribeRouteTables"]
    cluster.invoke(max_probes=1)
    assert set(cluster.routes().values()) == {cluster.agent("node1").eni}
