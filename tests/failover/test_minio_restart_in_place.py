"""A crashed MinIO is restarted in place first (minio.service: Restart=on-failure, RestartSec, StartLimitBurst);
the checker fails over only when the restarts fail. While the active node reports `minio_restarting` (1..the
restart limit) and its only problems are MinIO's, a probe is not counted, for at most the restart budget."""

from __future__ import annotations

from collections.abc import Callable

from tests.failover.conftest import Harness


def timeline(cluster: Harness, steps: dict[int, Callable[[], None]]) -> None:
    """Run `steps[n]` at the n-th agent tick (one a second) from now."""
    ticks = [0]

    def hook() -> None:
        ticks[0] += 1
        step = steps.get(ticks[0])
        if step:
            step()

    cluster.clock.on_sleep.insert(0, hook)


def crashed(cluster: Harness, restart: int) -> Callable[[], None]:
    def step() -> None:
        agent = cluster.agent("node1")
        agent.minio_ok, agent.minio_restarting = False, restart
    return step


def healthy(cluster: Harness) -> Callable[[], None]:
    def step() -> None:
        agent = cluster.agent("node1")
        agent.minio_ok, agent.minio_restarting = True, 0
    return step


def test_a_restart_that_takes_5_seconds_does_not_fail_over(cluster: Harness) -> None:
    # MinIO crashes; systemd restarts it: RestartSec, the secret fetch and MinIO's start take 5 s in all
    timeline(cluster, {1: crashed(cluster, 1), 6: healthy(cluster)})
    result = cluster.invoke(max_probes=12)
    assert int(cluster.cluster()["epoch"]) == 1 and cluster.cluster()["active"] == "node1"
    assert "restarting MinIO in place (restart 1" in " ".join(result["outcomes"])
    status = cluster.invoke({"action": "status"})
    assert status["nodes"]["node1"]["minio_restarting"] == 0 and status["nodes"]["node1"]["minio_ok"] is True
    assert "node1" not in cluster.item("checker").get("service_failed_at", {})
    assert not cluster.item("checker").get("failures")
    cluster.check_invariants()


def test_without_the_restart_report_the_same_5_seconds_fail_over(cluster: Harness) -> None:
    # The behaviour this replaces: 3 failed probes 1 s apart are shorter than one restart
    timeline(cluster, {1: crashed(cluster, 0), 6: healthy(cluster)})
    cluster.invoke(max_probes=12)
    assert cluster.cluster()["active"] == "node2"


def test_restarts_that_keep_failing_fail_over_and_hold_the_node(cluster: Harness) -> None:
    # Three restarts within StartLimitBurst, each dying again; then systemd gives up (unit "failed") and the agent
    # reports no restart: the probes count from there
    timeline(cluster, {1: crashed(cluster, 1), 5: crashed(cluster, 2), 9: crashed(cluster, 3),
                       13: crashed(cluster, 0)})
    result = cluster.invoke(max_probes=13)
    assert cluster.cluster()["active"] == "node1", result["outcomes"]  # still restarting in place
    cluster.invoke(max_probes=6)
    assert cluster.cluster()["active"] == "node2"
    status = cluster.invoke({"action": "status"})
    assert status["nodes"]["node1"]["held_back"] is True
    cluster.check_invariants()


def test_status_shows_a_restart_in_progress(cluster: Harness) -> None:
    timeline(cluster, {1: crashed(cluster, 2)})
    cluster.invoke(max_probes=3)
    node = cluster.invoke({"action": "status"})["nodes"]["node1"]
    assert (node["minio_restarting"], node["minio_ok"], node["consecutive_failures"]) == (2, False, 0)


def test_a_restart_that_hangs_fails_over_once_the_budget_is_spent(cluster: Harness) -> None:
    cluster.configure(MINIO_RESTART_BUDGET_SECONDS="10")
    timeline(cluster, {1: crashed(cluster, 1)})  # and it never comes up
    cluster.invoke(max_probes=10)
    assert cluster.cluster()["active"] == "node1"
    cluster.invoke(max_probes=6)
    assert cluster.cluster()["active"] == "node2"
    assert "node1" in cluster.item("checker").get("service_failed_at", {})


def test_more_restarts_than_the_limit_count_as_failed_probes(cluster: Harness) -> None:
    timeline(cluster, {1: crashed(cluster, 4)})
    cluster.invoke(max_probes=6)
    assert cluster.cluster()["active"] == "node2"


def test_a_restart_report_does_not_excuse_a_node_problem(cluster: Harness) -> None:
    def efs_too() -> None:
        crashed(cluster, 1)()
        cluster.agent("node1").efs_ok = False
    timeline(cluster, {1: efs_too})
    cluster.invoke(max_probes=6)
    assert cluster.cluster()["active"] == "node2"
