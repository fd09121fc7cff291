"""The drill's simulated watchdog device, driven step by step with a fake clock (no node, no namespace).

The writer side opens the FIFO exactly as the node agent opens a watchdog device: O_WRONLY | O_NONBLOCK."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drill.watchdog_sim import SimulatedWatchdog

TIMEOUT = 0.2
WRITER_FLAGS = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.now = 100.0
        self.resets: list[float] = []
        self.events: list[str] = []
        self.device = SimulatedWatchdog(tmp_path / "watchdog", TIMEOUT, lambda: self.resets.append(self.now),
                                        on_event=self.events.append, clock=lambda: self.now)

    def step(self, seconds: float = 0.0) -> None:
        self.now += seconds
        self.device.poll_once(wait_ms=0)

    def open(self) -> int:
        return os.open(self.device.path, WRITER_FLAGS)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = Harness(tmp_path)
    yield made
    made.device.close()


def test_open_arms_and_feeding_keeps_the_node_alive(harness: Harness) -> None:
    fd = harness.open()
    harness.step()
    assert harness.device.armed
    for _ in range(10):
        os.write(fd, b"1")
        harness.step(TIMEOUT * 0.6)
    assert harness.resets == []
    os.close(fd)


def test_magic_close_disarms(harness: Harness) -> None:
    fd = harness.open()
    os.write(fd, b"1")
    harness.step()
    os.write(fd, b"V")
    os.close(fd)
    harness.step()
    assert not harness.device.armed
    harness.step(TIMEOUT * 10)
    assert harness.resets == []
    assert harness.events == ["armed", "disarmed"]


def test_the_agents_start_test_open_v_close_in_one_step_leaves_it_disarmed(harness: Harness) -> None:
    fd = harness.open()
    os.write(fd, b"V")
    os.close(fd)
    harness.step()
    harness.step(TIMEOUT * 10)
    assert not harness.device.armed
    assert harness.resets == []


def test_close_without_magic_keeps_it_armed_and_it_fires_after_the_timeout(harness: Harness) -> None:
    fd = harness.open()
    os.write(fd, b"1")
    harness.step()
    os.close(fd)  # the writer died, or closed without 'V': "watchdog did not stop!"
    harness.step(TIMEOUT * 0.5)
    assert harness.device.armed and harness.resets == []
    harness.step(TIMEOUT * 0.6)
    assert harness.resets == [pytest.approx(100 + TIMEOUT * 1.1)]
    # After the reset the device is as after power-on: disarmed, it fires once only.
    assert not harness.device.armed
    harness.step(TIMEOUT * 10)
    assert len(harness.resets) == 1


def test_an_armed_writer_that_stops_feeding_fires(harness: Harness) -> None:
    fd = harness.open()
    os.write(fd, b"1")
    harness.step()
    harness.step(TIMEOUT + 0.01)  # still open, but frozen: no byte
    assert len(harness.resets) == 1
    os.close(fd)


def test_a_rearm_after_a_disarm_runs_the_timer_again(harness: Harness) -> None:
    first = harness.open()
    os.write(first, b"V")
    os.close(first)
    second = harness.open()  # disarmed, then armed again within one step: armed wins (it came last)
    harness.step()
    assert harness.device.armed
    harness.step(TIMEOUT + 0.01)
    assert len(harness.resets) == 1
    os.close(second)


def test_power_off_returns_an_armed_device_to_disarmed(harness: Harness) -> None:
    fd = harness.open()
    harness.step()
    os.close(fd)
    harness.device.power_off()
    harness.step(TIMEOUT * 10)
    assert harness.resets == []


def test_without_a_reader_the_agents_open_fails_with_enxio(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    with pytest.raises(OSError) as caught:
        os.open(path, WRITER_FLAGS)
    assert caught.value.errno == errno.ENXIO


def test_the_real_agent_watchdog_against_the_simulator(harness: Harness) -> None:
    watchdog_module = pytest.importorskip("node_agent.watchdog")
    agent_side = watchdog_module.Watchdog(str(harness.device.path), 2, required=True)
    assert agent_side.test()
    harness.step()
    assert not harness.device.armed
    assert agent_side.arm()
    harness.step()
    assert harness.device.armed
    assert agent_side.feed()
    harness.step(TIMEOUT * 0.5)
    agent_side.disarm()
    harness.step(TIMEOUT * 10)
    assert not harness.device.armed and harness.resets == []
    assert agent_side.arm()
    harness.step()
    harness.step(TIMEOUT + 0.01)  # the agent froze while armed
    assert len(harness.resets) == 1
