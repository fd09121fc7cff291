"""Fencing of an old active node that has no node item (docs/failover-design.md, "Checker", step 3).

An absent item is not proof at once: the node's first renewal may have read the cluster item just before the
fencing write, and its PutItem may land just after the checker's first read; that agent then starts MinIO on a
valid lease. Only an item that stays absent for LEASE_DEADLINE_SECONDS of reads proves the node holds no lease.
"""

from __future__ import annotations

from typing import Any

from tests.failover.conftest import LEASE_DEADLINE, Harness


def given_node1_without_a_node_item(cluster: Harness) -> None:
    """node1 holds the role (bound to its instance) but its item is gone and its agent writes nothing."""
    node1 = cluster.agent("node1")
    node1.serving = False
    node1.writes = False
    cluster.ddb.delete_item(TableName=cluster.table, Key={"pk": {"S": "node#node1"}})


def fencing_write_time(cluster: Harness, times: list[tuple[str, float]]) -> float:
    return next(t for what, t in times if what == "fence")


def record_times(cluster: Harness) -> list[tuple[str, float]]:
    times: list[tuple[str, float]] = []

    def on_update(params: dict[str, Any]) -> None:
        expression = params.get("UpdateExpression", "")
        if expression.startswith("SET phase = :fencing"):
            times.append(("fence", cluster.clock.monotonic()))
        elif expression.startswith("SET phase = :stable"):
            times.append(("promote", cluster.clock.monotonic()))

    cluster.call_hooks["UpdateItem"] = on_update
    return times


def test_a_node_without_a_node_item_is_fenced_only_after_the_lease_deadline(cluster: Harness) -> None:
    given_node1_without_a_node_item(cluster)
    times = record_times(cluster)
    # When the checker fails node1 ("no node item") and takes over
    cluster.invoke(max_probes=5)
    # Then the fencing is confirmed by the absent item only once LEASE_DEADLINE_SECONDS of reads have passed
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert "has no node item and none appeared in" in item["reason"]
    promote = next(t for what, t in times if what == "promote")
    assert promote - fencing_write_time(cluster, times) >= LEASE_DEADLINE


def test_a_first_renewal_that_lands_after_the_first_fencing_read_is_not_overlooked(cluster: Harness) -> None:
    # Given node1 without a node item, whose agent's first renewal read the cluster item before the fencing
    # write (active, stable, bound to it) and whose PutItem lands after the checker's first fencing read
    given_node1_without_a_node_item(cluster)
    node1 = cluster.agent("node1")
    times = record_times(cluster)
    scans_after_fence: list[int] = []

    def late_first_renewal(_: dict[str, Any]) -> None:
        if not any(what == "fence" for what, _ in times):
            return
        scans_after_fence.append(1)
        if len(scans_after_fence) == 2:
            # The renewal counted (it read "active" before the fencing), so the agent started MinIO.
            node1.serving = node1.writes = True
            cluster.heartbeat(node1, seen_epoch=1)

    cluster.call_hooks["Scan"] = late_first_renewal
    # When the checker fences node1
    cluster.invoke(max_probes=5)
    # Then it waits for node1's own stop report (its agent sees the fencing at its next renewal) instead of
    # promoting node2 on the first read without an item (invariant S3 fails on a route written while node1
    # may serve)
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert "node reports serving=false at epoch 2" in item["reason"]
    assert not node1.serving
