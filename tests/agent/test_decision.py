"""decide(): when MinIO may run on this node (serve only while active, stable, EFS writable, lease valid)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from node_agent.decision import Action, ClusterView, Observation, decide

ACTIVE = ClusterView(active="node1", epoch=4, phase="stable", active_instance="i-1")
HEALTHY = Observation(me="node1", cluster=ACTIVE, efs_ok=True, serving=True, minio_healthy=True,
                      lease_age_seconds=1.0, lease_seconds=5.0, lease_margin_seconds=2.0, instance_id="i-1")


def test_active_node_that_serves_keeps_serving() -> None:
    assert decide(HEALTHY).action is Action.NOTHING


def test_active_node_that_does_not_serve_starts_minio() -> None:
    decision = decide(replace(HEALTHY, serving=False))
    assert decision.action is Action.START_MINIO
    assert "epoch 4" in decision.reason


def test_standby_never_starts_minio() -> None:
    standby = replace(HEALTHY, me="node2", serving=False, instance_id="i-2")
    assert decide(standby).action is Action.NOTHING


def test_lost_role_stops_minio() -> None:
    moved = replace(HEALTHY, cluster=ClusterView(active="node2", epoch=5, phase="stable"))
    decision = decide(moved)
    assert decision.action is Action.STOP_MINIO
    assert "active: node2" in decision.reason


def test_phase_fencing_stops_minio_even_for_the_named_node() -> None:
    fencing = replace(HEALTHY, cluster=ClusterView(active="node1", epoch=5, phase="fencing"))
    assert decide(fencing).action is Action.STOP_MINIO
    no_active = replace(HEALTHY, cluster=ClusterView(active=None, epoch=5, phase="fencing"))
    assert decide(no_active).action is Action.STOP_MINIO


def test_efs_failure_stops_minio_and_prevents_a_start() -> None:
    assert decide(replace(HEALTHY, efs_ok=False)).action is Action.STOP_MINIO
    assert decide(replace(HEALTHY, efs_ok=False, serving=False)).action is Action.NOTHING


@pytest.mark.parametrize("age", [3.0, 4.9, 60.0, math.inf])
def test_lease_at_or_past_its_margin_stops_minio(age: float) -> None:
    decision = decide(replace(HEALTHY, lease_age_seconds=age))
    assert decision.action is Action.STOP_MINIO
    assert "lease" in decision.reason


def test_lease_just_inside_the_margin_is_valid() -> None:
    assert decide(replace(HEALTHY, lease_age_seconds=2.9)).action is Action.NOTHING


def test_no_lease_yet_means_no_start() -> None:
    assert decide(replace(HEALTHY, serving=False, lease_age_seconds=math.inf)).action is Action.NOTHING


def test_unreadable_table_holds_on_while_the_lease_is_valid() -> None:
    blip = replace(HEALTHY, cluster=None)
    assert decide(blip).action is Action.NOTHING
    assert decide(replace(blip, serving=False)).action is Action.NOTHING  # never starts blind
    assert decide(replace(blip, lease_age_seconds=3.5)).action is Action.STOP_MINIO


def test_role_bound_to_another_instance_of_the_same_node_does_not_serve() -> None:
    twin = replace(HEALTHY, instance_id="i-new", serving=False)
    decision = decide(twin)
    assert decision.action is Action.NOTHING
    assert "bound to instance i-1" in decision.reason
    assert decide(replace(twin, serving=True)).action is Action.STOP_MINIO


def test_unbound_role_is_served_by_the_named_node() -> None:
    unbound = replace(HEALTHY, cluster=replace(ACTIVE, active_instance=None), serving=False, instance_id=None)
    assert decide(unbound).action is Action.START_MINIO


def test_unhealthy_minio_is_reported_not_restarted() -> None:
    decision = decide(replace(HEALTHY, minio_healthy=False))
    assert decision.action is Action.NOTHING
    assert "unhealthy" in decision.reason
