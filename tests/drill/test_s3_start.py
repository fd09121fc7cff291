"""The drill's S3 server start wrapper (drill/s3_start.py) under the agent's ProcessController: a start delayed
like ExecStartPre + MinIO's start on EFS, restarted in place after a crash; a start that keeps failing hits the
start limit, as minio.service's does."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from drill.s3_start import CRASH_FILE, DELAY_FILE
from node_agent.service import ProcessController
from tests.agent.conftest import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-c", "import time; print('serving', flush=True); time.sleep(60)"]


def wrapped(control: Path, log: Path, **kwargs: float) -> ProcessController:
    return ProcessController([sys.executable, "-m", "drill.s3_start", str(control), "--", *SERVER],
                             env={"PYTHONPATH": str(REPO_ROOT)}, log_path=str(log), **kwargs)  # type: ignore[arg-type]


def test_a_crash_is_restarted_in_place_after_restart_sec_and_the_start_delay(tmp_path: Path) -> None:
    log = tmp_path / "s3.log"
    controller = wrapped(tmp_path, log, restart_sec=0.2, stop_timeout_seconds=5)
    controller.start()
    assert wait_for(lambda: log.read_text().count("serving") == 1)
    (tmp_path / DELAY_FILE).write_text("0.6\n")
    first = controller.pid
    assert first is not None
    crashed_at = time.monotonic()
    os.killpg(first, signal.SIGKILL)
    # The agent's threads poll is_running() (the restart is made from there, as the agent would see it)
    assert wait_for(lambda: controller.is_running() and log.read_text().count("serving") == 2, 10)
    took = time.monotonic() - crashed_at
    assert took >= 0.8  # RestartSec + the start delay
    assert controller.restarts() == 1 and controller.pid != first and controller.is_running()
    assert "start delayed 0.6 s" in log.read_text()
    controller.stop()


def test_a_start_that_keeps_crashing_ends_at_the_start_limit(tmp_path: Path) -> None:
    log = tmp_path / "s3.log"
    controller = wrapped(tmp_path, log, restart_sec=0.05, start_limit_burst=3, stop_timeout_seconds=5)
    controller.start()
    assert wait_for(lambda: "serving" in log.read_text())
    (tmp_path / CRASH_FILE).write_text("crash\n")
    assert controller.pid is not None
    os.killpg(controller.pid, signal.SIGKILL)
    assert wait_for(lambda: not controller.is_running(), 15)
    assert controller.restarts() == 2  # the initial start + 2 restarts = StartLimitBurst 3
    assert log.read_text().count("crashing at start") == 2
