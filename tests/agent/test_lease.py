"""Issue 9, node side: a lease that nothing on the node can starve, and a node item that never goes back.

Holes (each test failed on the serial-tick agent):
(a) a late-applied write with a lower lease_seq is rejected and does not rewind the item;
(b) a slow but healthy node (1.5 s EFS probe, one failed DynamoDB call) keeps its lease and its MinIO;
(c) os.path.ismount on a hung mount does not block the lease;
(d) lease loss stops MinIO before anything is logged about it, and the watchdog stays fed afterwards;
(h) serving=false with seen_epoch=E is written only after MinIO has stopped for epoch E.
The threaded tests use real threads and short intervals; they assert behaviour ("MinIO was never stopped",
"the counter kept growing"), never how long something took.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from node_agent.efs_probe import EfsProbe
from node_agent.table import LeaseSeqConflict, NodeItem, StateTable
from tests.agent.conftest import TABLE, AgentWorld, FifoWatchdogDevice, wait_for


def item(seq: int, **fields: Any) -> NodeItem:
    return NodeItem(node="node1", lease_seq=seq, heartbeat_at=1_900_000_000.0 + seq, serving=True, seen_epoch=3,
                    **fields)


# ----- (a) the node item never goes back -----

def test_a_late_applied_write_with_a_lower_lease_seq_is_rejected_and_does_not_rewind(world: AgentWorld) -> None:
    table = StateTable(world.client, TABLE)
    table.write_node(item(5, detail="newer"))
    # The write of renewal 4, which the client gave up on, reaches DynamoDB only now
    with pytest.raises(LeaseSeqConflict):
        table.write_node(item(4, detail="older"))
    with pytest.raises(LeaseSeqConflict):
        table.write_node(item(5, detail="same counter"))
    beat = world.heartbeat()
    assert (beat["lease_seq"], beat["detail"]) == ("5", "newer")


def test_a_write_the_client_gave_up_on_never_collides_with_the_next_renewal(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=1)
    world.cycle()
    # The PutItem of the next renewal is applied by DynamoDB, but the client times out waiting for the answer
    world.table._client = _AppliedThenTimeout(world.client)
    assert world.agent.renew_once() is False
    assert world.heartbeat()["lease_seq"] == "2"  # it was applied
    # The next renewal uses a fresh counter: it is not rejected as a duplicate, so the lease keeps renewing
    world.clocks.advance(0.5)
    assert world.agent.renew_once() is True
    assert world.heartbeat()["lease_seq"] == "3"


class _AppliedThenTimeout:
    """A client whose first PutItem reaches DynamoDB but whose answer never arrives (read timeout)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        result = self._client.put_item(**kwargs)
        if not self._done:
            self._done = True
            raise ReadTimeoutError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com")
        return result


def test_an_agent_that_starts_continues_after_the_stored_lease_seq(aws_env: None, tmp_path: Path) -> None:
    world = AgentWorld(tmp_path)
    world.set_cluster("node2", epoch=1)
    world.client.put_item(TableName=TABLE, Item={"pk": {"S": "node#node1"}, "lease_seq": {"N": "41"}})
    world.cycle()
    assert world.heartbeat()["lease_seq"] == "42"


def test_a_rejected_write_reads_the_item_and_jumps_past_it(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=1)
    world.cycle()
    # Another writer (a previous run of the agent whose write landed late) is ahead
    world.client.put_item(TableName=TABLE, Item={"pk": {"S": "node#node1"}, "lease_seq": {"N": "90"}})
    assert world.agent.renew_once() is False
    assert world.heartbeat()["lease_seq"] == "90"
    world.clocks.advance(0.5)
    assert world.agent.renew_once() is True
    assert world.heartbeat()["lease_seq"] == "91"


# ----- (b) and (c): nothing on the node starves the lease -----

def _threaded_world(tmp_path: Path, **overrides: Any) -> AgentWorld:
    # Real clocks and threads; P = 0.25 s and G = 1.5 s leave room for a slow CI machine.
    settings = {"heartbeat_interval_seconds": 0.25, "lease_seconds": 1.5, "efs_probe_interval_seconds": 0.25,
                "efs_timeout_seconds": 2.0, **overrides}
    return AgentWorld(tmp_path, real_clock=True, **settings)


def _run_in_background(world: AgentWorld) -> threading.Thread:
    runner = threading.Thread(target=world.agent.run, daemon=True)
    runner.start()
    assert wait_for(lambda: world.service.running), "the active node never started MinIO"
    return runner


def _stop(world: AgentWorld, runner: threading.Thread) -> None:
    world.agent.request_stop()
    runner.join(10)
    assert not runner.is_alive()


def test_a_slow_but_healthy_node_keeps_its_lease_and_never_stops_its_own_minio(aws_env: None,
                                                                               tmp_path: Path) -> None:
    world = _threaded_world(tmp_path)
    slow = threading.Event()
    slow_probe_done = threading.Event()
    real_writer = world.efs._writer

    def sometimes_slow_writer(path: Path, payload: bytes) -> None:
        if slow.is_set():
            threading.Event().wait(1.5)  # a healthy EFS that takes 1.5 s to write and fsync one byte
            slow.clear()
            slow_probe_done.set()
        real_writer(path, payload)

    world.efs._writer = sometimes_slow_writer
    world.set_cluster("node1", epoch=1)
    runner = _run_in_background(world)
    # Given the node serves, when EFS turns slow and one DynamoDB call fails (the next renewal is the retry)
    seq_before = world.agent.lease_seq or 0
    world.fail("PutItem", times=1)
    slow.set()
    assert wait_for(slow_probe_done.is_set)
    seq_after_slow_probe = world.agent.lease_seq or 0
    assert wait_for(lambda: (world.agent.lease_seq or 0) >= seq_after_slow_probe + 4)
    actions = list(world.service.actions)
    status = world.agent.status()
    _stop(world, runner)
    # Then the lease kept renewing during the slow probe, and MinIO was never stopped or killed
    assert seq_after_slow_probe > seq_before + 2
    assert actions == ["start"]
    assert status.stop_reason == "none" and status.may_run


def test_a_hung_ismount_does_not_block_the_efs_probe(tmp_path: Path) -> None:
    release = threading.Event()
    probe = EfsProbe(str(tmp_path), "node1", 0.1, ismount=lambda _path: release.wait(30))
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(probe.run()), daemon=True)
    caller.start()
    caller.join(5)
    try:
        assert not caller.is_alive(), "EfsProbe.run() blocked on os.path.ismount"
        assert not results[0].ok and "did not finish" in results[0].detail
    finally:
        release.set()


def test_a_hung_os_path_ismount_does_not_block_the_efs_probe(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    # The same through os.path.ismount itself, as a hung NFS mount makes the real call behave
    release = threading.Event()
    monkeypatch.setattr("os.path.ismount", lambda _path: release.wait(30))
    probe = EfsProbe(str(tmp_path), "node1", 0.1)
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(probe.run()), daemon=True)
    caller.start()
    caller.join(5)
    try:
        assert not caller.is_alive(), "EfsProbe.run() blocked on os.path.ismount"
        assert not results[0].ok
    finally:
        release.set()


def test_a_hung_mount_does_not_block_the_lease(aws_env: None, tmp_path: Path) -> None:
    world = _threaded_world(tmp_path, efs_timeout_seconds=0.3)
    hung = threading.Event()
    release = threading.Event()
    world.efs._require_mount = True

    def ismount(_path: Path) -> bool:
        if hung.is_set():
            release.wait(30)  # stat() of a hung NFS mount point
        return True

    world.efs._ismount = ismount
    world.set_cluster("node2", epoch=1)
    runner = threading.Thread(target=world.agent.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: world.agent.status().renewals >= 2)
        hung.set()
        assert wait_for(lambda: not world.agent.status().efs_ok)  # the probe reports the hang...
        renewals = world.agent.status().renewals
        assert wait_for(lambda: world.agent.status().renewals >= renewals + 4)  # ...and the lease goes on
        assert world.agent.lease_valid()
    finally:
        release.set()
        _stop(world, runner)


# ----- (d) lease loss: stop MinIO first, then log; no reset afterwards -----

class _StateAtLogTime(logging.Handler):
    def __init__(self, world: AgentWorld) -> None:
        super().__init__(logging.DEBUG)
        self.world = world
        self.records: list[tuple[str, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.getMessage(), self.world.service.running))


def test_lease_loss_stops_minio_before_anything_is_logged_and_keeps_feeding_the_watchdog(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.running and world.watchdog.armed
    spy = _StateAtLogTime(world)
    logger = logging.getLogger("node_agent")
    logger.addHandler(spy)
    try:
        # The table becomes unreachable; the guard checks the lease every 0.1 s
        world.fail("GetItem")
        world.fail("PutItem")
        while world.service.running:
            world.agent.renew_once()
            world.agent.guard_once()
            world.clocks.advance(0.1)
        assert world.service.actions == ["start", "kill"]
        fed_before = watchdog_device.data().count(b"1")
        for _ in range(10):  # the table stays unreachable; the agent stays alive
            world.agent.renew_once()
            world.agent.reconcile_once()
            world.agent.guard_once()
            world.clocks.advance(0.1)
    finally:
        logger.removeHandler(spy)
    # Every log line about it was written after MinIO had stopped
    lease_lines = [(message, running) for message, running in spy.records if "lease" in message]
    assert lease_lines, spy.records
    assert all(not running for _, running in spy.records), spy.records
    assert world.agent.status().stop_reason == "lease_lost"
    # MinIO is confirmed stopped, so the watchdog keeps being fed: a slow table never resets the node
    assert wait_for(lambda: watchdog_device.data().count(b"1") >= fed_before + 10)
    assert not watchdog_device.fired()


def test_an_unreachable_table_self_fences_without_a_watchdog_reset(aws_env: None, tmp_path: Path,
                                                                   watchdog_device: FifoWatchdogDevice) -> None:
    world = _threaded_world(tmp_path, watchdog="required", watchdog_device=str(watchdog_device.path))
    world.set_cluster("node1", epoch=1)
    runner = _run_in_background(world)
    try:
        assert world.watchdog.armed
        world.fail("GetItem")
        world.fail("PutItem")
        assert wait_for(lambda: not world.service.running)
        assert world.service.actions == ["start", "kill"]
        fed = watchdog_device.data().count(b"1")
        assert wait_for(lambda: watchdog_device.data().count(b"1") >= fed + 15)  # fed for > W = 1 s more
        assert not watchdog_device.fired()
    finally:
        _stop(world, runner)


# ----- (h) serving=false at epoch E only after MinIO stopped for E -----

def test_serving_false_at_the_new_epoch_is_written_only_after_minio_stopped(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    world.cycle()
    assert world.service.running
    written: list[tuple[bool, int, bool]] = []  # (serving, seen_epoch, MinIO running at the time of the write)

    def record(params: dict[str, Any], **_: Any) -> None:
        written_item = params["Item"]
        if not written_item["pk"]["S"].startswith("node#"):
            return
        written.append((written_item["serving"]["BOOL"], int(written_item["seen_epoch"]["N"]),
                        world.service.running))

    world.client.meta.events.register("provide-client-params.dynamodb.PutItem", record)
    # The checker fences: epoch 4. MinIO's stop is slow; the lease thread keeps writing meanwhile
    world.set_cluster(None, epoch=4, phase="fencing")
    world.agent.renew_once()  # the lease thread reads epoch 4 first; MinIO still runs, so: serving at epoch 3
    world.service.stop_gate = threading.Event()
    reconciler = threading.Thread(target=world.agent.reconcile_once, daemon=True)
    reconciler.start()
    assert wait_for(lambda: "stop" in world.service.actions)
    for _ in range(3):
        world.agent.renew_once()
        world.clocks.advance(0.1)
    world.service.stop_gate.set()
    reconciler.join(5)
    world.agent.renew_once()
    # While the stop was under way: still serving, still at epoch 3; after it: serving=false at epoch 4
    assert written[:4] == [(True, 3, True)] * 4
    assert written[-1] == (False, 4, False)
    assert all(running is False for serving, epoch, running in written if not serving and epoch >= 4)


# ----- review 4: a lease lost while EFS is failing resets the node (dirty NFS pages) -----

def _lose_the_lease_and_keep_guarding(world: AgentWorld, seconds: float,
                                      until: Callable[[], bool] | None = None) -> None:
    """The table is unreachable; the lease and guard threads go on for `seconds` of real time (the reconcile loop
    is stuck in MinIO's graceful stop on the hung mount)."""
    world.fail("GetItem")
    world.fail("PutItem")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until is not None and until()):
        world.agent.renew_once()
        world.agent.guard_once()
        world.clocks.advance(0.1)
        time.sleep(0.05)


def _break_efs(world: AgentWorld) -> None:
    monitor = world.mount / ".efs-ha" / "monitor-node1.txt"
    monitor.unlink()
    monitor.mkdir()
    world.agent.probe_efs_once()
    assert not world.agent.status().efs_ok


def test_a_lease_lost_while_efs_fails_kills_minio_and_lets_the_watchdog_reset_the_node(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """A killed MinIO's dirty NFS pages could reach EFS once the network returns, after the checker promoted the
    standby: only a reset (the kernel discards the page cache) ends them. Failed before the fix: the guard kept
    feeding after the kill, the device never fired."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.running and world.watchdog.armed
    _break_efs(world)  # the EFS probe fails (the reconcile loop's graceful stop hangs on the mount)
    records = _LogRecords()
    logger = logging.getLogger("node_agent")
    logger.addHandler(records)
    try:
        _lose_the_lease_and_keep_guarding(world, 10, until=watchdog_device.fired)
    finally:
        logger.removeHandler(records)
    assert not world.service.running and "kill" in world.service.actions
    assert watchdog_device.fired()
    assert world.watchdog.armed and not watchdog_device.data().endswith(b"V")  # never disarmed either
    reason = world.agent.status().reset_reason
    assert "resets" in reason and "EFS" in reason
    assert any("resets" in message for message in records.messages)


def test_a_lease_lost_while_an_efs_write_hangs_lets_the_watchdog_reset_the_node(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, efs_timeout_seconds=30.0)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.running and world.agent.status().efs_ok
    release = threading.Event()
    world.efs._writer = lambda _path, _payload: release.wait(30)  # a write stuck on the hung mount
    prober = threading.Thread(target=world.agent.probe_efs_once, daemon=True)
    prober.start()
    try:
        time.sleep(0.7)  # the probe has not timed out yet: the last published result still says EFS is fine
        assert world.agent.status().efs_ok
        _lose_the_lease_and_keep_guarding(world, 10, until=watchdog_device.fired)
        assert "kill" in world.service.actions
        assert watchdog_device.fired()
    finally:
        release.set()
        prober.join(5)


def test_a_lease_lost_while_efs_is_healthy_kills_minio_and_keeps_feeding(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    _lose_the_lease_and_keep_guarding(world, 3 * watchdog_device.timeout)
    assert world.service.actions == ["start", "kill"]
    assert not watchdog_device.fired()
    assert world.agent.status().reset_reason == ""


def test_after_a_reset_was_chosen_minio_is_not_started_again_even_if_the_lease_returns(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    _break_efs(world)
    undo = [world.fail("GetItem"), world.fail("PutItem")]
    world.clocks.advance(2.0)
    world.agent.guard_once()
    assert "kill" in world.service.actions
    # The table and EFS come back before the kernel resets the node: no new start, and no node item either (a
    # renewal would report serving=false, which the checker takes as fencing before the reset); the log says why
    for undo_failure in undo:
        undo_failure()
    seq = world.heartbeat()["lease_seq"]
    world.mount.joinpath(".efs-ha", "monitor-node1.txt").rmdir()
    for _ in range(3):
        world.cycle()
    assert world.service.actions.count("start") == 1
    assert world.heartbeat()["lease_seq"] == seq
    assert "the node resets" in world.agent.status().reset_reason
    assert world.watchdog.state != "ready"  # never disarmed


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# ----- review 7: the lease counts from a time no later than the cluster GetItem's send -----

def test_the_lease_counts_from_a_time_taken_before_the_cluster_getitem_is_sent(aws_env: None,
                                                                               tmp_path: Path) -> None:
    """The checker sees lease_seq advance no earlier than the GetItem's real send, so the agent's lease must start
    no later than that send: the timestamp is taken before the call (serialising, signing and connecting all come
    after it), never after the answer. A regression test: it passed on the reviewed code."""
    world = AgentWorld(tmp_path)
    world.set_cluster("node2", epoch=1)
    sends: list[tuple[float, bool]] = []  # (monotonic time on the wire, a read of the cluster item)

    def on_send(request: Any, **_: Any) -> None:
        world.clocks.advance(0.1)  # time between the agent's timestamp and the request on the wire
        sends.append((world.clocks.mono, b'"cluster"' in (request.body or b"")))

    def on_answer(**_: Any) -> None:
        world.clocks.advance(0.1)  # the answer takes time too

    world.client.meta.events.register("before-send.dynamodb.GetItem", on_send)
    world.client.meta.events.register("after-call.dynamodb.GetItem", on_answer)
    for _ in range(3):  # the first renewal also reads the stored lease_seq: that read comes before the timestamp
        before = world.clocks.mono
        assert world.agent.renew_once()
        cluster_send = [at for at, cluster in sends if cluster][-1]
        sent_at = world.agent.status().lease_sent_at
        assert sent_at is not None and before <= sent_at < cluster_send
        world.clocks.advance(0.1)
    # A write-conflict or a failed renewal never moves the recorded time (no later send is ever recorded)
    recorded = world.agent.status().lease_sent_at
    undo = world.fail("PutItem")
    assert world.agent.renew_once() is False
    undo()
    assert world.agent.status().lease_sent_at == recorded
