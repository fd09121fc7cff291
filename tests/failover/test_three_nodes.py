"""Three nodes in three zones (issue 12 part 4): the checker moves the role down node_names, one node at a time,
across four route tables (Public + Route-A/B/C), and never lets two nodes serve (the harness checks S1-S3 on
every tick and at the end of each test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.failover.conftest import VIP_CIDR, Harness, SimAgent, finish

THREE = "node1,node2,node3"


def add_third_zone(harness: Harness, *, vip_route_to: str | None) -> SimAgent:
    """Zone C as the stack builds it: a private subnet with node3 and its own route table (Route-C), which
    carries the VIP route to `vip_route_to`'s ENI, or none yet (the checker's first run creates it)."""
    vpc = harness.ec2.describe_subnets(SubnetIds=[harness.subnets[0]])["Subnets"][0]["VpcId"]
    subnet = harness.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.130.0/24")["Subnet"]["SubnetId"]
    harness.subnets.append(subnet)
    table = harness.ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    harness.ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    if vip_route_to is not None:
        harness.ec2.create_route(RouteTableId=table, DestinationCidrBlock=VIP_CIDR,
                                 NetworkInterfaceId=harness.agent(vip_route_to).eni)
    harness.route_tables.append(table)
    node3 = harness.launch("node3", subnet)
    harness.configure(NODE_NAMES=THREE, ROUTE_TABLE_IDS=",".join(harness.route_tables))
    return node3


def ssm_unreachable(harness: Harness) -> None:
    """A killed machine runs no SSM agent: the fence's MinIO stop cannot be delivered."""
    def denied(_: dict[str, Any]) -> None:
        raise ClientError({"Error": {"Code": "InvalidInstanceId", "Message": "not connected"}}, "SendCommand")

    harness.call_hooks["SendCommand"] = denied


def kill(harness: Harness, node: str) -> None:
    """kill -9 of the node's agent: no more renewals; its guard stops MinIO when the lease ends."""
    harness.agent(node).alive = False


def assert_active(harness: Harness, node: str, epoch: int) -> None:
    item = harness.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == (node, epoch, "stable")
    agent = harness.agent(node)
    assert item["active_instance"] == agent.instance_id
    routes = harness.routes()
    assert len(routes) == 4 and set(routes.values()) == {agent.eni}
    assert harness.serving_nodes() == [agent.instance_id]


@pytest.fixture
def three(cluster: Harness) -> Harness:
    """The settled cluster with zone C and node3 added: node1 active, node2 and node3 healthy standbys."""
    node3 = add_third_zone(cluster, vip_route_to="node1")
    cluster.settle(2)
    assert not node3.serving
    assert_active(cluster, "node1", 1)
    cluster.calls.clear()
    return cluster


def test_kill_the_active_then_the_new_active_lands_the_role_on_the_third(three: Harness) -> None:
    ssm_unreachable(three)
    # Given node1 (active) is killed: node2 is next in priority order
    kill(three, "node1")
    three.invoke(max_probes=12)
    assert_active(three, "node2", 2)
    # When node2, now active, is killed too
    kill(three, "node2")
    three.invoke(max_probes=12)
    # Then the role lands on node3, all four route tables point at it, and only node3 serves
    assert_active(three, "node3", 3)
    assert three.agent("node3").serving and not three.agent("node1").serving and not three.agent("node2").serving
    subjects = [m["subject"] for m in three.sns_messages()]
    assert any("failover node1 -> node2" in s for s in subjects)
    assert any("failover node2 -> node3" in s for s in subjects)
    assert three.metric_total("Failovers") == 2
    # Both takeovers waited for the old node's lease (no route written while it could serve: S3 in teardown)
    assert "lease expired" in three.cluster()["reason"]


def test_the_first_healthy_standby_in_priority_order_wins_over_the_next(three: Harness) -> None:
    # Given node2 cannot write EFS when the active node1 dies
    three.agent("node2").efs_ok = False
    three.settle(1)
    ssm_unreachable(three)
    kill(three, "node1")
    three.invoke(max_probes=12)
    # Then node2 is skipped: the role goes to node3 in one takeover
    assert_active(three, "node3", 2)
    assert three.metric_total("Failovers") == 1


def test_a_node_that_comes_back_stays_a_standby(three: Harness) -> None:
    # Given node1 was killed and node2 took over
    ssm_unreachable(three)
    kill(three, "node1")
    three.invoke(max_probes=12)
    assert_active(three, "node2", 2)
    # When node1's agent comes back healthy (a fresh start)
    three.agent("node1").alive = True
    three.settle(3)
    three.invoke(max_probes=6)
    # Then nothing moves back to it: higher priority only picks among standbys at a takeover
    assert_active(three, "node2", 2)
    assert not three.agent("node1").serving


@pytest.fixture
def fresh_three(moto_backend: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Three nodes running and renewing, Route-C without a VIP route, no cluster item yet."""
    harness = Harness(monkeypatch)
    add_third_zone(harness, vip_route_to=None)
    harness.settle(2)
    yield harness
    finish(harness)


def test_first_run_of_a_three_zone_cluster_creates_the_missing_vip_route_and_binds_node1(
        fresh_three: Harness) -> None:
    assert list(fresh_three.routes().values()).count(None) == 1
    fresh_three.invoke(max_probes=6)
    fresh_three.settle(2)
    assert_active(fresh_three, "node1", 1)
    assert "CreateRoute" in fresh_three.operations()
