"""The agent's thread steps against a moto state table, a fake MinIO service and hand-driven clocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agent.conftest import ENI, INSTANCE, PRIVATE_IP, TABLE, AgentWorld


def test_active_node_starts_minio_once_it_holds_a_lease(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3, active_instance=INSTANCE)
    # One cycle: EFS probed, lease renewed, then the reconcile loop starts MinIO
    assert world.cycle() == "start_minio"
    assert world.service.actions == ["start"]
    world.cycle()
    beat = world.heartbeat()
    assert (beat["serving"], beat["efs_ok"], beat["seen_epoch"], beat["instance_id"]) == (True, True, "3", INSTANCE)
    assert (beat["eni_id"], beat["private_ip"], beat["stop_reason"], beat["watchdog"]) == (
        ENI, PRIVATE_IP, "none", "off")
    assert beat["minio_ok"] is True
    assert float(beat["heartbeat_at"]) == world.clocks.wall - 0.5
    assert world.notifications.count("READY=1") == 1
    assert "WATCHDOG=1" in world.notifications


def test_every_write_carries_a_renewal_counter_one_higher(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    seqs = []
    for _ in range(4):
        world.cycle()
        seqs.append(int(world.heartbeat()["lease_seq"]))
    assert seqs == [1, 2, 3, 4]


def test_standby_writes_heartbeats_and_never_starts_minio(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    for _ in range(4):
        assert world.cycle() == "nothing"
    assert world.service.actions == []
    beat = world.heartbeat()
    assert (beat["serving"], beat["minio_ok"], beat["efs_ok"], beat["stop_reason"]) == (False, False, True, "none")
    assert "standby" in beat["detail"]


def test_lost_role_stops_minio_and_reports_serving_false_at_the_new_epoch(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    world.cycle()
    assert world.service.running
    # The checker starts fencing: epoch 4, nobody active
    world.set_cluster(None, epoch=4, phase="fencing")
    assert world.cycle() == "stop_minio"
    world.cycle()
    beat = world.heartbeat()
    assert (beat["serving"], beat["seen_epoch"], beat["stop_reason"]) == (False, "4", "role_lost")


def test_efs_failure_stops_minio(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.running
    (world.mount / ".efs-ha" / "monitor-node1.txt").unlink()
    (world.mount / ".efs-ha" / "monitor-node1.txt").mkdir()
    assert world.cycle() == "stop_minio"
    world.cycle()
    beat = world.heartbeat()
    assert (beat["efs_ok"], beat["serving"], beat["stop_reason"]) == (False, False, "efs_failed")
    assert "EFS write failed" in beat["detail"]


def test_unreadable_table_stops_minio_when_the_lease_runs_out(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.running
    # The table becomes unreachable: MinIO keeps running while the lease (1.5 s) is valid, then is killed
    world.fail("GetItem")
    world.fail("PutItem")
    assert world.cycle() == "nothing"  # lease age 0.5 s
    assert world.cycle() == "nothing"  # 1.0 s
    assert world.service.running
    world.cycle()  # 1.5 s: the lease has ended
    assert not world.service.running
    assert world.agent.status().stop_reason == "lease_lost"


def test_a_failed_cluster_read_does_not_renew_the_lease(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    before = int(world.heartbeat()["lease_seq"])
    undo = world.fail("GetItem")  # a write alone would be false progress: no read, no write
    for _ in range(4):
        world.cycle()
    assert not world.service.running
    undo()
    assert int(world.heartbeat()["lease_seq"]) == before


def test_a_renewal_slower_than_the_interval_does_not_count(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=1)
    world.cycle()
    assert world.agent.lease_valid()
    # The GetItem takes 0.6 s (> P = 0.5 s): the write lands, but the lease is not extended by it
    world.client.meta.events.register("before-call.dynamodb.GetItem",
                                      lambda **_: world.clocks.advance(0.6))
    sent_before = world.agent.status().lease_sent_at
    assert world.agent.renew_once() is False
    assert world.agent.status().lease_sent_at == sent_before


def test_lease_guard_stops_minio_even_when_no_other_step_runs(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.running
    world.agent.guard_once()
    assert world.service.running
    world.clocks.advance(1.6)  # no renewal: the lease thread is stuck in a slow call
    world.agent.guard_once()
    assert world.service.actions == ["start", "kill"]
    assert not world.service.running


def test_a_stop_that_fails_is_reported_as_still_serving(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.service.fail_stop = True
    world.set_cluster("node2", epoch=2)
    assert world.cycle() == "stop_minio"
    world.cycle()
    beat = world.heartbeat()
    assert beat["serving"] is True  # never claim serving=false for a MinIO that may still run
    assert beat["seen_epoch"] == "1"  # and never claim to have acted on epoch 2


def test_unhealthy_minio_is_reported_but_not_restarted(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.minio_healthy = False
    assert world.cycle() == "nothing"
    world.cycle()
    assert world.service.actions == ["start"]
    beat = world.heartbeat()
    assert (beat["serving"], beat["minio_ok"]) == (True, False)


def test_a_role_lost_while_minio_is_unhealthy_is_reported_as_minio_failed(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.minio_healthy = False
    world.cycle()
    world.set_cluster("node2", epoch=2)  # the checker failed over because MinIO failed here
    assert world.cycle() == "stop_minio"
    world.cycle()
    assert world.heartbeat()["stop_reason"] == "minio_failed"


def test_the_role_bound_to_another_instance_is_not_served(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=2, active_instance="i-0another0instance")
    for _ in range(3):
        world.cycle()
    assert world.service.actions == []


def test_a_replacement_instance_leaves_the_bound_instances_item_alone(world: AgentWorld) -> None:
    # Given a deploy is replacing node1: the role is bound to the old instance, which keeps renewing
    world.set_cluster("node1", epoch=2, active_instance="i-0old0instance")
    world.client.put_item(TableName=TABLE, Item={
        "pk": {"S": "node#node1"}, "instance_id": {"S": "i-0old0instance"}, "serving": {"BOOL": True},
        "lease_seq": {"N": "40"}})
    # When the new instance's agent runs
    world.cycle()
    # Then it does not overwrite the old instance's item (the checker would see a flapping active node)
    assert world.heartbeat()["instance_id"] == "i-0old0instance"
    assert "READY=1" in world.notifications  # the deploy may go on
    # And once the role is released (failed over elsewhere), it reports as usual, after the old counter
    world.client.put_item(TableName=TABLE, Item={
        "pk": {"S": "node#node1"}, "instance_id": {"S": "i-0old0instance"}, "serving": {"BOOL": False},
        "lease_seq": {"N": "45"}})
    world.set_cluster("node2", epoch=3)
    world.cycle()  # its counter (read at start: 40) is behind: rejected, then it jumps past
    world.cycle()
    beat = world.heartbeat()
    assert beat["instance_id"] == INSTANCE and int(beat["lease_seq"]) > 45


def test_shutdown_stops_minio_disarms_and_tells_the_table(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.agent.request_stop()
    world.agent.shutdown()
    assert world.service.actions == ["start", "stop"]
    beat = world.heartbeat()
    assert (beat["serving"], beat["stop_reason"], beat["seen_epoch"]) == (False, "agent_stopped", "1")
    assert world.notifications[-1] == "STOPPING=1"


def test_run_loop_exits_on_request_and_stops_minio(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.agent.request_stop()  # as the SIGTERM handler does
    world.agent.run()
    assert not world.service.running


def test_a_start_that_has_not_taken_effect_yet_is_reported_as_serving(world: AgentWorld) -> None:
    # systemctl start --no-block returns before the unit is even "activating"
    world.set_cluster("node1", epoch=1)
    world.service.start = lambda: world.service.actions.append("start")  # type: ignore[method-assign]
    assert world.cycle() == "start_minio"
    assert not world.service.running
    world.cycle()
    assert world.heartbeat()["serving"] is True  # "may be serving": never under-report to the checker


def test_a_minio_running_without_the_agents_decision_is_stopped_at_start(world: AgentWorld) -> None:
    world.service.running = True
    world.agent.prepare()  # run() calls it before any thread starts
    assert world.service.actions == ["stop"]
    assert world.agent.status().may_run is False


def test_an_unbound_role_is_never_started(world: AgentWorld) -> None:
    """Review 3: an item without `active_instance` let every instance of the active node start MinIO (failed
    before the fix: MinIO started)."""
    world.set_cluster("node1", epoch=2, unbound=True)
    for _ in range(3):
        assert world.cycle() == "nothing"
    assert world.service.actions == []
    beat = world.heartbeat()
    assert (beat["serving"], beat["stop_reason"]) == (False, "role_lost")
    assert "not bound to an instance yet" in beat["detail"]
    # Once the checker binds the role to this instance, it starts
    world.set_cluster("node1", epoch=2, active_instance=INSTANCE)
    assert world.cycle() == "start_minio"


def test_a_minio_serving_when_the_role_becomes_unbound_keeps_serving(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=2)
    world.cycle()
    world.set_cluster("node1", epoch=2, unbound=True)
    for _ in range(3):
        assert world.cycle() == "nothing"
    assert world.service.actions == ["start"]
    assert world.heartbeat()["serving"] is True


def test_the_node_reports_its_own_lease_seconds(aws_env: None, tmp_path: Path) -> None:
    """Review 5: the checker must know the node's own G (a rolling config change can leave a node with a longer
    lease than the checker's deadline allows); failed before the fix: no lease_seconds in the item."""
    world = AgentWorld(tmp_path, lease_seconds=2.25)
    world.set_cluster("node2", epoch=1)
    world.cycle()
    assert world.heartbeat()["lease_seconds"] == "2.25"


def test_ready_only_once_a_heartbeat_was_written_and_read_back(world: AgentWorld) -> None:
    """Issue 12: a node whose IAM policy lets it read but not write its item (or whose writes vanish) must not
    tell systemd, and so CloudFormation, that it is ready: the deploy would go on and delete the old instance."""
    world.set_cluster("node2", epoch=3)
    undo = world.fail("PutItem")
    for _ in range(3):
        world.cycle()
    assert "READY=1" not in world.notifications
    undo()
    world.cycle()
    assert world.notifications.count("READY=1") == 1


def test_not_ready_while_the_heartbeat_does_not_read_back(world: AgentWorld) -> None:
    """The write was accepted but the item read back is not ours (another instance of this node wrote it, e.g.
    during a replacement): not ready yet. Failed before the fix (READY after the first accepted write)."""
    world.set_cluster("node2", epoch=3)
    real_get = world.client.get_item

    def foreign_item(**kwargs: Any) -> Any:
        result = real_get(**kwargs)
        if kwargs["Key"]["pk"]["S"] == "node#node1" and "Item" in result:
            result["Item"]["instance_id"] = {"S": "i-0someone0else"}
        return result

    world.client.get_item = foreign_item  # type: ignore[method-assign]
    for _ in range(3):
        world.cycle()
    assert "READY=1" not in world.notifications
    assert "read back" in world.agent.status().table_error
    world.client.get_item = real_get  # type: ignore[method-assign]
    world.cycle()
    assert world.notifications.count("READY=1") == 1
