"""A crashed MinIO restarted in place by its service manager (minio.service: Restart=on-failure, bounded by
StartLimitBurst) is reported as `minio_restarting` (the restarts since it was last healthy) within the restart
budget, so the checker does not count those probes as failed; past the budget, or once systemd gives up, 0."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from node_agent.agent import MINIO_RESTART_BUDGET_SECONDS
from node_agent.service import START_LIMIT_BURST, ProcessController, SystemdController
from tests.agent.conftest import AgentWorld, wait_for


def serving(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=1)
    world.cycle()
    world.cycle()
    assert world.heartbeat()["minio_restarting"] == "0"


def crash(world: AgentWorld) -> None:
    """systemd saw MinIO die and restarts it: the unit is activating (auto-restart / start-pre / start)."""
    world.service.restart_count += 1
    world.minio_healthy = False


def test_a_restart_in_progress_is_reported_with_its_count_and_ends_when_healthy(world: AgentWorld) -> None:
    serving(world)
    crash(world)
    assert world.cycle() == "nothing"  # systemd restarts it, not the agent
    world.cycle()
    beat = world.heartbeat()
    assert (beat["serving"], beat["minio_ok"], beat["minio_restarting"]) == (True, False, "1")
    crash(world)  # the restarted MinIO died again before it came up
    world.cycle()
    world.cycle()
    assert world.heartbeat()["minio_restarting"] == "2"
    world.minio_healthy = True
    world.cycle()
    world.cycle()
    beat = world.heartbeat()
    assert (beat["minio_ok"], beat["minio_restarting"]) == (True, "0")
    assert world.service.actions == ["start"]


def test_the_restart_episode_is_logged(world: AgentWorld, caplog: pytest.LogCaptureFixture) -> None:
    serving(world)
    with caplog.at_level(logging.INFO, logger="node_agent"):
        crash(world)
        world.cycle()
        world.minio_healthy = True
        world.cycle()
    messages = [r.getMessage() for r in caplog.records]
    assert any("MinIO restarting in place (restart 1" in m for m in messages)
    assert any("healthy again after its restart in place" in m for m in messages)


def test_an_unhealthy_minio_that_was_not_restarted_is_not_reported_as_restarting(world: AgentWorld) -> None:
    serving(world)
    world.minio_healthy = False  # hung, not crashed: systemd restarts nothing
    for _ in range(4):
        world.cycle()
    assert (world.heartbeat()["minio_ok"], world.heartbeat()["minio_restarting"]) == (False, "0")


def test_a_restart_longer_than_the_budget_is_no_longer_reported(world: AgentWorld) -> None:
    serving(world)
    crash(world)
    world.cycle()
    world.cycle(seconds=MINIO_RESTART_BUDGET_SECONDS - 2)
    world.cycle()
    assert world.heartbeat()["minio_restarting"] == "1"
    world.cycle(seconds=3)
    world.cycle()
    assert world.heartbeat()["minio_restarting"] == "0"


def test_more_restarts_than_the_start_limit_are_not_reported(world: AgentWorld) -> None:
    serving(world)
    world.service.restart_count += START_LIMIT_BURST + 1
    world.minio_healthy = False
    world.cycle()
    world.cycle()
    assert world.heartbeat()["minio_restarting"] == "0"


def test_a_unit_that_systemd_gave_up_on_is_not_restarting(world: AgentWorld) -> None:
    serving(world)
    crash(world)
    world.cycle()
    world.service.running = False  # start limit hit: the unit is "failed", and an explicit start is refused

    def refused() -> None:
        raise RuntimeError("minio.service: Start request repeated too quickly")

    world.service.start = refused  # type: ignore[method-assign]
    world.cycle()
    world.cycle()
    assert world.heartbeat()["minio_restarting"] == "0"


@pytest.mark.parametrize(("output", "restarts"), [
    ("NRestarts=2\nSubState=start-pre\n", 2), ("NRestarts=2\nSubState=running\n", 2),
    ("NRestarts=0\nSubState=auto-restart\n", 1),  # RestartSec is running: the restart is already under way
    ("NRestarts=[not set]\nSubState=auto-restart\n", 0), ("", 0),
])
def test_systemd_restarts_reads_nrestarts_and_the_scheduled_one(output: str, restarts: int) -> None:
    def systemctl(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert argv == ["systemctl", "show", "--property=NRestarts,SubState", "minio.service"]
        return subprocess.CompletedProcess(argv, 0, stdout=output)

    assert SystemdController("minio.service", runner=systemctl).restarts() == restarts

    def broken(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, 60)

    assert SystemdController("minio.service", runner=broken).restarts() == 0


def _pid_changes(controller: ProcessController, pid: int | None) -> bool:
    return controller.is_running() and controller.pid not in (None, pid)


def test_process_controller_restarts_a_crash_after_restart_sec_like_restart_on_failure(tmp_path: Path) -> None:
    controller = ProcessController([sys.executable, "-c", "import time; time.sleep(60)"], restart_sec=0.3,
                                   stop_timeout_seconds=5)
    controller.start()
    first = controller.pid
    assert controller._process is not None and first is not None
    os.killpg(first, signal.SIGKILL)  # the crash: systemd would see the main process die
    assert controller._process.wait(5) == -9
    assert controller.is_running()  # auto-restart pending counts as running (systemd: activating)
    assert controller.pid == first and controller.restarts() == 1  # scheduled, not made before restart_sec
    assert wait_for(lambda: _pid_changes(controller, first), 5)
    assert controller.restarts() == 1
    controller.stop()
    assert controller.is_running() is False


def test_process_controller_gives_up_at_the_start_limit(tmp_path: Path) -> None:
    # Exits with an error at once, every time: the initial start + 2 restarts, then the third is refused.
    controller = ProcessController([sys.executable, "-c", "raise SystemExit(1)"], restart_sec=0.05,
                                   start_limit_burst=3, start_limit_interval=60)
    controller.start()
    assert wait_for(lambda: not controller.is_running(), 10)
    assert controller.restarts() == 2  # the third was refused: "failed"
    time.sleep(0.2)
    assert controller.is_running() is False and controller.restarts() == 2
    with pytest.raises(RuntimeError, match="start limit"):  # as systemd: "Start request repeated too quickly"
        controller.start()
    later = ProcessController([sys.executable, "-c", "raise SystemExit(1)"], restart_sec=0.05,
                              start_limit_burst=1, start_limit_interval=0.2)
    later.start()
    assert wait_for(lambda: not later.is_running(), 10)
    time.sleep(0.3)
    later.start()  # the interval has passed: an explicit start begins afresh
    assert later.restarts() in (0, 1)


def test_process_controller_does_not_restart_after_stop_kill_or_clean_exit(tmp_path: Path) -> None:
    clean = ProcessController([sys.executable, "-c", "pass"], restart_sec=0.0)
    clean.start()
    assert clean._process is not None and clean._process.wait(5) == 0
    assert clean.is_running() is False and clean.restarts() == 0
    # SIGTERM from outside (the drill's SSM "systemctl stop"): clean for Restart=on-failure
    termed = ProcessController([sys.executable, "-c", "import time; time.sleep(60)"], restart_sec=0.0)
    termed.start()
    assert termed.pid is not None
    os.killpg(termed.pid, signal.SIGTERM)
    assert termed._process is not None and termed._process.wait(5) == -signal.SIGTERM
    assert termed.is_running() is False and termed.restarts() == 0
    killed = ProcessController([sys.executable, "-c", "import time; time.sleep(60)"], restart_sec=0.0)
    killed.start()
    killed.kill()
    time.sleep(0.1)
    assert killed.is_running() is False and killed.restarts() == 0
