"""The drill's node count: two nodes for every scenario but the three-node chain (issue 12 part 4), which gets a
cluster of its own laid out as the stack's three-zone variant."""

from __future__ import annotations

import argparse

from drill import aws
from drill.cli import by_cluster_size, selected, topology
from drill.config import NODE_NAMES, node_names
from drill.netns import Topology
from drill.scenarios import SCENARIOS


def test_only_the_chain_runs_three_nodes_and_the_rest_keep_two() -> None:
    assert {name: s.nodes for name, s in SCENARIOS.items() if s.nodes != 2} == {"three-node-chain": 3}
    assert node_names(2) == NODE_NAMES == ("node1", "node2")
    assert node_names(3) == ("node1", "node2", "node3")


def test_a_full_drill_runs_the_two_node_scenarios_first_then_a_three_node_cluster() -> None:
    scenarios = selected(argparse.Namespace(scenario=None))
    groups = by_cluster_size(scenarios)
    assert list(groups) == [2, 3]
    assert [s.name for s in groups[3]] == ["three-node-chain"]
    assert topology("drill-1", scenarios).node_names == ("node1", "node2", "node3")
    only_kill = selected(argparse.Namespace(scenario=["kill-active"]))
    assert topology("drill-1", only_kill).namespaces == ["drill-1-aws", "drill-1-cl", "drill-1-node1", "drill-1-node2"]


def test_the_fake_vpc_has_the_stacks_cidrs_for_two_and_three_zones() -> None:
    assert aws.zone_subnets(2) == {"public-a": "10.0.10.0/24", "public-b": "10.0.20.0/24",
                                   "private-a": "10.0.110.0/24", "private-b": "10.0.120.0/24"}
    assert aws.zone_subnets(3) == {**aws.zone_subnets(2), "public-c": "10.0.30.0/24",
                                   "private-c": "10.0.130.0/24"}


def test_cleanup_takes_every_namespace_of_its_run_and_no_other_runs() -> None:
    mine = Topology("drill-12")
    assert all(mine._owns(name) for name in ("drill-12-aws", "drill-12-cl", "drill-12-node3"))
    assert not any(mine._owns(name) for name in ("drill-123-aws", "drill-1-aws", "drill-12", "xdrill-12-aws",
                                                 "drill-12-node3-x"))
