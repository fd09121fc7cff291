"""Route writes of an older epoch that land late (since the loop lease, operator actions and checker runs overlap:
no reserved concurrency serialises them) must not leave the VIP on a node that no longer holds the role."""

from __future__ import annotations

import threading
from typing import Any

from tests.failover.conftest import Harness


def test_a_late_route_write_of_an_older_epoch_does_not_win(cluster: Harness) -> None:
    """Run A's ReplaceRoute (to node2, epoch 2) is in flight while another operator switches back (epoch 3, its
    routes to node1 written and recorded); A's write then lands on a table. Failed before the fix: one table kept
    pointing at node2, which no longer serves (review finding 4)."""
    node1, node2 = cluster.agent("node1"), cluster.agent("node2")
    nested: list[Any] = []
    arrived: list[str] = []
    lock = threading.Lock()

    def second_switchover(params: dict[str, Any]) -> None:
        # Run A writes its tables in parallel: the other switchover runs inside the LAST of A's writes to arrive,
        # so every other write of A has been issued before it (as a write that is merely slow would be) and only
        # this one lands after it.
        with lock:
            if params.get("NetworkInterfaceId") != node2.eni or nested:
                return
            arrived.append(params["RouteTableId"])
            if len(arrived) < len(cluster.route_tables):
                return
            nested.append("running")
        nested[0] = cluster.invoke({"action": "switchover", "target": "node1"})

    cluster.call_hooks["ReplaceRoute"] = second_switchover
    first = cluster.invoke({"action": "switchover", "target": "node2"})
    cluster.call_hooks.clear()
    assert first["ok"] is True and nested[0]["ok"] is True
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 3)
    assert set(cluster.routes().values()) == {node1.eni}
    cluster.check_invariants()
