"""What the checker does when a node's Auto Scaling group replaces its instance (a new instance ID, a new ENI, the
same node name): the replacement of a standby joins as a standby and never takes the role by itself; the
replacement of a failed active node is used only as a failover target like any healthy standby."""

from __future__ import annotations

from tests.failover.conftest import Harness


def test_a_replaced_standby_joins_as_standby_and_the_role_stays(cluster: Harness) -> None:
    # Given node1 active and node2 a healthy standby
    cluster.invoke(max_probes=2)
    node1, old_node2 = cluster.agent("node1"), cluster.agent("node2")
    # When node2's group replaces its impaired instance (terminate, then launch in the same subnet)
    cluster.terminate_instance(old_node2.instance_id)
    new_node2 = cluster.launch("node2", cluster.subnets[3])
    cluster.settle(3)
    cluster.invoke(max_probes=3)
    # Then nothing moved: node1 still active on the same instance, the routes untouched, epoch unchanged
    item = cluster.cluster()
    assert (item["active"], item["active_instance"], item["epoch"]) == ("node1", node1.instance_id, 1)
    assert set(cluster.routes().values()) == {node1.eni}
    assert not new_node2.serving
    # And the new instance is node2's standby, with its own ENI
    status = cluster.invoke({"action": "status"})
    assert status["nodes"]["node2"]["instance_id"] == new_node2.instance_id
    assert status["nodes"]["node2"]["eni"] == new_node2.eni
    assert status["nodes"]["node2"]["role"] == "standby"


def test_the_replacement_of_a_failed_active_node_is_only_a_later_failover_target(cluster: Harness) -> None:
    # Given node1 active; its instance dies and the checker fails over to node2
    cluster.invoke(max_probes=2)
    old_node1, node2 = cluster.agent("node1"), cluster.agent("node2")
    cluster.terminate_instance(old_node1.instance_id)
    cluster.invoke(max_probes=8)
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)
    # When node1's group launches a replacement, it joins as standby: no fail-back
    new_node1 = cluster.launch("node1", cluster.subnets[2])
    cluster.settle(3)
    cluster.invoke(max_probes=3)
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)
    assert not new_node1.serving and set(cluster.routes().values()) == {node2.eni}
    # And only when node2 fails does the role move to node1's new instance and ENI
    node2.efs_ok = False
    cluster.invoke(max_probes=6)
    item = cluster.cluster()
    assert (item["active"], item["active_instance"]) == ("node1", new_node1.instance_id)
    assert set(cluster.routes().values()) == {new_node1.eni}
    assert not cluster.violations
