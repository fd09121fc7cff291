"""Given a settled cluster (node1 active, node2 standby), when the active node fails, then the VIP moves."""

from __future__ import annotations

from botocore.exceptions import ClientError

from tests.failover.conftest import Harness

EC2_STOPPED_EVENT = {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"}


def assert_failed_over_to_node2(cluster: Harness) -> None:
    item = cluster.cluster()
    assert (item["active"], item["epoch"], item["phase"]) == ("node2", 2, "stable")
    assert item["active_instance"] == cluster.agent("node2").instance_id
    assert set(cluster.routes().values()) == {cluster.agent("node2").eni}
    assert cluster.metric_total("Failovers") == 1
    assert any("failover node1 -> node2" in m["subject"] for m in cluster.sns_messages())


def test_failover_when_active_heartbeat_goes_stale(cluster: Harness) -> None:
    # Given node1's agent dies (no more heartbeats) and SSM cannot reach it
    cluster.agent("node1").alive = False

    def ssm_denied(_: dict) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendCommand")

    cluster.call_hooks["SendCommand"] = ssm_denied
    # When the checker probes for a while
    result = cluster.invoke(max_probes=12)
    # Then node2 is active, confirmed by the expired lease (the SSM error did not stop the takeover)
    assert result["ok"] is True
    assert_failed_over_to_node2(cluster)
    assert "lease expired" in cluster.cluster()["reason"]
    assert "StopInstances" not in cluster.operations()
    assert cluster.metric_total("DetectionSeconds") > 0
    assert cluster.metric_total("SwitchSeconds") > 0
    assert cluster.agent("node2").serving is True  # its agent started MinIO on seeing the role


def test_failover_when_active_reports_efs_write_failure(cluster: Harness) -> None:
    cluster.agent("node1").efs_ok = False
    cluster.invoke(max_probes=8)
    assert_failed_over_to_node2(cluster)
    # node1's own agent stopped MinIO on seeing the new epoch; that report confirmed the fencing
    assert "serving=false at epoch 2" in cluster.cluster()["reason"]
    assert "EFS not writable" in cluster.cluster()["reason"]


def test_failover_when_minio_is_down_on_active(cluster: Harness) -> None:
    cluster.agent("node1").minio_ok = False
    cluster.invoke(max_probes=8)
    assert_failed_over_to_node2(cluster)
    assert "MinIO health check failing" in cluster.cluster()["reason"]


def test_failover_when_the_active_instance_is_stopped(cluster: Harness) -> None:
    # Given node1's instance stops (its last heartbeat is still fresh)
    cluster.stop_instance(cluster.agent("node1").instance_id)
    event = {**EC2_STOPPED_EVENT, "detail": {"instance-id": cluster.agent("node1").instance_id,
                                             "state": "stopped"}}
    # When EventBridge delivers the state-change event
    result = cluster.invoke(event, max_probes=4)
    # Then the takeover happens within the threshold, fenced by the stopped instance
    assert result["trigger"].startswith("ec2 ")
    assert_failed_over_to_node2(cluster)
    assert result["outcomes"][:2] == [
        f"node1 failing {n}/3: instance {cluster.agent('node1').instance_id} is stopped" for n in (1, 2)]


def test_single_failed_probe_does_not_fail_over(cluster: Harness) -> None:
    # Given one failed probe, persisted in the checker item
    cluster.agent("node1").efs_ok = False
    cluster.clock.sleep(1)
    assert cluster.invoke(max_probes=1)["outcomes"][0].startswith("node1 failing 1/3")
    assert cluster.item("checker")["failures"] == {"node1": 1}
    # When node1 recovers before the threshold
    cluster.agent("node1").efs_ok = True
    cluster.clock.sleep(1)
    result = cluster.invoke(max_probes=3)
    # Then nothing moved and the counter is reset
    assert result["outcomes"] == ["ok", "ok", "ok"]
    assert cluster.item("checker")["failures"] == {}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    assert cluster.metric_total("Failovers") == 0


def test_failed_probes_accumulate_across_invocations(cluster: Harness) -> None:
    cluster.agent("node1").efs_ok = False
    cluster.clock.sleep(1)
    cluster.invoke(max_probes=2)
    assert cluster.cluster()["active"] == "node1"
    cluster.clock.sleep(1)
    result = cluster.invoke(max_probes=1)
    assert result["outcomes"] == ["failover node1 -> node2"]
    assert_failed_over_to_node2(cluster)


def test_no_failover_to_an_unhealthy_standby_and_an_alert_is_sent_once(cluster: Harness) -> None:
    # Given node2 cannot write to EFS, and node1 then fails
    cluster.agent("node2").efs_ok = False
    cluster.agent("node1").alive = False
    # When the checker probes for many cycles
    result = cluster.invoke(max_probes=15)
    # Then nothing moved, the metric counts every attempt, and SNS got exactly one alert
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node1", 1)
    assert set(cluster.routes().values()) == {cluster.agent("node1").eni}
    assert result["outcomes"][-1] == "no healthy standby"
    assert cluster.metric_total("NoHealthyStandby") >= 5
    alerts = [m for m in cluster.sns_messages() if "no healthy standby" in m["subject"]]
    assert len(alerts) == 1 and alerts[0]["body"]["cluster"] == cluster.cluster_id
    # And when node2 recovers, the checker (still trying) takes over
    cluster.agent("node2").efs_ok = True
    cluster.invoke(max_probes=3)
    assert cluster.cluster()["active"] == "node2"


def test_no_automatic_failback_when_the_old_node_recovers(cluster: Harness) -> None:
    cluster.agent("node1").efs_ok = False
    cluster.invoke(max_probes=8)
    assert cluster.cluster()["active"] == "node2"
    cluster.agent("node1").efs_ok = True
    cluster.settle(3)
    result = cluster.invoke(max_probes=6)
    assert set(result["outcomes"]) == {"ok"}
    assert (cluster.cluster()["active"], cluster.cluster()["epoch"]) == ("node2", 2)
    assert cluster.agent("node1").serving is False
