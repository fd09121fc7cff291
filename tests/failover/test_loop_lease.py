"""The loop lease (failover_lambda/loop_lease.py): one probe loop at a time without a concurrency reservation,
a scheduled run relieves a running loop without a gap, a frozen or killed holder's lease expires, and operator
actions never wait for it (issue 11, defects 2 and 4)."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend

from failover_lambda import handler as handler_module
from failover_lambda.checker import Checker
from failover_lambda.loop_lease import LOOP_LEASE_SECONDS
from tests.failover.conftest import SCHEDULED_EVENT, FakeContext, Harness


def ec2_event(instance_id: str) -> dict[str, Any]:
    return {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
            "detail": {"instance-id": instance_id, "state": "stopping"}}


def probe_gaps(cluster: Harness) -> list[float]:
    return [value for name, value in cluster.metric_log if name == "ProbeGapSeconds"]


@pytest.fixture
def atomic_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request, its condition included, atomically; moto's backend does not when two
    threads call it at once. The lease's correctness rests on that atomicity, so the threads get it here."""
    lock = threading.RLock()
    for name in ("get_item", "put_item", "update_item", "delete_item", "scan", "batch_write_item"):
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def serialized(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, serialized)


class Lockstep:
    """Virtual time for runs that share the fake clock: a sleep returns only once every run still going is asleep,
    and time then jumps to the earliest wake-up. Without it, whichever thread the OS schedules more often advances
    the shared clock by itself (a busy machine let one run's polling expire the other's lease)."""

    def __init__(self, cluster: Harness, runs: int) -> None:
        self.clock = cluster.clock
        self.hooks = list(cluster.clock.on_sleep)
        self.running = runs
        self.asleep: dict[threading.Thread, float] = {}
        self.condition = threading.Condition()

    def sleep(self, seconds: float) -> None:
        me = threading.current_thread()
        with self.condition:
            self.asleep[me] = self.clock.t + max(0.0, seconds)
            advanced = self._advance_if_all_asleep()
            while me in self.asleep:
                self.condition.wait()
        if advanced:
            for hook in self.hooks:  # the agents tick once per step of time, as with one sleeper
                hook()

    def finished(self) -> None:
        with self.condition:
            self.running -= 1
            self._advance_if_all_asleep()

    def _advance_if_all_asleep(self) -> bool:
        if not self.asleep or len(self.asleep) < self.running:
            return False
        wake = min(self.asleep.values())
        self.clock.t = max(self.clock.t, wake)
        for thread in [t for t, at in self.asleep.items() if at <= wake]:
            del self.asleep[thread]
        self.condition.notify_all()
        return True


def test_two_scheduled_runs_at_once_run_one_probe_loop_and_hand_it_over_without_a_gap(
        cluster: Harness, monkeypatch: Any, atomic_table: None) -> None:
    # Given every probe cycle records which run probed and when (the fake clock both runs share)
    probes: list[tuple[str, float]] = []
    real_cycle = Checker.cycle

    def recorded_cycle(self: Checker) -> str:
        outcome = real_cycle(self)  # raises LoopEnded instead when this run no longer holds the loop
        probes.append((threading.current_thread().name, cluster.clock.now()))
        return outcome

    monkeypatch.setattr(Checker, "cycle", recorded_cycle)
    cluster.configure(MAX_PROBES="4")
    cluster.metric_log.clear()
    start = threading.Barrier(2)
    results: dict[str, Any] = {}
    lockstep = Lockstep(cluster, runs=2)
    monkeypatch.setattr(cluster.clock, "sleep", lockstep.sleep)

    def run(name: str) -> None:
        start.wait(10)
        try:
            results[name] = handler_module.handler(SCHEDULED_EVENT, FakeContext(cluster.clock, 120))
        finally:
            lockstep.finished()

    # When two scheduled runs start at the same instant
    threads = [threading.Thread(target=run, args=(name,), name=name) for name in ("run-a", "run-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then one run probed, handed the loop over at the start of its next cycle, and the other probed on: their
    # probes never interleave
    assert all(result["ok"] for result in results.values()), results
    (first,) = [name for name, result in results.items() if "ended" in result]
    (second,) = set(results) - {first}
    assert results[first]["ended"].startswith("handed the probe loop over to")
    assert results[second]["cycles"] == 4 and "ended" not in results[second]
    order = [name for name, _ in probes]
    assert order == [first] * results[first]["cycles"] + [second] * 4
    # And the probes went on at the probe interval across the hand-over: the largest gap is under 2 intervals
    assert max(probe_gaps(cluster)) < 2 * float(cluster.env["PROBE_INTERVAL_SECONDS"])
    assert cluster.violations == []


def test_an_ec2_event_while_a_loop_runs_returns_at_once(cluster: Harness) -> None:
    # Given another run holds the loop lease
    now = cluster.clock.now()
    cluster.put_item({"pk": "loop", "holder": "other-run", "expires_at": now + LOOP_LEASE_SECONDS,
                      "last_probe_at": now})
    cluster.calls.clear()
    # When node1's instance reports a state change
    result = cluster.invoke(ec2_event(cluster.agent("node1").instance_id))
    # Then this run probes nothing: the running loop already probes every interval
    assert (result["ok"], result["cycles"]) == (True, 0)
    assert result["skipped"].startswith("a probe loop is running")
    assert cluster.item("loop")["holder"] == "other-run"
    assert cluster.clock.now() == now


def test_a_scheduled_run_takes_over_a_frozen_holders_loop_once_its_lease_expired(cluster: Harness) -> None:
    # Given a holder that froze (or was killed) mid-loop: it renewed 10 s ago and never will again
    now = cluster.clock.now()
    cluster.put_item({"pk": "loop", "holder": "frozen-run", "expires_at": now + LOOP_LEASE_SECONDS - 10,
                      "last_probe_at": now - 10})
    cluster.metric_log.clear()
    # When the next scheduled run starts
    result = cluster.invoke(max_probes=3)
    # Then it waited for the expiry (it asked for the loop, nobody handed it over) and then probed
    assert result["cycles"] == 3 and set(result["outcomes"]) == {"ok"}
    assert cluster.clock.now() >= now + LOOP_LEASE_SECONDS - 10
    # And its first probe reports the gap since the frozen holder's last recorded probe
    gaps = probe_gaps(cluster)
    assert gaps[0] >= LOOP_LEASE_SECONDS - 10 + 10
    assert max(gaps[1:]) <= float(cluster.env["PROBE_INTERVAL_SECONDS"])


def test_an_expired_lease_is_taken_at_once(cluster: Harness) -> None:
    now = cluster.clock.now()
    cluster.put_item({"pk": "loop", "holder": "dead-run", "expires_at": now - 1, "last_probe_at": now - 30})
    cluster.metric_log.clear()
    result = cluster.invoke(ec2_event(cluster.agent("node1").instance_id), max_probes=2)
    assert result["cycles"] == 2
    assert probe_gaps(cluster)[0] == 30


def test_a_finished_loop_releases_its_lease_with_its_last_probe_time(cluster: Harness) -> None:
    cluster.invoke(max_probes=2)
    probed_at = cluster.clock.now()
    loop = cluster.item("loop")
    assert "holder" not in loop and "successor" not in loop
    assert probed_at - 2 <= float(loop["last_probe_at"]) <= probed_at
    # And the next run's first probe measures the gap from there
    cluster.clock.sleep(7)
    cluster.metric_log.clear()
    cluster.invoke(max_probes=1)
    (gap,) = probe_gaps(cluster)
    assert probed_at + 7 - float(loop["last_probe_at"]) <= gap <= cluster.clock.now() - float(loop["last_probe_at"])


def test_operator_actions_run_while_another_run_holds_the_loop(cluster: Harness) -> None:
    # Given another run holds the loop lease
    now = cluster.clock.now()
    cluster.put_item({"pk": "loop", "holder": "other-run", "expires_at": now + 600})
    # When an operator asks for the status and then a switchover
    status = cluster.invoke({"action": "status"})
    switchover = cluster.invoke({"action": "switchover", "target": "node2"})
    # Then both ran (the epoch compare-and-set keeps them safe beside a loop), and the lease is untouched
    assert status["cluster"]["active"] == "node1"
    assert (switchover["ok"], switchover["to"]) == (True, "node2")
    assert cluster.item("loop")["holder"] == "other-run"
    assert cluster.violations == []


def test_a_holder_renews_its_lease_during_a_long_loop(cluster: Harness) -> None:
    cluster.calls.clear()
    cluster.invoke(max_probes=12)
    renewals = [params for operation, params in cluster.calls if operation == "UpdateItem"
                and params["Key"]["pk"]["S"] == "loop" and "expires_at = :exp," in params["UpdateExpression"]]
    # About one per LOOP_RENEW_SECONDS (5 s), not one per cycle
    assert 1 <= len(renewals) <= 3


def test_a_run_without_a_lambda_context_never_waits_for_a_running_loop(cluster: Harness) -> None:
    """A script calling the handler has no deadline to bound the wait, and its single cycle would end the loop."""
    now = cluster.clock.now()
    cluster.put_item({"pk": "loop", "holder": "other-run", "expires_at": now + LOOP_LEASE_SECONDS})
    result = handler_module.handler(SCHEDULED_EVENT, None)
    assert (result["cycles"], result["skipped"][:24]) == (0, "a probe loop is running ")
    assert cluster.item("loop")["holder"] == "other-run" and cluster.clock.now() == now
