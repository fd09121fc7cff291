"""Review finding 3: the role is always bound to one instance (`active_instance`). Agents start MinIO only when
the role is bound to their own instance, so the checker binds it: from EC2 when the node has exactly one
instance, else from the node's own fresh node item (a renewal observed on the checker's clock), with EC2
Describe* throttled, and even while the unbound node's MinIO (refusing to start) makes its probe fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.failover.conftest import Harness, finish


@pytest.fixture
def fresh(moto_backend: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Nodes running, their agents renewing, and no cluster item yet (the checker has never run)."""
    harness = Harness(monkeypatch)
    harness.settle(2)
    yield harness
    finish(harness)


def test_bootstrap_with_describes_throttled_binds_the_role_and_the_node_serves(fresh: Harness) -> None:
    # Given EC2 DescribeInstances and DescribeRouteTables are throttled when the checker first runs
    fresh.throttle("DescribeInstances", "DescribeRouteTables")
    node1 = fresh.agent("node1")
    assert not node1.serving
    # When the checker runs a few probes
    result = fresh.invoke(max_probes=8)
    # Then the role is bound to node1's instance (from its own fresh node item), node1 serves, nothing failed over
    item = fresh.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node1", 1, "stable")
    assert item["active_instance"] == node1.instance_id
    assert node1.serving and not fresh.agent("node2").serving
    # (the routes of epoch 1 cannot be described: written once blindly, then recorded)
    assert [o for o in result["outcomes"] if o != "ok"] == ["routes written for epoch 1 in 3 table(s)"]
    assert item["routes_epoch"] == 1


def test_an_unbound_role_whose_minio_refuses_to_start_is_bound_not_failed_over(cluster: Harness) -> None:
    # Given an older cluster item without active_instance (its start grace long over), so node1's agent refuses
    # to start MinIO (stop reason role_lost) and its probe fails on "MinIO not running"; EC2 Describe* throttled
    node1 = cluster.agent("node1")
    item = cluster.cluster()
    del item["active_instance"]
    item["changed_at"] = float(item["changed_at"]) - 3600
    cluster.put_item(item)
    node1.serving, node1.stop_reason = False, "role_lost"
    cluster.settle(2)
    assert not node1.serving
    cluster.throttle("DescribeInstances", "DescribeRouteTables")
    # When the checker probes
    result = cluster.invoke(max_probes=8)
    # Then it binds the role to node1's instance, node1 serves, and nothing fails over
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["active_instance"]) == ("node1", 1, node1.instance_id)
    assert node1.serving
    # Bound in the first cycle (the start grace begins again); the routes of epoch 1, never recorded and not
    # readable, are written once blindly
    assert [o for o in result["outcomes"] if o != "ok"] == ["routes written for epoch 1 in 3 table(s)"]


def test_a_deploy_replacement_at_bootstrap_binds_the_instance_that_renews(fresh: Harness) -> None:
    # Given a deploy has started a second node1 instance (its agent not renewing yet) before the first checker run:
    # EC2 shows two instances of node1, so EC2 alone cannot say which one holds the role
    old = fresh.agent("node1")
    replacement = fresh.launch("node1", fresh.subnets[2])
    replacement.writes = False
    fresh.settle(1)
    # When the checker runs
    fresh.invoke(max_probes=6)
    # Then the role is bound to the instance whose renewals the checker observed, and only it serves
    item = fresh.cluster()
    assert (item["active"], item["active_instance"]) == ("node1", old.instance_id)
    assert old.serving and not replacement.serving
