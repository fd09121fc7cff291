"""Fencing: nothing moves until the old active node is known not to serve (invariant S3)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tests.failover.conftest import Harness


def stop_instances_fails(cluster: Harness) -> None:
    def throttled(_: dict[str, Any]) -> None:
        raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}, "StopInstances")

    cluster.call_hooks["StopInstances"] = throttled


def given_a_fencing_left_unconfirmed(cluster: Harness) -> None:
    """node1's agent is hung (serves and renews on) and StopInstances fails: the run ends in phase fencing."""
    node1 = cluster.agent("node1")
    node1.efs_ok = False
    node1.obeys = False
    stop_instances_fails(cluster)
    cluster.settle(1)
    result = cluster.invoke(max_probes=3)
    assert "not confirmed yet" in result["outcomes"][-1]
    del cluster.call_hooks["StopInstances"]


def test_fencing_ends_in_force_stop_when_the_old_node_keeps_serving(cluster: Harness) -> None:
    # Given node1 fails its EFS probe but its agent is hung: it keeps serving and heartbeating
    node1 = cluster.agent("node1")
    node1.efs_ok = False
    node1.obeys = False
    # When the checker takes over
    cluster.invoke(max_probes=4)
    # Then SSM was tried, fencing was not confirmed by it, and after the fence timeout the instance was
    # force-stopped; only then did the routes move
    operations = cluster.operations()
    stops = [params for operation, params in cluster.calls if operation == "StopInstances"]
    assert stops == [{"InstanceIds": [node1.instance_id], "Force": True}]
    assert cluster.instance_state(node1.instance_id) == "stopped"
    assert operations.index("SendCommand") < operations.index("StopInstances") < operations.index("ReplaceRoute")
    assert cluster.metric_total("FenceStopInstances") == 1
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert f"instance {node1.instance_id} is stopped" in item["reason"]
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}


def test_an_ssm_success_status_is_not_taken_as_fencing_confirmation(cluster: Harness) -> None:
    # moto reports every SSM command as Success; a hung agent still serves, so that must not count
    node1 = cluster.agent("node1")
    node1.efs_ok = False
    node1.obeys = False
    fence_started: list[float] = []
    cluster.call_hooks["SendCommand"] = lambda _: fence_started.append(cluster.clock.now())
    route_times: list[float] = []
    cluster.call_hooks["ReplaceRoute"] = lambda _: route_times.append(cluster.clock.now())
    cluster.invoke(max_probes=4)
    assert fence_started and route_times
    assert route_times[0] - fence_started[0] >= 10  # FENCE_TIMEOUT_SECONDS passed before anything moved


def test_routes_move_only_after_promotion_in_the_recorded_call_order(cluster: Harness) -> None:
    cluster.agent("node1").efs_ok = False
    cluster.invoke(max_probes=4)
    writes = [(i, params) for i, (operation, params) in enumerate(cluster.calls) if operation == "UpdateItem"]
    fence = next(i for i, p in writes if ":fencing" in p["ExpressionAttributeValues"]
                 and p["UpdateExpression"].startswith("SET phase = :fencing"))
    promote = next(i for i, p in writes if p["UpdateExpression"].startswith("SET phase = :stable"))
    route_calls = [i for i, (operation, _) in enumerate(cluster.calls) if operation in ("ReplaceRoute",
                                                                                         "CreateRoute")]
    assert len(route_calls) == 3
    assert fence < promote < min(route_calls)
    verify = [i for i, (operation, _) in enumerate(cluster.calls) if operation == "DescribeRouteTables"]
    assert any(i > max(route_calls) for i in verify)  # the move is read back


def test_a_fencing_not_confirmed_in_one_run_is_left_in_the_table_for_the_next_run(cluster: Harness) -> None:
    # Given a hung old node whose force stop keeps failing during this run
    node1 = cluster.agent("node1")
    given_a_fencing_left_unconfirmed(cluster)
    # Then the run ends with phase=fencing recorded and nothing moved
    item = cluster.cluster()
    assert (item["phase"], item["epoch"], item["fencing_node"], item["candidate"]) == ("fencing", 2, "node1",
                                                                                        "node2")
    assert "active" not in item
    assert set(cluster.routes().values()) == {node1.eni}
    # When the next scheduled run starts, it resumes the fencing (force stop) and completes the takeover
    cluster.invoke(max_probes=1)
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert cluster.instance_state(node1.instance_id) == "stopped"
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}


def test_resumed_takeover_repicks_when_the_candidate_became_unhealthy(cluster: Harness) -> None:
    # Given a third node and a takeover left in phase fencing with candidate node2
    cluster.configure(NODE_NAMES="node1,node2,node3")
    node3 = cluster.launch("node3", cluster.subnets[3])
    cluster.settle(2)
    given_a_fencing_left_unconfirmed(cluster)
    assert cluster.cluster()["candidate"] == "node2"
    # When node2 fails its EFS probe before the next run
    cluster.agent("node2").efs_ok = False
    cluster.settle(1)
    cluster.invoke(max_probes=1)
    # Then the next healthy node in priority order gets the role
    item: dict[str, Any] = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node3", 2, "stable")
    assert set(cluster.routes().values()) == {node3.eni}


def test_fenced_cluster_without_a_healthy_node_waits_without_repeating_the_fencing(cluster: Harness) -> None:
    # Given a takeover left in phase fencing (hung node1), and node2 then loses EFS
    node2 = cluster.agent("node2")
    given_a_fencing_left_unconfirmed(cluster)
    node2.efs_ok = False
    cluster.settle(1)
    calls_before = len(cluster.calls)
    # When the next run resumes: node1 is force-stopped, but nobody is healthy enough to promote
    result = cluster.invoke(max_probes=8)
    assert result["outcomes"] == ["no healthy standby to promote"] * 8
    new_calls = [operation for operation, _ in cluster.calls[calls_before:]]
    # Then the fencing ran once (one SSM command, one StopInstances), nothing moved, one alert went out
    assert (new_calls.count("SendCommand"), new_calls.count("StopInstances")) == (1, 1)
    assert not {"ReplaceRoute", "CreateRoute"} & set(new_calls)
    assert cluster.cluster()["phase"] == "fencing"
    assert len([m for m in cluster.sns_messages() if "no healthy standby" in m["subject"]]) == 1
    # And when node2 recovers, the following run promotes it
    node2.efs_ok = True
    cluster.settle(1)
    cluster.invoke(max_probes=1)
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert set(cluster.routes().values()) == {node2.eni}


def test_the_ssm_fence_never_waits_on_a_stop_job(cluster: Harness) -> None:
    """A blocking `systemctl stop` would wait behind a stop job already queued (a node shutting down queues
    MinIO's stop behind its handover unit): enqueue the stop and kill MinIO at once (review finding 1)."""
    node1 = cluster.agent("node1")
    node1.efs_ok = False
    node1.obeys = False
    cluster.invoke(max_probes=4)
    sent = [params for operation, params in cluster.calls if operation == "SendCommand"]
    assert sent and sent[0]["Parameters"]["commands"] == [
        "systemctl stop --no-block minio.service", "systemctl kill --signal=SIGKILL minio.service"]
