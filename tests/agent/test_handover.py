"""Graceful handover (issue 12): a node being shut down says so (`leaving`), keeps serving until the checker has
moved the role, never takes the role again, and the OS stop path waits (bounded) for the move."""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import Any

import pytest

from node_agent.decision import Action, ClusterView, Observation, decide
from node_agent.handover import (
    HANDED_OVER,
    NOT_ACTIVE,
    TABLE_UNREADABLE,
    TIMED_OUT,
    wait_for_handover,
)
from tests.agent.conftest import INSTANCE, REGION, TABLE, AgentWorld, fail_calls

ACTIVE = ClusterView(active="node1", epoch=4, phase="stable", active_instance="i-1")
STANDBY_OBSERVATION = Observation(me="node1", cluster=ACTIVE, efs_ok=True, serving=False, minio_healthy=False,
                                  lease_age_seconds=0.5, lease_seconds=1.5, instance_id="i-1", leaving=True)


def test_a_leaving_node_never_starts_minio_even_when_named_active() -> None:
    decision = decide(STANDBY_OBSERVATION)
    assert decision.action is Action.NOTHING
    assert "shutting down" in decision.reason
    assert decide(replace(STANDBY_OBSERVATION, leaving=False)).action is Action.START_MINIO


def test_a_leaving_active_node_keeps_serving_until_the_role_moves() -> None:
    serving = replace(STANDBY_OBSERVATION, serving=True, minio_healthy=True)
    assert decide(serving).action is Action.NOTHING
    moved = replace(serving, cluster=ClusterView(active="node2", epoch=5, phase="stable", active_instance="i-2"))
    assert decide(moved).action is Action.STOP_MINIO


def test_the_node_item_says_leaving_and_minio_keeps_serving(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3, active_instance=INSTANCE)
    world.cycle()
    assert world.heartbeat()["leaving"] is False
    world.agent.request_handover()
    world.cycle()
    beat = world.heartbeat()
    assert (beat["leaving"], beat["serving"]) == (True, True)
    assert world.service.running and world.service.actions == ["start"]
    # The checker switches over: the role moves, MinIO stops the planned way (not a kill)
    world.set_cluster("node2", epoch=4)
    assert world.cycle() == "stop_minio"
    world.cycle()
    beat = world.heartbeat()
    assert (beat["serving"], beat["seen_epoch"], beat["leaving"]) == (False, "4", True)
    assert world.service.actions == ["start", "stop"]


def test_a_leaving_standby_refuses_a_role_given_to_it_late(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    world.cycle()
    world.agent.request_handover()
    world.set_cluster("node1", epoch=4)  # a checker that had not seen `leaving` yet
    for _ in range(3):
        assert world.cycle() == "nothing"
    assert world.service.actions == []
    assert world.heartbeat()["serving"] is False


def test_sigusr1_asks_the_agent_to_hand_over_even_before_the_agent_exists(world: AgentWorld) -> None:
    """The handlers come first in main(): building the agent may take 20 s of IMDS retries, and SIGUSR1's default
    action kills the process (review finding 7)."""
    from node_agent.agent import Signals

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    try:
        signals = Signals()
        signal.raise_signal(signal.SIGUSR1)  # still building the agent: recorded, not fatal
        signals.attach(world.agent)
        world.cycle()
        assert world.heartbeat()["leaving"] is True
        signal.raise_signal(signal.SIGTERM)
        assert world.agent._stop_requested.is_set()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _wait(world: AgentWorld, clock: FakeClock, on_poll: Any = None, timeout: float = 12.0) -> str:
    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if on_poll is not None:
            on_poll(clock.now)

    return wait_for_handover(world.table, "node1", timeout_seconds=timeout, poll_seconds=0.2,
                             monotonic=clock.monotonic, sleep=sleep)


def test_a_standby_shuts_down_without_waiting(world: AgentWorld) -> None:
    world.set_cluster("node2", epoch=3)
    clock = FakeClock()
    assert _wait(world, clock) == NOT_ACTIVE
    assert clock.now == 0.0


def test_the_stop_path_waits_until_the_role_has_moved_and_settled(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    clock = FakeClock()

    def checker(now: float) -> None:
        if now >= 1.0:
            world.set_cluster(None, epoch=4, phase="switching")  # moving: not yet settled
        if now >= 1.6:
            world.set_cluster("node2", epoch=5)

    assert _wait(world, clock, checker) == HANDED_OVER
    assert 1.6 <= clock.now < 2.0


def test_the_stop_path_gives_up_after_its_bound(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    clock = FakeClock()
    assert _wait(world, clock, timeout=5.0) == TIMED_OUT
    assert 5.0 <= clock.now < 5.5


def test_an_unreadable_table_does_not_hold_up_the_shutdown(world: AgentWorld) -> None:
    world.set_cluster("node1", epoch=3)
    fail_calls(world.client, "GetItem")
    clock = FakeClock()
    assert _wait(world, clock) == TABLE_UNREADABLE
    assert clock.now < 2.0


def test_the_stop_command_reads_the_agent_env_and_never_fails_the_shutdown(
        world: AgentWorld, capsys: pytest.CaptureFixture[str]) -> None:
    """systemd goes on with the shutdown whatever happened (exit 0); the outcome is in the journal."""
    import node_agent.handover as handover

    world.set_cluster("node2", epoch=3)
    env = {"STATE_TABLE_NAME": TABLE, "NODE_NAME": "node1", "MOUNT_POINT": "/mnt/efs", "AWS_REGION": REGION,
           "HANDOVER_TIMEOUT_SECONDS": "3"}
    assert handover.main(env) == 0
    assert "node1 is not (or no longer) the active node: nothing to wait for" in capsys.readouterr().err
    assert handover.main({"NODE_NAME": "node1"}) == 0
    assert "not attempted" in capsys.readouterr().err
    assert handover.main({**env, "HANDOVER_TIMEOUT_SECONDS": "soon"}) == 0
    assert "HANDOVER_TIMEOUT_SECONDS must be a number of seconds" in capsys.readouterr().err
