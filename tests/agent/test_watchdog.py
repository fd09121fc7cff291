"""The watchdog: the Watchdog class against a simulated device (a FIFO with a reader), and the agent's use of it.

Holes (each test failed on the agent without a watchdog):
(e) a frozen agent (guard thread not running) stops feeding the watchdog, so the node resets;
(f) watchdog required + device missing: the node never starts MinIO and reports unavailable;
(g) arming happens before every start, disarming only after a confirmed stop (and the node not active).
Never /dev/watchdog here: opening it could reset the test machine.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from node_agent.decision import Action, ClusterView, Observation, decide
from node_agent.watchdog import Watchdog
from tests.agent.conftest import INSTANCE, TABLE, AgentWorld, FifoWatchdogDevice, wait_for

# ----- the Watchdog class -----


def test_test_opens_and_magic_closes_the_device(watchdog_device: FifoWatchdogDevice) -> None:
    dog = Watchdog(str(watchdog_device.path), 2)
    assert dog.test() is True
    assert dog.state == "ready" and not dog.armed
    assert wait_for(lambda: watchdog_device.data() == b"V")


def test_arm_feeds_and_disarm_magic_closes(watchdog_device: FifoWatchdogDevice) -> None:
    dog = Watchdog(str(watchdog_device.path), 2)
    assert dog.arm() is True
    assert dog.state == "armed" and dog.armed
    assert dog.feed() and dog.feed()
    dog.disarm()
    assert dog.state == "ready" and not dog.armed
    assert dog.feed() is False  # nothing to feed once disarmed
    assert wait_for(lambda: watchdog_device.data() == b"111V")
    assert not watchdog_device.fired()


def test_an_armed_device_that_is_not_fed_fires(tmp_path: Path) -> None:
    device = FifoWatchdogDevice(tmp_path, timeout=0.2).start()
    try:
        dog = Watchdog(str(device.path), 1)
        assert dog.arm()
        assert wait_for(device.fired)
    finally:
        device.stop()


def test_a_device_without_a_reader_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "watchdog"
    os.mkfifo(fifo)  # nobody reads it: O_NONBLOCK makes the open fail (ENXIO) instead of hanging the agent
    dog = Watchdog(str(fifo), 2)
    assert dog.test() is False
    assert dog.state == "unavailable" and "cannot open" in dog.last_error
    assert dog.arm() is False and not dog.armed


def test_a_missing_device_is_unavailable(tmp_path: Path) -> None:
    dog = Watchdog(str(tmp_path / "missing"), 2)
    assert dog.test() is False and dog.state == "unavailable"
    assert dog.arm() is False


def test_a_regular_file_is_not_a_watchdog(tmp_path: Path) -> None:
    """Review 6: anything that is not a character device was taken for the drill's simulator, so a regular file
    (a typo'd WATCHDOG_DEVICE, a device node replaced by a file) reported `armed` with nothing behind it (failed
    before the fix: test() and arm() succeeded)."""
    path = tmp_path / "watchdog"
    path.write_bytes(b"")
    dog = Watchdog(str(path), 2)
    assert dog.test() is False
    assert dog.state == "unavailable"
    assert "not a watchdog device" in dog.last_error and str(path) in dog.last_error
    assert dog.arm() is False and not dog.armed and dog.state == "unavailable"
    assert path.read_bytes() == b""  # nothing written to it


def test_a_directory_is_not_a_watchdog(tmp_path: Path) -> None:
    dog = Watchdog(str(tmp_path), 2)
    assert dog.test() is False and dog.state == "unavailable"
    assert dog.arm() is False


def test_watchdog_off_reports_off_and_never_opens_anything(tmp_path: Path) -> None:
    dog = Watchdog(str(tmp_path / "missing"), 2, required=False)
    assert dog.test() and dog.arm()
    assert dog.state == "off" and not dog.armed


def test_a_character_device_gets_its_timeout_set_and_verified(monkeypatch: pytest.MonkeyPatch,
                                                              watchdog_device: FifoWatchdogDevice) -> None:
    # softdog's ioctls, without a real device: the FIFO pretends to be a character device
    import stat as stat_module

    from node_agent import watchdog as module

    calls: list[int] = []
    timeout = {"value": 0}

    def fake_ioctl(_fd: int, request: int, arg: bytes) -> bytes:
        calls.append(request)
        if request == module.WDIOC_SETTIMEOUT:
            timeout["value"] = int.from_bytes(arg, "little")
        return timeout["value"].to_bytes(4, "little")

    monkeypatch.setattr(module.stat, "S_ISCHR", lambda _mode: True)
    monkeypatch.setattr(module.fcntl, "ioctl", fake_ioctl)
    dog = Watchdog(str(watchdog_device.path), 2)
    assert dog.test()
    assert calls == [module.WDIOC_SETTIMEOUT, module.WDIOC_GETTIMEOUT]
    # A driver that does not take the timeout is not a watchdog the checker may count on
    monkeypatch.setattr(module.fcntl, "ioctl", lambda _fd, _request, _arg: (7).to_bytes(4, "little"))
    assert not dog.test() and "timeout is 7s" in dog.last_error
    assert stat_module.S_ISCHR  # the real module is untouched outside this test


# ----- (f) required but unavailable: never the active role -----

def test_decide_refuses_the_active_role_without_a_watchdog() -> None:
    obs = Observation(me="node1", cluster=ClusterView("node1", 2, "stable"), efs_ok=True, serving=False,
                      minio_healthy=False, lease_age_seconds=0.1, lease_seconds=1.5, watchdog="unavailable")
    decision = decide(obs)
    assert (decision.action, decision.stop_reason) == (Action.NOTHING, "watchdog_unavailable")


def test_required_watchdog_missing_means_minio_never_starts(aws_env: None, tmp_path: Path) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=tmp_path / "missing")
    world.set_cluster("node1", epoch=2)
    for _ in range(5):
        world.cycle()
    assert world.service.actions == []
    beat = world.heartbeat()
    assert (beat["watchdog"], beat["stop_reason"], beat["serving"]) == ("unavailable", "watchdog_unavailable", False)
    assert beat["watchdog_timeout"] == "1"


def test_a_watchdog_that_cannot_be_armed_at_start_time_prevents_the_start(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    assert world.watchdog.state == "ready"
    watchdog_device.stop()  # the device goes away after the start-up test
    world.set_cluster("node1", epoch=2)
    for _ in range(3):
        world.cycle()
    assert world.service.actions == []
    assert world.heartbeat()["stop_reason"] == "watchdog_unavailable"


# ----- (g) arm before start, disarm only after a confirmed stop -----

def test_arming_precedes_every_start_and_disarming_follows_a_confirmed_stop(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert world.service.events == ["armed", "start"]
    assert world.heartbeat()["watchdog"] == "ready"  # written before the start; the next item says armed
    world.cycle()
    assert world.heartbeat()["watchdog"] == "armed"
    # The role moves away but the stop fails: MinIO may run, so the watchdog stays armed (and fed)
    world.service.fail_stop = True
    world.set_cluster("node2", epoch=2)
    world.cycle()
    world.cycle()
    assert world.watchdog.armed and "disarmed" not in world.service.events
    # The stop succeeds: disarmed only after it
    world.service.fail_stop = False
    world.cycle()
    assert world.service.events == ["armed", "start", "stopped", "disarmed"]
    world.cycle()
    assert world.heartbeat()["watchdog"] == "ready"
    assert watchdog_device.data().endswith(b"V")
    assert not watchdog_device.fired()


def test_the_active_node_stays_armed_while_minio_is_stopped_for_an_efs_failure(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    (world.mount / ".efs-ha" / "monitor-node1.txt").unlink()
    (world.mount / ".efs-ha" / "monitor-node1.txt").mkdir()
    world.cycle()
    assert not world.service.running
    assert world.watchdog.armed  # still the active node: re-armed starts are not needed when EFS comes back


def test_a_shutdown_that_cannot_stop_minio_leaves_the_watchdog_armed(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.service.fail_stop = True
    world.agent.shutdown()
    # Closed without the magic 'V' when the process exits: the kernel resets the node, MinIO dies with it
    assert world.watchdog.armed
    assert world.heartbeat()["serving"] is True


# ----- (e) a frozen agent stops feeding -----

def test_only_the_guard_feeds_the_watchdog(aws_env: None, tmp_path: Path,
                                           watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    assert wait_for(lambda: watchdog_device.data() == b"V11")  # test, arm, one guard feed
    for _ in range(5):  # the guard thread is frozen; everything else runs
        world.agent.probe_efs_once()
        world.agent.renew_once()
        world.agent.reconcile_once()
        world.clocks.advance(0.1)
    assert watchdog_device.data() == b"V11"


def test_a_frozen_agent_stops_feeding_and_the_watchdog_fires(aws_env: None, tmp_path: Path,
                                                             watchdog_device: FifoWatchdogDevice) -> None:
    frozen = threading.Event()
    release = threading.Event()

    def notifier(message: str) -> bool:
        if message == "WATCHDOG=1" and frozen.is_set():
            release.wait(30)  # the guard blocks (a GIL stall, a blocked write, a paused VM)
        return True

    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, real_clock=True,
                       heartbeat_interval_seconds=0.25, efs_probe_interval_seconds=0.25, notifier=notifier)
    world.set_cluster("node1", epoch=1)
    runner = threading.Thread(target=world.agent.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: world.service.running and world.watchdog.armed)
        frozen.set()
        # The watchdog fires although the lease thread still renews and MinIO still runs: the kernel, not a
        # Python thread, ends it
        assert wait_for(watchdog_device.fired)
        assert world.service.running
    finally:
        release.set()
        world.agent.request_stop()
        runner.join(10)


def test_a_planned_stop_keeps_feeding_the_watchdog_until_minio_has_stopped(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """systemctl stop/reboot of the active node: MinIO's graceful stop may take longer than the watchdog timeout,
    and a planned stop must never reset the node."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.agent.start_threads()
    assert wait_for(lambda: watchdog_device.data().count(b"1") >= 3)  # the guard feeds
    world.service.stop_gate = threading.Event()
    slow_stop = threading.Timer(2 * watchdog_device.timeout, world.service.stop_gate.set)
    slow_stop.start()
    world.agent.request_stop()  # what SIGTERM does
    world.agent.shutdown()
    slow_stop.join()
    assert world.service.events[-2:] == ["stopped", "disarmed"]
    assert not watchdog_device.fired()
    assert world.heartbeat()["stop_reason"] == "agent_stopped"


# ----- review 1: arm, THEN check the lease, then start -----

def test_a_freeze_before_the_watchdog_is_armed_never_starts_minio_after_the_lease_ended(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """A freeze (SIGSTOP, a paused VM, memory thrash) between the start's lease check and arm() used to start
    MinIO at an unbounded time after the lease ended, on a freshly armed device (failed before the fix: MinIO
    was started 30 s after its lease ended)."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1, active_instance=INSTANCE)
    world.agent.probe_efs_once()
    assert world.agent.renew_once()
    world.clocks.advance(1.4)  # the lease (1.5 s) is still valid when the reconcile loop decides to start
    real_arm = world.watchdog.arm

    def frozen_arm() -> bool:
        world.clocks.advance(30.0)  # the process is frozen right before the device is opened
        return real_arm()

    world.watchdog.arm = frozen_arm  # type: ignore[method-assign]
    decision = world.agent.reconcile_once()
    assert world.service.actions == []
    assert (decision.action, decision.stop_reason) == (Action.NOTHING, "lease_lost")
    status = world.agent.status()
    assert (status.may_run, status.stop_reason) == (False, "lease_lost")
    # The device stays armed (the node is still named active) and is fed: MinIO is confirmed stopped
    assert world.watchdog.armed
    for _ in range(3):
        world.agent.guard_once()
    assert wait_for(lambda: watchdog_device.data().endswith(b"1111"))
    assert not watchdog_device.fired()


def test_the_start_checks_the_lease_after_arming_and_marks_may_run_before_that_check(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """From the lease check on, the guard must already treat MinIO as "may run" (it then feeds only with a valid
    lease): otherwise a guard that keeps feeding a stopped MinIO could feed after the lease ended, just before
    the start."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path)
    world.set_cluster("node1", epoch=1, active_instance=INSTANCE)
    world.agent.probe_efs_once()
    assert world.agent.renew_once()
    seen: list[tuple[str, bool, bool]] = []
    real_valid = world.agent.lease_valid

    def spy_valid(now: float | None = None) -> bool:
        seen.append(("lease check", world.watchdog.armed, world.agent.status().may_run))
        return real_valid(now)

    world.agent.lease_valid = spy_valid  # type: ignore[method-assign]
    world.agent.reconcile_once()
    assert world.service.events == ["armed", "start"]
    assert seen[-1] == ("lease check", True, True)


# ----- review 2: an agent that starts while MinIO may still run never disarms the device -----

def test_an_agent_started_beside_a_minio_it_cannot_stop_arms_the_watchdog_instead_of_disarming_it(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    """MinIO stuck in D state on a hung EFS mount (or a failed unit with tasks left): the previous agent left the
    device armed on purpose. prepare() used to test() it (open + magic close = DISARM) and then report
    serving=true, watchdog=ready, which the checker counts as an enforcing watchdog (failed before the fix)."""
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, prepare=False)
    world.service.running = True
    world.service.fail_stop = True
    world.agent.prepare()
    assert world.watchdog.armed and world.watchdog.state == "armed"
    assert world.agent.status().may_run
    # No lease yet and MinIO cannot be killed: the guard does not feed, so the kernel resets the node
    world.agent.guard_once()
    assert "kill" in world.service.actions
    assert wait_for(watchdog_device.fired)
    assert b"V" not in watchdog_device.data()
    # EFS was not known to be healthy at that kill (not probed yet): a reset was chosen, so the lease thread writes
    # no node item at all (never serving=false, never watchdog=ready for this MinIO)
    assert world.agent.status().reset_reason
    world.set_cluster("node2", epoch=2)
    world.agent.renew_once()
    assert "Item" not in world.client.get_item(TableName=TABLE, Key={"pk": {"S": "node#node1"}},
                                               ConsistentRead=True)


def test_the_device_armed_at_start_is_disarmed_once_minio_is_confirmed_stopped(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, prepare=False)
    world.service.running = True
    world.service.fail_stop = True
    world.agent.prepare()
    world.set_cluster("node2", epoch=2)
    world.cycle()  # the stop still fails: armed, never magic-closed
    assert world.watchdog.armed and b"V" not in watchdog_device.data()
    world.service.fail_stop = False
    world.cycle()  # stopped, and this node is a standby: disarmed
    assert not world.watchdog.armed and world.watchdog.state == "ready"
    assert world.service.events[-2:] == ["stopped", "disarmed"]
    assert wait_for(lambda: watchdog_device.data().endswith(b"V"))
    assert not watchdog_device.fired()


def test_an_agent_started_after_minio_stopped_tests_and_disarms_the_device(
        aws_env: None, tmp_path: Path, watchdog_device: FifoWatchdogDevice) -> None:
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=watchdog_device.path, prepare=False)
    world.service.running = True
    world.agent.prepare()  # MinIO stops: confirmed
    assert not world.watchdog.armed and world.watchdog.state == "ready"
    assert wait_for(lambda: watchdog_device.data() == b"V")


def test_a_device_that_comes_back_while_minio_may_run_is_armed_not_tested(aws_env: None, tmp_path: Path) -> None:
    device = FifoWatchdogDevice(tmp_path, timeout=1.0)  # no reader yet: the open fails (ENXIO)
    world = AgentWorld(tmp_path, watchdog="required", watchdog_path=device.path, prepare=False)
    world.service.running = True
    world.service.fail_stop = True
    world.agent.prepare()
    assert world.watchdog.state == "unavailable"
    device.start()
    try:
        world.clocks.advance(31)  # the agent retries an unavailable device every 30 s
        world.agent.reconcile_once()
        assert world.watchdog.armed and world.watchdog.state == "armed"
        assert wait_for(lambda: device.data() == b"1")  # opened and fed, never magic-closed
    finally:
        device.stop()
