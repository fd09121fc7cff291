"""Maintenance suspends what the checker does on its own, not what an operator asks for (README "How failover
works", docs/failover-design.md "Maintenance")."""

from __future__ import annotations

from typing import Any

from tests.failover.conftest import Harness


def test_a_planned_switchover_runs_while_maintenance_is_on(cluster: Harness) -> None:
    # Given maintenance is on
    assert cluster.invoke({"action": "maintenance", "enabled": True})["ok"] is True
    # When the operator switches over
    result = cluster.invoke({"action": "switchover", "target": "node2"})
    # Then it is not blocked: node2 serves behind every route, and maintenance stays on
    assert result["ok"] is True, result
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"], item["maintenance"]) == ("node2", 2, "stable", True)
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}


def maintenance_messages(cluster: Harness) -> list[dict[str, Any]]:
    return [m for m in cluster.sns_messages() if "maintenance" in m["body"]]


def test_maintenance_set_in_the_table_is_announced_once_by_the_next_cycle(cluster: Harness) -> None:
    # Given the CLI set the flag straight in the table (the probe loop held the checker's only slot)
    cluster.update_cluster(maintenance=True, maintenance_changed_at=cluster.clock.now())
    # When the checker's next cycles run
    cluster.invoke(max_probes=3)
    # Then it is announced once, like the maintenance action's own notification
    assert [(m["body"]["maintenance"], m["body"]["set_via"]) for m in maintenance_messages(cluster)] == [
        (True, "the state table")]
    # And switching it off the same way is announced too
    cluster.update_cluster(maintenance=False, maintenance_changed_at=cluster.clock.now())
    cluster.invoke(max_probes=3)
    assert [m["body"]["maintenance"] for m in maintenance_messages(cluster)] == [True, False]


def test_the_maintenance_action_is_announced_once_not_again_by_the_probe_loop(cluster: Harness) -> None:
    assert cluster.invoke({"action": "maintenance", "enabled": True})["ok"] is True
    cluster.invoke(max_probes=3)
    assert [(m["body"]["maintenance"], m["body"]["set_via"]) for m in maintenance_messages(cluster)] == [
        (True, "the maintenance action")]
