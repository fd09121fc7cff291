"""Issue 12, part 5: while a node has two instances (a replacement: the old one not terminated yet), its node item
belongs to one of them. The newer instance claims it with its first write; the older one's next write is then
refused and it stops writing (no flapping health), unless the newer one goes silent: then it takes the item back."""

from __future__ import annotations

from pathlib import Path

from node_agent.agent import SUCCESSOR_SILENT_SECONDS, Agent
from tests.agent.conftest import ENI, INSTANCE, PRIVATE_IP, TABLE, AgentWorld, FakeService

NEW_INSTANCE = "i-0fedcba9876543210"


def _replacement(world: AgentWorld) -> tuple[Agent, FakeService]:
    """A second instance of node1 (the replacement an Auto Scaling group launched), same table and clocks."""
    service = FakeService()
    agent = Agent(world.config, table=world.table, service=service, efs=world.efs, instance_id=NEW_INSTANCE,
                  eni_id=ENI, private_ip=PRIVATE_IP, minio_check=lambda: True, notifier=lambda _m: True,
                  wall_clock=lambda: world.clocks.wall, monotonic=lambda: world.clocks.mono,
                  launched_at=world.clocks.wall)  # launched after the old instance booted
    agent.prepare()
    return agent, service


def _tick(agent: Agent) -> None:
    agent.probe_efs_once()
    agent.renew_once()
    agent.reconcile_once()


def test_the_replacement_claims_the_item_and_the_old_instance_stops_writing(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    world.cycle()
    assert world.heartbeat()["instance_id"] == INSTANCE
    new, _ = _replacement(world)
    owners = []
    for _ in range(8):
        _tick(new)
        world.cycle()
        owners.append(world.heartbeat()["instance_id"])
    assert set(owners) == {NEW_INSTANCE}  # claimed at once, never flapping back
    assert "taken over by instance" in world.agent.status().table_error


def test_the_old_instance_takes_the_item_back_when_the_replacement_goes_silent(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    world.cycle()
    new, _ = _replacement(world)
    _tick(new)
    world.cycle()
    assert world.heartbeat()["instance_id"] == NEW_INSTANCE
    # The replacement dies during its bootstrap (a failed deploy rolls it back)
    for _ in range(int(SUCCESSOR_SILENT_SECONDS / 0.5) + 2):
        world.cycle()
    assert world.heartbeat()["instance_id"] == INSTANCE
    assert world.heartbeat()["lease_seq"] > "0"


def test_a_replacement_of_the_active_node_still_leaves_the_bound_instances_item_alone(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    world.cycle()
    assert world.service.running
    new, new_service = _replacement(world)
    for _ in range(4):
        _tick(new)
        world.cycle()
        assert world.heartbeat()["instance_id"] == INSTANCE
    assert new_service.actions == [] and world.service.running


def test_the_replacement_is_ready_once_its_claim_reads_back(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    world.cycle()
    new, _ = _replacement(world)
    _tick(new)
    assert new.status().first_report_done is True


def test_a_fenced_old_instance_still_reports_its_stop_while_the_replacement_stays_silent(world: AgentWorld) -> None:
    """The old instance of the active node hands over; the checker's fencing removes `active` (so the replacement
    is no longer shadowed by active_instance) but names fencing_instance: the fence is confirmed only by the old
    instance's own serving=false, so the replacement must stay silent until the fencing ends. Failed before the
    fix: the replacement claimed the item and the old instance's stop was never reported (review finding 2)."""
    world.set_cluster("node1", epoch=3)
    for _ in range(3):
        world.cycle()
    new, _ = _replacement(world)
    for _ in range(3):
        _tick(new)
        world.cycle()
    world.client.put_item(TableName=TABLE, Item={
        "pk": {"S": "cluster"}, "epoch": {"N": "4"}, "phase": {"S": "fencing"}, "fencing_node": {"S": "node1"},
        "fencing_instance": {"S": INSTANCE}, "candidate": {"S": "node2"}})
    # The old agent is busy stopping MinIO and its renewal slips a period: the replacement renews meanwhile.
    _tick(new)
    world.clocks.advance(0.25)
    _tick(new)
    world.clocks.advance(0.25)
    for _ in range(2):
        world.agent.renew_once()
        _tick(new)
        world.clocks.advance(0.5)
    for _ in range(6):
        _tick(new)
        world.cycle()
    item = world.heartbeat()
    assert not world.service.running
    assert (item["instance_id"], item["serving"], int(item["seen_epoch"])) == (INSTANCE, False, 4)


def test_a_silent_replacement_is_ready_only_if_it_may_write_its_item(world: AgentWorld) -> None:
    """Shadowed (the role bound to the old instance), the replacement writes nothing; it is ready only once the
    table has accepted a write it could make (a conditional write that never applies). Failed before the fix:
    ready with no write permission at all (review finding 3)."""
    world.set_cluster("node1", epoch=3)
    world.cycle()
    new, _ = _replacement(world)
    undo = world.fail("PutItem")
    _tick(new)
    assert new.status().first_report_done is False
    undo()
    _tick(new)
    assert new.status().first_report_done is True
    assert world.heartbeat()["instance_id"] == INSTANCE  # and it still wrote nothing


def test_a_restarted_agent_on_the_old_instance_does_not_take_the_item_back(world: AgentWorld) -> None:
    """The old instance's agent restarts (a crash, WatchdogSec's kill) while the replacement renews the item: its
    first write must not claim it back (the standby would read as unhealthy until the old instance is gone).
    The item says when each instance booted; only a newer boot claims. Failed before the fix (review finding 5)."""
    world.set_cluster("node2", epoch=3)
    world.cycle()
    launched = world.clocks.wall
    new, _ = _replacement(world)
    for _ in range(3):
        _tick(new)
        world.cycle()
    assert world.heartbeat()["instance_id"] == NEW_INSTANCE
    assert float(world.heartbeat()["launched_at"]) == launched
    world.agent = world.new_agent()
    world.agent.prepare()
    owners = []
    for _ in range(8):
        world.cycle()
        _tick(new)
        owners.append(world.heartbeat()["instance_id"])
    assert set(owners) == {NEW_INSTANCE}


# ----- second review: final reports and fencing (each failed before its fix) -----
def test_the_old_instances_final_report_never_takes_the_item_from_the_active_replacement(
        world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)  # node1 (old instance A = world.agent) is a standby
    world.cycle()
    new, new_service = _replacement(world)
    for _ in range(3):
        _tick(new)
        world.cycle()
    assert world.heartbeat()["instance_id"] == NEW_INSTANCE
    # node2 fails; the checker promotes node1, bound to the replacement (the node item's instance)
    world.set_cluster("node1", epoch=4, active_instance=NEW_INSTANCE)
    for _ in range(6):
        _tick(new)
        world.cycle()
    assert new_service.running
    # The old instance's agent stops (systemctl restart after a config push, or its shutdown in the deploy)
    world.agent.shutdown()
    owners, running = [], []
    for _ in range(40):  # 20 s of the replacement's threads
        _tick(new)
        new.guard_once()
        world.clocks.advance(0.5)
        owners.append(world.heartbeat()["instance_id"])
        running.append(new_service.running)
    assert all(running), "the active replacement's MinIO was killed"
    assert INSTANCE not in owners[2:]


def test_a_silent_replacements_final_report_never_takes_the_item_from_the_active_old_instance(
        world: AgentWorld) -> None:
    """A deploy rolled back: the replacement (shadowed, silent: the role is bound to the old instance) is
    terminated; its agent's shutdown writes a final report without the owner condition."""
    world.set_cluster("node1", epoch=3)  # bound to the old instance A
    for _ in range(6):
        world.cycle()
    assert world.service.running
    new, _ = _replacement(world)
    for _ in range(3):
        _tick(new)
        world.cycle()
    assert world.heartbeat()["instance_id"] == INSTANCE
    new.shutdown()  # the rollback terminates the replacement
    running = []
    for _ in range(30):
        world.cycle()
        running.append(world.service.running)
    assert all(running)


def test_a_replacement_of_a_fenced_dead_instance_reports_eventually(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    for _ in range(3):
        world.cycle()
    # node1's instance dies (terminated by its group): the checker fenced it (EC2 says not running) and waits
    # in FENCING for a healthy node to promote: node2 is unhealthy.
    world.client.put_item(TableName=TABLE, Item={
        "pk": {"S": "cluster"}, "epoch": {"N": "4"}, "phase": {"S": "fencing"}, "fencing_node": {"S": "node1"},
        "fencing_instance": {"S": INSTANCE}, "candidate": {"S": "node2"}})
    new, _ = _replacement(world)  # the group's replacement of node1; the old instance runs no more
    for _ in range(240):  # two minutes
        _tick(new)
        world.clocks.advance(0.5)
    item = world.heartbeat()
    assert item["instance_id"] == NEW_INSTANCE, (item["instance_id"], new.status().table_error)


def test_an_instance_keeps_its_launch_time_across_reboots(tmp_path: Path) -> None:
    """What orders two instances of a node is when each was launched (its first boot, kept on its root volume),
    not its last boot: a rebooted old instance (its watchdog reset it) must not look newer than its replacement.
    Failed before the fix (second review: the agent used the last boot)."""
    from node_agent.agent import launch_time

    record = tmp_path / "var" / "launched-at"
    first = launch_time(record, now=lambda: 1000.0, boot=lambda: 900.0)
    assert first == 900.0 and record.read_text().strip() == "900.000"
    assert launch_time(record, now=lambda: 5000.0, boot=lambda: 4900.0) == 900.0  # a reboot keeps it
