"""MinIO stopped while the EFS mount is hung: the node resets instead of reporting serving=false.

A MinIO stopped (gracefully or not) while a write to the EFS mount is stuck leaves dirty pages in the page cache;
they can still reach EFS when the mount recovers, after the checker promoted the standby on the strength of this
node's serving=false report. Only the reset (the kernel discards the page cache) ends them. So:
- watchdog armed: kill MinIO, no more feeds, no more lease renewals (the checker can fence only by lease expiry,
  which with an armed watchdog comes after the reset), no final report at shutdown either;
- no watchdog: graceful stop, but the node keeps reporting serving=true (the checker must force-stop it);
- a plain write error (EROFS) queues nothing: graceful stop and serving=false as before.
Also: a shutdown that cannot stop MinIO on a node whose device was never armed arms it and leaves it unfed.

Each test of a hole failed before the fix (see the commit); the EROFS test is a regression test.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import AgentWorld, FifoWatchdogDevice, wait_for


class _Writes:
    """Every node item PutItem sent from now on: (lease_seq, serving, seen_epoch, MinIO running at the time)."""

    def __init__(self, world: AgentWorld) -> None:
        self.world = world
        self.items: list[tuple[int, bool, int, bool]] = []
        world.client.meta.events.register("provide-client-params.dynamodb.PutItem", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        item = params["Item"]
        if item["pk"]["S"].startswith("node#"):
            self.items.append((int(item["lease_seq"]["N"]), item["serving"]["BOOL"], int(item["seen_epoch"]["N"]),
                               self.world.service.running))


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # frees the stuck probe threads


def _hang_efs(world: AgentWorld, release: threading.Event) -> None:
    """Every EFS write blocks from now on (a hung NFS mount); the probe times out and says so."""
    world.efs._writer = lambda _path, _payload: release.wait(30)
    world.agent.probe_efs_once()
    status = world.agent.status()
    assert not status.efs_ok and "did not finish" in status.efs_detail
    assert world.efs.hung()


def _serving_world(tmp_path: Path, **settings: Any) -> AgentWorld:
    world = AgentWorld(tmp_path, efs_timeout_seconds=0.2, **settings)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.running
    return world


def _cycles_in_real_time(world: AgentWorld, seconds: float, until: Any = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until is not None and until()):
        world.cycle(0.1)
        time.sleep(0.05)


def test_minio_stopped_for_a_hung_efs_is_killed_and_the_node_resets_without_another_report(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice, release: threading.Event) -> None:
    """Failed before the fix: a graceful stop, the watchdog kept being fed and the next renewal reported
    serving=false at epoch 1 (efs_failed), which the checker takes as fencing."""
    world = _serving_world(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    assert world.watchdog.armed
    seq_before = int(world.heartbeat()["lease_seq"])
    writes = _Writes(world)
    _hang_efs(world, release)
    _cycles_in_real_time(world, 10, until=watchdog_device.fired)
    assert "kill" in world.service.actions and "stop" not in world.service.actions
    assert not world.service.running
    assert watchdog_device.fired()
    assert world.watchdog.armed and not watchdog_device.data().endswith(b"V")
    status = world.agent.status()
    assert "resets" in status.reset_reason and "EFS" in status.reset_reason
    # Not one node item after the kill: the lease ends on the checker's clock, after the reset
    assert all(running for _seq, _serving, _epoch, running in writes.items), writes.items
    assert all(serving for _seq, serving, _epoch, _running in writes.items), writes.items
    assert int(world.heartbeat()["lease_seq"]) <= seq_before + 1
    assert world.heartbeat()["serving"] is True
    # Nor at shutdown (SIGTERM before the reset): no serving=false, agent_stopped
    world.agent.shutdown()
    assert world.heartbeat()["serving"] is True
    assert world.watchdog.armed


def test_minio_stopped_for_a_lost_role_while_an_efs_write_hangs_takes_the_reset_path_too(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice, release: threading.Event) -> None:
    """The checker fences this node while a probe write is stuck but has not timed out yet (the published result
    still says EFS is fine): the stop is as dangerous. Failed before the fix: graceful stop, serving=false."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, efs_timeout_seconds=30.0)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.efs._writer = lambda _path, _payload: release.wait(30)
    prober = threading.Thread(target=world.agent.probe_efs_once, daemon=True)
    prober.start()
    assert wait_for(world.efs.hung)
    assert world.agent.status().efs_ok
    writes = _Writes(world)
    world.set_cluster(None, epoch=2, phase="fencing")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not watchdog_device.fired():
        world.agent.renew_once()
        world.agent.reconcile_once()
        world.agent.guard_once()
        world.clocks.advance(0.1)
        time.sleep(0.05)
    assert world.service.actions == ["start", "kill"]
    assert watchdog_device.fired()
    assert not any(not serving for _seq, serving, _epoch, _running in writes.items), writes.items
    assert world.heartbeat()["seen_epoch"] == "1"


def test_without_a_watchdog_minio_stopped_for_a_hung_efs_is_still_reported_as_serving(
        aws_env: None, tmp_path: Path, release: threading.Event) -> None:
    """WATCHDOG=off: nothing can reset the node, so the checker must force-stop the instance; it must never read
    this node's stop as fencing. Failed before the fix: serving=false at epoch 1."""
    world = _serving_world(tmp_path)
    _hang_efs(world, release)
    for _ in range(4):
        world.cycle()
    assert not world.service.running and "stop" in world.service.actions
    beat = world.heartbeat()
    assert (beat["serving"], beat["stop_reason"], beat["watchdog"]) == (True, "efs_failed", "off")
    assert "force-stop" in beat["detail"] and "hung" in beat["detail"]
    assert world.agent.status().reset_reason == ""
    # The lease goes on (nothing to fence by its expiry), and the final report at shutdown keeps serving=true
    seq = int(beat["lease_seq"])
    world.cycle()
    assert int(world.heartbeat()["lease_seq"]) > seq
    world.agent.shutdown()
    assert world.heartbeat()["serving"] is True


def test_minio_stopped_for_an_efs_write_error_stops_gracefully_and_reports_serving_false(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """EROFS: the write failed at once, nothing is queued: the graceful stop and serving=false stay (a regression
    test: it passed before the fix)."""
    world = _serving_world(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)

    def read_only(_path: Path, _payload: bytes) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    world.efs._writer = read_only
    for _ in range(3):
        world.cycle()
    assert world.service.actions == ["start", "stop"]
    beat = world.heartbeat()
    assert (beat["serving"], beat["stop_reason"], beat["seen_epoch"]) == (False, "efs_failed", "1")
    assert world.agent.status().reset_reason == ""
    fed = watchdog_device.data().count(b"1")
    _cycles_in_real_time(world, 2 * watchdog_device.timeout)
    assert watchdog_device.data().count(b"1") > fed
    assert not watchdog_device.fired()


def test_a_hand_started_minio_on_a_standby_stopped_while_efs_hangs_arms_the_device_and_resets(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice, release: threading.Event) -> None:
    """A standby never armed its device: at the stop with EFS hung it arms it (and never feeds it)."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, efs_timeout_seconds=0.2)
    world.set_cluster("node2", epoch=1)
    world.cycle()
    assert not world.watchdog.armed
    world.service.running = True  # started by hand
    _hang_efs(world, release)
    _cycles_in_real_time(world, 10, until=watchdog_device.fired)
    assert "kill" in world.service.actions and "stop" not in world.service.actions
    assert watchdog_device.fired()
    assert "resets" in world.agent.status().reset_reason


# ----- the existing reset path (lease lost while EFS fails): no lease writes after the reset was chosen -----

def test_after_a_lease_lost_while_efs_fails_the_lease_thread_writes_nothing_more(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """The table comes back before the kernel resets the node: the lease thread used to renew again and report
    serving=false, lease_lost at the current epoch, which the checker takes as fencing before the reset (failed
    before the fix)."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.cycle()
    assert world.heartbeat()["serving"] is True
    monitor = world.mount / ".efs-ha" / "monitor-node1.txt"
    monitor.unlink()
    monitor.mkdir()
    world.agent.probe_efs_once()
    undo = [world.fail("GetItem"), world.fail("PutItem")]
    world.clocks.advance(2.0)
    world.agent.guard_once()
    assert "kill" in world.service.actions and world.agent.status().reset_reason
    for undo_failure in undo:
        undo_failure()
    seq = int(world.heartbeat()["lease_seq"])
    writes = _Writes(world)
    world.set_cluster(None, epoch=2, phase="fencing")
    for _ in range(4):
        world.cycle()
    world.agent.shutdown()
    assert writes.items == []
    beat = world.heartbeat()
    assert (int(beat["lease_seq"]), beat["serving"]) == (seq, True)


# ----- a shutdown that cannot stop MinIO on a node whose device was never armed -----

def test_a_shutdown_that_cannot_stop_a_hand_started_minio_arms_the_device_and_leaves_it_unfed(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """Failed before the fix: the device stayed disarmed (ready) and nothing would ever reset the node."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node2", epoch=1)
    world.cycle()
    assert not world.watchdog.armed
    world.service.running = True  # MinIO started by hand on the standby, and it cannot be stopped
    world.service.fail_stop = True
    world.agent.start_threads()
    world.agent.request_stop()
    world.agent.shutdown()
    assert world.watchdog.armed and world.watchdog.state == "armed"
    assert wait_for(watchdog_device.fired)
    assert not watchdog_device.data().endswith(b"V")
    beat = world.heartbeat()
    assert (beat["serving"], beat["watchdog"]) == (True, "armed")
    assert "resets" in beat["detail"]


def test_a_shutdown_that_cannot_stop_minio_and_cannot_arm_says_so(aws_env: None, tmp_path: Path) -> None:
    world = AgentWorld(tmp_path, watchdog="required")  # no device at all: unavailable
    world.set_cluster("node2", epoch=1)
    world.cycle()
    world.service.running = True
    world.service.fail_stop = True
    world.agent.shutdown()
    beat = world.heartbeat()
    assert (beat["serving"], beat["watchdog"]) == (True, "unavailable")
    assert "cannot be armed" in beat["detail"]


def test_without_a_watchdog_a_lease_lost_while_efs_hangs_is_still_reported_as_serving(
        aws_env: None, tmp_path: Path, release: threading.Event) -> None:
    """The same hole on the lease path: the table comes back after the kill, and the node used to report
    serving=false, lease_lost (failed before the fix)."""
    world = _serving_world(tmp_path)
    world.cycle()
    _hang_efs(world, release)
    undo = [world.fail("GetItem"), world.fail("PutItem")]
    world.clocks.advance(2.0)
    world.agent.guard_once()
    assert world.service.actions == ["start", "kill"]
    for undo_failure in undo:
        undo_failure()
    for _ in range(3):
        world.cycle()
    beat = world.heartbeat()
    assert (beat["serving"], beat["watchdog"]) == (True, "off")
    assert "force-stop" in beat["detail"]


def test_efs_hanging_while_minio_stops_gracefully_takes_the_reset_path_too(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice, release: threading.Event) -> None:
    """The checker fences the node, EFS is fine at the decision but hangs during MinIO's graceful stop: no
    serving=false report afterwards, the node resets (failed before the fix)."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, efs_timeout_seconds=0.2)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    graceful_stop = world.service.stop

    def stop_on_a_hanging_mount() -> None:
        _hang_efs(world, release)
        graceful_stop()

    world.service.stop = stop_on_a_hanging_mount  # type: ignore[method-assign]
    writes = _Writes(world)
    world.set_cluster(None, epoch=2, phase="fencing")
    _cycles_in_real_time(world, 10, until=watchdog_device.fired)
    assert world.service.actions == ["start", "stop"]
    assert watchdog_device.fired()
    assert "resets" in world.agent.status().reset_reason
    assert all(serving for _seq, serving, _epoch, _running in writes.items), writes.items


def test_a_planned_stop_while_efs_is_hung_resets_instead_of_reporting_serving_false(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice, release: threading.Event) -> None:
    """SIGTERM (systemctl stop, an orderly OS shutdown) after the probe found EFS hung but before the reconcile loop
    acted on it: the same reset path as any other stop while EFS is hung, never a disarm and a serving=false."""
    world = _serving_world(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    writes = _Writes(world)
    _hang_efs(world, release)
    world.agent.shutdown()
    assert world.agent.status().reset_reason
    assert world.watchdog.armed
    assert writes.items == []  # no final report, no serving=false: the checker fences by lease expiry


def test_an_efs_hang_found_after_a_lease_lost_kill_still_resets_the_node(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice, release: threading.Event) -> None:
    """A whole-network partition: the lease ends before the EFS probe in flight counts as hung, so the kill finds EFS
    healthy; the hang found right after must still lead to the reset (the killed MinIO's pages may be queued)."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, efs_timeout_seconds=2.0)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.fail("GetItem")
    world.fail("PutItem")
    world.efs._writer = lambda _path, _payload: release.wait(30)
    world.agent.renew_once()
    world.clocks.advance(1.5)  # the lease has ended
    probe = threading.Thread(target=world.agent.probe_efs_once, daemon=True)
    probe.start()
    world.agent.guard_once()  # the kill: the probe in flight is not hung yet
    assert not world.service.running and not world.agent.status().reset_reason
    assert wait_for(lambda: world.efs.hung())
    world.agent.guard_once()
    assert world.agent.status().reset_reason
    assert wait_for(watchdog_device.fired)


def test_a_restarted_agent_keeps_the_reset_its_predecessor_chose(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice, release: threading.Event) -> None:
    """The agent chose a reset, then died (a crash, WatchdogSec's SIGKILL) and systemd restarted it before the
    kernel reset (watchdog_timeout_seconds can exceed RestartSec). Failed before the fix: the new agent found MinIO
    stopped, tested the device (open + magic close = disarmed) and renewed its lease, so the killed MinIO's dirty
    pages could reach EFS after the checker took its serving=false as fencing."""
    intent = tmp_path / "run" / "reset-pending"
    world = _serving_world(tmp_path, watchdog="required", watchdog_path=watchdog_device.path,
                           reset_intent_path=str(intent))
    _hang_efs(world, release)
    _cycles_in_real_time(world, 5, until=lambda: bool(world.agent.status().reset_reason))
    assert "EFS" in intent.read_text()
    successor = world.new_agent()  # same node and settings, none of the dead process's memory
    writes = _Writes(world)
    successor.prepare()
    status = successor.status()
    assert status.reset_reason.startswith("a previous run of this agent chose a reset")
    assert successor.watchdog.armed and not watchdog_device.data().endswith(b"V")
    assert successor.renew_once() is False
    successor.reconcile_once()
    successor.guard_once()
    successor.shutdown()
    assert writes.items == []  # no renewal, no final report: the lease ends on the checker's clock
    assert world.service.actions.count("start") == 1
    assert successor.watchdog.armed


def test_without_a_reset_intent_the_agent_starts_as_usual(
        aws_env: None, tmp_path: Path) -> None:
    """No intent file (the reboot cleared /run): the agent starts as usual."""
    world = AgentWorld(tmp_path, reset_intent_path=str(tmp_path / "run" / "reset-pending"))
    world.set_cluster("node1", epoch=1)
    assert world.cycle() == "start_minio"
    assert not (tmp_path / "run" / "reset-pending").exists()


def test_a_lease_lost_kill_with_efs_failing_chooses_the_reset_before_it_kills(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """The reset is chosen (no more feeds, renewals or final report) before the kill starts, as for a stop while
    EFS hangs: a shutdown racing a guard stuck in the kill must already see it. Failed before the fix (the reset was
    chosen only after the kill and its confirmation)."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    monitor = world.mount / ".efs-ha" / "monitor-node1.txt"
    monitor.unlink()
    monitor.mkdir()
    world.agent.probe_efs_once()
    seen_at_kill: list[str] = []
    kill = world.service.kill

    def observed_kill() -> None:
        seen_at_kill.append(world.agent.status().reset_reason)
        kill()

    world.service.kill = observed_kill  # type: ignore[method-assign]
    world.fail("GetItem")
    world.clocks.advance(2.0)
    world.agent.guard_once()
    assert seen_at_kill and "resets" in seen_at_kill[0]


def test_without_a_watchdog_a_shutdown_while_efs_hangs_keeps_reporting_serving(
        aws_env: None, tmp_path: Path, release: threading.Event) -> None:
    """watchdog: off, the agent is stopped (systemctl stop, a reboot) while an EFS write hangs: the stopped MinIO's
    pages may still reach EFS, so the final report must not say serving=false (the checker would take it as
    fencing). Failed before the fix: the final report said serving=false, agent_stopped."""
    world = _serving_world(tmp_path)
    _hang_efs(world, release)
    world.agent.shutdown()
    beat = world.heartbeat()
    assert beat["serving"] is True
    assert "no watchdog" in beat["detail"]


def test_a_standby_shut_down_while_efs_hangs_reports_serving_false(
        aws_env: None, tmp_path: Path, release: threading.Event) -> None:
    """Nothing ran there, so nothing can be held back: the usual final report."""
    world = AgentWorld(tmp_path, efs_timeout_seconds=0.2)
    world.set_cluster("node2", epoch=1)
    world.cycle()
    _hang_efs(world, release)
    world.agent.shutdown()
    assert world.heartbeat()["serving"] is False
