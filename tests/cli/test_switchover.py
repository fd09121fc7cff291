"""`efs-ha switchover --to NODE`: invoke the checker, or queue the request when it is busy, then wait."""

from __future__ import annotations

import io
import json
from typing import Any

from tests.cli.conftest import TABLE, FakeCluster, FakeLambda


def _assert_on(cluster: FakeCluster, node: str, epoch: int) -> None:
    item = cluster.item("cluster")
    assert (item["active"], item["phase"], int(item["epoch"])) == (node, "stable", epoch)
    assert set(cluster.routes().values()) == {cluster.agents[node].eni}
    assert cluster.agents[node].serving and not any(a.serving for a in cluster.agents.values() if a.node != node)


def test_happy_path_moves_every_route_and_reports_the_time(cluster: FakeCluster) -> None:
    result = cluster.cli("switchover", "--to", "node2")

    assert result.exit_code == 0, result.output
    assert cluster.lambda_client.events == [{"action": "switchover", "target": "node2"}]
    assert result.stdout.startswith("switched over node1 -> node2 in ")
    assert "queued" not in result.stdout
    _assert_on(cluster, "node2", epoch=2)


def test_happy_path_json(cluster: FakeCluster) -> None:
    result = cluster.cli("--json", "switchover", "--to", "node2")

    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert {k: answer[k] for k in ("ok", "from", "to", "queued", "epoch")} == {
        "ok": True, "from": "node1", "to": "node2", "queued": False, "epoch": 2}
    assert answer["seconds"] >= 0


def test_waits_until_the_new_node_serves(cluster: FakeCluster) -> None:
    """The checker answers once routes moved; MinIO on node2 starts only at the agents' next ticks."""
    agents_paused: list[float] = []

    def slow_start() -> None:
        # node2's agent needs three more ticks before it reports serving.
        if len(agents_paused) < 3 and cluster.item("cluster").get("active") == "node2":
            agents_paused.append(cluster.clock.now())
            cluster.agents["node2"].alive = False
        else:
            cluster.agents["node2"].alive = True

    cluster.clock.on_sleep.insert(0, slow_start)
    result = cluster.cli("switchover", "--to", "node2")

    assert result.exit_code == 0, result.output
    assert "waiting for MinIO to serve" in result.stderr
    assert len(agents_paused) == 3
    _assert_on(cluster, "node2", epoch=2)


def test_refusal_is_one_line_and_exit_1(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "answer"
    cluster.lambda_client.answer = {"ok": False, "reason": "the cluster changed meanwhile; read the status and retry"}

    result = cluster.cli("switchover", "--to", "node2")

    assert result.exit_code == 4  # refused
    assert result.stderr.strip().splitlines() == [
        "Error: switchover refused: the cluster changed meanwhile; read the status and retry"]
    _assert_on(cluster, "node1", epoch=1)


def test_throttled_invoke_queues_the_request_and_the_checker_runs_it(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"
    seen: list[dict[str, Any]] = []

    def running_checker() -> None:
        # The probe loop that holds the slot: its next cycle executes the queued request (once: the checker's own
        # sleeps while it runs the request must not start another run).
        request = cluster.item("request")
        if request and "taken_at" not in request:
            seen.append(request)
            cluster.probe()

    cluster.clock.on_sleep.append(running_checker)
    result = cluster.cli("switchover", "--to", "node2")

    assert result.exit_code == 0, result.output
    assert seen and seen[0]["action"] == "switchover" and seen[0]["target"] == "node2"
    assert seen[0]["request_id"] and float(seen[0]["requested_at"]) > 0
    assert f"request {seen[0]['request_id']} queued" in result.stderr
    assert "(queued request)" in result.stdout
    assert cluster.item("request") == {}
    _assert_on(cluster, "node2", epoch=2)


def test_queued_request_times_out_and_is_withdrawn(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"
    queued: list[dict[str, Any]] = []
    cluster.clock.on_sleep.append(lambda: queued.append(cluster.item("request")))

    result = cluster.cli("switchover", "--to", "node2", "--timeout", "5")

    queued = [item for item in queued if item]  # the status read before queuing sleeps too
    assert result.exit_code == 5  # timed out
    assert queued[0]["target"] == "node2"
    assert "Error: switchover to node2 not complete after 5s" in result.stderr
    assert f"queued request {queued[0]['request_id']} withdrawn" in result.stderr
    assert cluster.item("request") == {}
    _assert_on(cluster, "node1", epoch=1)


def test_a_pending_request_of_another_operator_is_not_clobbered(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"
    theirs = {"pk": "request", "action": "switchover", "target": "node2",
              "requested_at": cluster.clock.now() - 10, "request_id": "other-operator"}
    cluster.put(theirs)

    result = cluster.cli("switchover", "--to", "node2")

    assert result.exit_code == 4  # refused
    assert "another request is already queued (switchover to node2, id other-operator, 10s ago)" in result.stderr
    assert cluster.item("request")["request_id"] == "other-operator"


def test_queued_request_taken_but_not_executed(cluster: FakeCluster) -> None:
    """The checker deletes a request it refuses; the CLI must not wait for the full timeout then."""
    cluster.lambda_client.mode = "throttled"
    cluster.clock.on_sleep.append(lambda: cluster.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "request"}}))

    result = cluster.cli("switchover", "--to", "node2", "--timeout", "100")

    assert result.exit_code == 4  # refused
    assert "the checker took request" in result.stderr and "did not switch to node2" in result.stderr
    assert cluster.clock.now() - 1_900_000_000.0 < 10


def test_unknown_node_lists_valid_names(cluster: FakeCluster) -> None:
    result = cluster.cli("switchover", "--to", "node9")

    assert result.exit_code == 64  # usage error
    assert result.stderr.strip() == "Error: unknown node 'node9'; valid nodes: node1, node2"
    assert cluster.lambda_client.events == []


def test_unhealthy_target_is_refused_with_the_reason(cluster: FakeCluster) -> None:
    cluster.agents["node2"].alive = False
    cluster.clock.t += 30

    result = cluster.cli("switchover", "--to", "node2")

    assert result.exit_code == 4  # refused
    assert result.stderr.strip() == "Error: node2 is not healthy: no lease renewal seen for 2.0s (since first read)"
    assert cluster.lambda_client.events == []


def test_already_active_target_is_refused(cluster: FakeCluster) -> None:
    result = cluster.cli("switchover", "--to", "node1")

    assert result.exit_code == 4  # refused
    assert result.stderr.strip() == "Error: node1 is already active"


def test_function_error_is_one_line(cluster: FakeCluster) -> None:
    class Crashing(FakeLambda):
        def invoke(self, **_: Any) -> dict[str, Any]:
            payload = {"errorMessage": "environment variable VIP is required", "errorType": "SettingsError"}
            return {"StatusCode": 200, "FunctionError": "Unhandled",
                    "Payload": io.BytesIO(json.dumps(payload).encode())}

    result = cluster.cli("switchover", "--to", "node2", hooks=cluster.hooks(lambda_client=Crashing(cluster)))

    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: the checker function EfsHaCluster-checker failed: "
                                     "environment variable VIP is required")


def test_interrupt_while_queued_withdraws_the_request(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"
    queued: list[dict[str, Any]] = []

    def operator_presses_ctrl_c() -> None:
        if cluster.item("request"):  # the status read before queuing sleeps too
            queued.append(cluster.item("request"))
            raise KeyboardInterrupt

    cluster.clock.on_sleep.append(operator_presses_ctrl_c)
    result = cluster.cli("switchover", "--to", "node2")

    assert result.exit_code == 130
    assert queued[0]["target"] == "node2"
    assert result.stderr.strip().splitlines()[-1] == "Error: interrupted"
    assert cluster.item("request") == {}


def test_started_but_unfinished_switchover_is_waited_for(cluster: FakeCluster) -> None:
    """The checker ran out of time while fencing: it answers ok=false with the new epoch; its next run
    finishes the takeover, so the CLI waits instead of reporting a refusal."""

    def checker_out_of_time(**_: Any) -> dict[str, Any]:
        cluster.update_cluster(phase="fencing", epoch=2, fencing_node="node1", candidate="node2",
                               changed_at=cluster.clock.now(), reason="switchover: node1 -> node2 requested")
        cluster.ddb.update_item(TableName=TABLE, Key={"pk": {"S": "cluster"}},
                                UpdateExpression="REMOVE active, active_instance")
        answer = {"ok": False, "reason": "fencing of node1 not confirmed yet (epoch 2)", "epoch": 2}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}

    running: list[bool] = []

    def next_checker_run() -> None:
        # One checker run at a time (reserved concurrency 1): the run's own sleeps start no second run.
        if not running and cluster.item("cluster")["phase"] == "fencing":
            running.append(True)
            try:
                cluster.probe()
            finally:
                running.clear()

    cluster.lambda_client.invoke = checker_out_of_time  # type: ignore[method-assign]
    cluster.clock.on_sleep.append(next_checker_run)
    result = cluster.cli("--json", "switchover", "--to", "node2")

    assert result.exit_code == 0, result.output
    assert "checker started the switchover (epoch 2) but has not finished" in result.stderr
    assert json.loads(result.stdout)["epoch"] == 2
    _assert_on(cluster, "node2", epoch=2)
