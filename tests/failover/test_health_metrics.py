"""The gauges behind the dashboard and the NodeUnhealthy alarms: per-node health and the active node."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.failover.conftest import Harness


def _node_health_records(output: str) -> list[tuple[str, float]]:
    records = []
    for line in output.splitlines():
        if '"NodeHealthy"' not in line:
            continue
        record: dict[str, Any] = json.loads(line)
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert sorted(directive["Dimensions"][0]) == ["ClusterId", "Node"]  # what the alarms select on
        values = record["NodeHealthy"]
        records += [(record["Node"], float(v)) for v in (values if isinstance(values, list) else [values])]
    return records


def test_every_probe_reports_each_nodes_health(cluster: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.invoke(max_probes=2)
    records = _node_health_records(capsys.readouterr().out)
    assert records.count(("node1", 1.0)) == 2 and records.count(("node2", 1.0)) == 2


def test_an_unhealthy_standby_is_reported_unhealthy(cluster: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.agent("node2").efs_ok = False
    cluster.invoke(max_probes=3)
    records = _node_health_records(capsys.readouterr().out)
    # The first probe may still see node2's last good heartbeat; its next report says EFS failed.
    assert [v for node, v in records if node == "node2"][-1] == 0.0
    assert {v for node, v in records if node == "node1"} == {1.0}


def test_active_node_position_follows_a_failover(cluster: Harness) -> None:
    cluster.invoke(max_probes=1)
    assert {v for name, v in cluster.metric_log if name == "ActiveNodePosition"} == {1}
    cluster.metric_log.clear()
    cluster.agent("node1").efs_ok = False
    cluster.invoke(max_probes=10)
    positions = [v for name, v in cluster.metric_log if name == "ActiveNodePosition"]
    assert positions[0] == 1 and positions[-1] == 2
