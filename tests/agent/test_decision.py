"""decide(): when MinIO may run on this node (serve only while active, stable, EFS writable, lease valid)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from node_agent.decision import Action, ClusterView, Observation, decide

ACTIVE = ClusterView(active="node1", epoch=4, phase="stable", active_instance="i-1")
HEALTHY = Observation(me="node1", cluster=ACTIVE, efs_ok=True, serving=True, minio_healthy=True,
                      lease_age_seconds=0.5, lease_seconds=1.5, instance_id="i-1", watchdog="armed")


def test_active_node_that_serves_keeps_serving() -> None:
    decision = decide(HEALTHY)
    assert (decision.action, decision.stop_reason) == (Action.NOTHING, "none")


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
    assert decision.stop_reason == "role_lost"


def test_a_role_lost_while_minio_is_unhealthy_names_minio_failed() -> None:
    moved = replace(HEALTHY, cluster=ClusterView(active="node2", epoch=5, phase="stable"), minio_healthy=False)
    assert decide(moved).stop_reason == "minio_failed"


def test_phase_fencing_stops_minio_even_for_the_named_node() -> None:
    fencing = replace(HEALTHY, cluster=ClusterView(active="node1", epoch=5, phase="fencing"))
    assert decide(fencing).action is Action.STOP_MINIO
    no_active = replace(HEALTHY, cluster=ClusterView(active=None, epoch=5, phase="fencing"))
    assert decide(no_active).action is Action.STOP_MINIO


def test_efs_failure_stops_minio_and_prevents_a_start() -> None:
    decision = decide(replace(HEALTHY, efs_ok=False))
    assert (decision.action, decision.stop_reason) == (Action.STOP_MINIO, "efs_failed")
    assert decide(replace(HEALTHY, efs_ok=False, serving=False)).action is Action.NOTHING


@pytest.mark.parametrize("age", [1.5, 1.51, 60.0, math.inf])
def test_lease_at_or_past_its_end_stops_minio(age: float) -> None:
    decision = decide(replace(HEALTHY, lease_age_seconds=age))
    assert (decision.action, decision.stop_reason) == (Action.STOP_MINIO, "lease_lost")
    assert "lease" in decision.reason


def test_lease_just_inside_its_end_is_valid() -> None:
    assert decide(replace(HEALTHY, lease_age_seconds=1.49)).action is Action.NOTHING


@pytest.mark.parametrize("watchdog", ["armed", "ready", "off"])
def test_a_usable_or_unneeded_watchdog_allows_the_start(watchdog: str) -> None:
    assert decide(replace(HEALTHY, serving=False, watchdog=watchdog)).action is Action.START_MINIO


def test_an_unavailable_watchdog_stops_and_refuses_the_role() -> None:
    decision = decide(replace(HEALTHY, watchdog="unavailable"))
    assert (decision.action, decision.stop_reason) == (Action.STOP_MINIO, "watchdog_unavailable")


def test_callers_without_a_watchdog_model_keep_working() -> None:
    # tests/failover/conftest.py's simulated agents build Observation without the new fields
    legacy = Observation(me="node1", cluster=ACTIVE, efs_ok=True, serving=False, minio_healthy=False,
                         lease_age_seconds=0.0, lease_seconds=5, instance_id="i-1")
    assert decide(legacy).action is Action.START_MINIO


def test_no_lease_yet_means_no_start() -> None:
    assert decide(replace(HEALTHY, serving=False, lease_age_seconds=math.inf)).action is Action.NOTHING


def test_no_cluster_view_yet_never_starts_and_the_lease_still_rules() -> None:
    blip = replace(HEALTHY, cluster=None)
    assert decide(blip).action is Action.NOTHING
    assert decide(replace(blip, serving=False)).action is Action.NOTHING  # never starts blind
    assert decide(replace(blip, lease_age_seconds=1.6)).action is Action.STOP_MINIO


def test_role_bound_to_another_instance_of_the_same_node_does_not_serve() -> None:
    twin = replace(HEALTHY, instance_id="i-new", serving=False)
    decision = decide(twin)
    assert decision.action is Action.NOTHING
    assert "bound to instance i-1" in decision.reason
    assert decide(replace(twin, serving=True)).action is Action.STOP_MINIO


def test_an_unbound_role_never_starts_minio() -> None:
    """Review 3: with `active_instance` absent, both instances of the active node (a deploy replacing it) started
    MinIO on one EFS directory (failed before the fix: START_MINIO)."""
    for own in ("i-1", "i-new", None):
        unbound = replace(HEALTHY, cluster=replace(ACTIVE, active_instance=None), serving=False, instance_id=own)
        decision = decide(unbound)
        assert (decision.action, decision.stop_reason) == (Action.NOTHING, "role_lost")
        assert decision.reason == "the role is not bound to an instance yet"


def test_a_minio_that_serves_while_the_role_is_unbound_keeps_serving() -> None:
    # An upgrade from a cluster item written before the binding existed never stops the service
    unbound = replace(HEALTHY, cluster=replace(ACTIVE, active_instance=None))
    assert decide(unbound).action is Action.NOTHING
    assert decide(replace(unbound, minio_healthy=False)).action is Action.NOTHING
    # ...but every other rule still stops it
    assert decide(replace(unbound, efs_ok=False)).action is Action.STOP_MINIO
    assert decide(replace(unbound, lease_age_seconds=2.0)).action is Action.STOP_MINIO


def test_unhealthy_minio_is_reported_not_restarted() -> None:
    decision = decide(replace(HEALTHY, minio_healthy=False))
    assert decision.action is Action.NOTHING
    assert "unhealthy" in decision.reason
