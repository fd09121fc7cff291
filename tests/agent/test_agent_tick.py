"""Agent ticks against a moto state table with a fake MinIO service and hand-driven clocks."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import EndpointConnectionError

from tests.agent.conftest import INSTANCE, TABLE, AgentWorld


def fail_calls(world: AgentWorld, operation: str) -> None:
    def raise_error(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com")

    world.client.meta.events.register(f"before-call.dynamodb.{operation}", raise_error)


def test_active_node_starts_minio_once_it_holds_a_lease(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3, active_instance=INSTANCE)
    # First tick: no lease yet (nothing written), so no start; the heartbeat establishes the lease
    assert world.tick() == "nothing"
    assert world.service.actions == []
    beat = world.heartbeat()
    assert (beat["serving"], beat["efs_ok"], beat["seen_epoch"], beat["instance_id"]) == (
        False, True, "3", INSTANCE)
    # Second tick: lease valid -> start, and the heartbeat already reports the new state
    assert world.tick() == "start_minio"
    assert world.service.actions == ["start"]
    beat = world.heartbeat()
    assert (beat["serving"], beat["minio_ok"]) == (True, False)  # health is checked from the next tick on
    assert world.tick() == "nothing"
    beat = world.heartbeat()
    assert (beat["serving"], beat["minio_ok"]) == (True, True)
    assert float(beat["heartbeat_at"]) == world.clocks.wall - 1
    assert world.notifications[:2] == ["READY=1", "WATCHDOG=1"]
    assert world.notifications.count("READY=1") == 1


def test_standby_writes_heartbeats_and_never_starts_minio(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    for _ in range(4):
        assert world.tick() == "nothing"
    assert world.service.actions == []
    beat = world.heartbeat()
    assert (beat["serving"], beat["minio_ok"], beat["efs_ok"]) == (False, False, True)
    assert "standby" in beat["detail"]


def test_lost_role_stops_minio_and_reports_serving_false_at_the_new_epoch(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    world.tick()
    world.tick()
    assert world.service.running
    # The checker starts fencing: epoch 4, nobody active
    world.set_cluster(None, epoch=4, phase="fencing")
    assert world.tick() == "stop_minio"
    beat = world.heartbeat()
    assert (beat["serving"], beat["seen_epoch"]) == (False, "4")  # what the checker waits for


def test_efs_failure_stops_minio(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    assert world.service.running
    (world.mount / ".efs-ha" / "monitor-node1.txt").unlink()
    (world.mount / ".efs-ha" / "monitor-node1.txt").mkdir()
    assert world.tick() == "stop_minio"
    beat = world.heartbeat()
    assert (beat["efs_ok"], beat["serving"]) == (False, False)
    assert "EFS write failed" in beat["detail"]


def test_unreadable_table_stops_minio_when_the_lease_runs_out(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    assert world.service.running
    # The table becomes unreachable: MinIO keeps running while the lease is valid, then stops itself
    fail_calls(world, "GetItem")
    fail_calls(world, "PutItem")
    assert world.tick() == "nothing"
    assert world.service.running
    assert world.tick() == "nothing"
    assert world.tick() == "stop_minio"  # lease age 3 s + margin 2 s >= lease 5 s
    assert not world.service.running


def test_a_failed_cluster_read_does_not_renew_the_lease(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    fail_calls(world, "GetItem")  # heartbeats still succeed, but the agent no longer knows its role
    actions = [world.tick() for _ in range(4)]
    assert "stop_minio" in actions
    assert not world.service.running


def test_lease_guard_stops_minio_even_when_no_tick_runs(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    assert world.service.running
    assert world.agent.enforce_lease() is False
    world.clocks.advance(2.5)  # a tick is stuck in a slow call; the guard thread checks the lease
    assert world.agent.lease_expired()
    assert world.agent.enforce_lease() is True
    assert not world.service.running


def test_a_stop_that_fails_is_reported_as_still_serving(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    world.service.fail_stop = True
    world.set_cluster("node2", epoch=2)
    assert world.tick() == "stop_minio"
    beat = world.heartbeat()
    assert beat["serving"] is True  # never claim serving=false for a MinIO that may still run


def test_unhealthy_minio_is_reported_but_not_restarted(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    world.minio_healthy = False
    assert world.tick() == "nothing"
    assert world.service.actions == ["start"]
    beat = world.heartbeat()
    assert (beat["serving"], beat["minio_ok"]) == (True, False)


def test_the_role_bound_to_another_instance_is_not_served(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=2, active_instance="i-0another0instance")
    for _ in range(3):
        world.tick()
    assert world.service.actions == []


def test_a_replacement_instance_leaves_the_bound_instances_heartbeat_alone(world: AgentWorld) -> None:
    # Given a deploy is replacing node1: the role is bound to the old instance, which keeps heartbeating
    world.set_cluster("node1", epoch=2, active_instance="i-0old0instance")
    world.client.put_item(TableName=TABLE, Item={
        "pk": {"S": "node#node1"}, "instance_id": {"S": "i-0old0instance"}, "serving": {"BOOL": True}})
    # When the new instance's agent ticks
    world.tick()
    # Then it does not overwrite the old instance's heartbeat (the checker would see a flapping active node)
    assert world.heartbeat()["instance_id"] == "i-0old0instance"
    # And once the role is released (failed over elsewhere), it reports as usual
    world.set_cluster("node2", epoch=3)
    world.tick()
    assert world.heartbeat()["instance_id"] == INSTANCE


def test_shutdown_stops_minio_and_tells_the_table(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    world.agent.request_stop()
    world.agent.shutdown()
    assert world.service.actions == ["start", "stop"]
    assert world.heartbeat()["serving"] is False
    assert world.notifications[-1] == "STOPPING=1"


def test_run_loop_exits_on_request_and_stops_minio(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.tick()
    world.agent.request_stop()  # as the SIGTERM handler does
    world.agent.run()
    assert not world.service.running


def test_a_start_that_has_not_taken_effect_yet_is_reported_as_serving(world: AgentWorld) -> None:
    # systemctl start --no-block returns before the unit is even "activating"
    world.set_cluster("node1", epoch=1)
    world.tick()
    world.service.start = lambda: world.service.actions.append("start")  # type: ignore[method-assign]
    assert world.tick() == "start_minio"
    assert not world.service.running
    assert world.heartbeat()["serving"] is True  # "may be serving": never under-report to the checker
