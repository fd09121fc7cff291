"""Route writes of an older epoch that land late (since the loop lease, operator actions and checker runs overlap:
no reserved concurrency serialises them) must not leave the VIP on a node that no longer holds the role."""

from __future__ import annotations

from typing import Any

from tests.failover.conftest import Harness


def test_a_late_route_write_of_an_older_epoch_does_not_win(cluster: Harness) -> None:
    """Run A's ReplaceRoute (to node2, epoch 2) is in flight while another operator switches back (epoch 3, its
    routes to node1 written and recorded); A's write then lands on a table. Failed before the fix: one table kept
    pointing at node2, which no longer serves (review finding 4)."""
    node1 = cluster.agent("node1")
    nested: list[Any] = []

    def second_switchover(_params: dict[str, Any]) -> None:
        if nested:
            return  # the second switchover's own route writes
        nested.append("running")
        nested[0] = cluster.invoke({"action": "switchover", "target": "node1"})

    cluster.call_hooks["ReplaceRoute"] = second_switchover
    first = cluster.invoke({"action": "switchover", "target": "node2"})
    cluster.call_hooks.clear()
    assert first["ok"] is True and nested[0]["ok"] is True
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 3)
    assert set(cluster.routes().values()) == {node1.eni}
    cluster.check_invariants()
