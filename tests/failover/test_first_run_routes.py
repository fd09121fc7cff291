"""A new stack has no VIP route at all (no VipRoutes resource any more: no instance ID exists at synth):
the checker's first run creates the cluster item and every route, pointing at the first node's ENI."""

from __future__ import annotations

from tests.failover.conftest import VIP_CIDR, Harness


def test_the_first_run_creates_every_missing_vip_route_towards_the_first_node(cluster: Harness) -> None:
    # Given a freshly deployed stack: route tables without a VIP route and no cluster item
    for table in cluster.route_tables:
        cluster.ec2.delete_route(RouteTableId=table, DestinationCidrBlock=VIP_CIDR)
    cluster.ddb.delete_item(TableName=cluster.table, Key={"pk": {"S": "cluster"}})
    assert not any(cluster.routes().values())
    # When the checker runs for the first time (its schedule, or a node's EC2 event)
    cluster.invoke(max_probes=2)
    # Then node1 is active and every table routes the VIP to node1's ENI, created by CreateRoute
    node1 = cluster.agent("node1")
    assert cluster.cluster()["active"] == "node1"
    assert cluster.routes() == {table: node1.eni for table in cluster.route_tables}
    assert sorted(p["RouteTableId"] for o, p in cluster.calls if o == "CreateRoute") == sorted(cluster.route_tables)
