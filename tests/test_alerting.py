"""Issue 11, defect 1: alarms can reach the alert topic, and every way automatic failover can stop pages someone."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from failover_lambda import telemetry


def _cluster_id_dimension(template_json: dict[str, Any]) -> dict[str, Any]:
    """The ClusterId the checker really emits: the CLUSTER_ID its environment gives telemetry.Telemetry."""
    (cluster_id,) = [r["Properties"]["Environment"]["Variables"]["CLUSTER_ID"]
                     for r in template_json["Resources"].values()
                     if r["Type"] == "AWS::Lambda::Function"
                     and "CLUSTER_ID" in r["Properties"].get("Environment", {}).get("Variables", {})]
    return {"Name": "ClusterId", "Value": cluster_id}


def _topic(template_json: dict[str, Any]) -> str:
    (topic,) = [k for k, r in template_json["Resources"].items() if r["Type"] == "AWS::SNS::Topic"]
    return topic


def _alarm(template_json: dict[str, Any], prefix: str) -> dict[str, Any]:
    (alarm,) = [r["Properties"] for k, r in template_json["Resources"].items()
                if r["Type"] == "AWS::CloudWatch::Alarm" and k.startswith(f"Monitoring{prefix}")]
    return alarm


def test_topic_policy_lets_this_accounts_cloudwatch_alarms_publish(template: Template,
                                                                   template_json: dict[str, Any]) -> None:
    topic = _topic(template_json)
    template.has_resource_properties("AWS::SNS::TopicPolicy", {
        "Topics": [{"Ref": topic}],
        "PolicyDocument": Match.object_like({"Statement": Match.array_with([Match.object_like({
            "Effect": "Allow", "Action": "sns:Publish", "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Resource": {"Ref": topic},
            "Condition": {
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                "ArnLike": {"aws:SourceArn": {"Fn::Join": ["", [
                    "arn:", {"Ref": "AWS::Partition"}, ":cloudwatch:", {"Ref": "AWS::Region"}, ":",
                    {"Ref": "AWS::AccountId"}, ":alarm:*"]]}},
            }})])})})


def test_topic_policy_still_denies_publishing_without_tls(template: Template) -> None:
    template.has_resource_properties("AWS::SNS::TopicPolicy", {
        "PolicyDocument": Match.object_like({"Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Action": "sns:Publish",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])})})


def test_topic_key_lets_cloudwatch_encrypt_for_the_topic(template: Template) -> None:
    template.has_resource_properties("AWS::KMS::Key", {
        "KeyPolicy": Match.object_like({"Statement": Match.array_with([Match.object_like({
            "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"]})])})})


def test_no_other_service_publishes_to_the_topic(template_json: dict[str, Any]) -> None:
    """EventBridge rules target the checker only; a rule targeting the topic would need its own grant."""
    topic = _topic(template_json)
    for name, resource in template_json["Resources"].items():
        if resource["Type"] == "AWS::Events::Rule":
            for target in resource["Properties"].get("Targets", []):
                assert target["Arn"] != {"Ref": topic}, name


def test_blind_checker_alarm_counts_unknown_probes(template_json: dict[str, Any]) -> None:
    alarm = _alarm(template_json, "CheckerBlind")
    assert alarm["MetricName"] == telemetry.PROBE_UNKNOWN
    assert alarm["Namespace"] == "EfsHaCluster"
    assert alarm["Dimensions"] == [_cluster_id_dimension(template_json)]
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 60)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert (alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"]) == (3, 5)
    assert alarm["TreatMissingData"] == "notBreaching"


def test_silent_checker_alarm_treats_no_completed_cycle_as_failure(template_json: dict[str, Any]) -> None:
    alarm = _alarm(template_json, "CheckerSilent")
    assert alarm["MetricName"] == telemetry.ACTIVE_NODE_POSITION
    assert alarm["Dimensions"] == [_cluster_id_dimension(template_json)]
    assert (alarm["Statistic"], alarm["Period"]) == ("SampleCount", 60)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["EvaluationPeriods"] == 3
    assert alarm["TreatMissingData"] == "breaching"


def test_missing_node_health_alarms_select_each_nodes_metric(template_json: dict[str, Any]) -> None:
    for node in ("node1", "node2"):
        alarm = _alarm(template_json, f"NodeHealthMissing{node.capitalize()}")
        assert alarm["MetricName"] == telemetry.NODE_HEALTHY
        assert sorted(alarm["Dimensions"], key=lambda d: d["Name"]) == [
            _cluster_id_dimension(template_json), {"Name": "Node", "Value": node}]
        assert (alarm["Statistic"], alarm["Period"]) == ("SampleCount", 60)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
        assert alarm["EvaluationPeriods"] == 3
        assert alarm["TreatMissingData"] == "breaching"


def test_silence_alarms_notify_the_topic_on_alarm_and_recovery(template_json: dict[str, Any]) -> None:
    topic = {"Ref": _topic(template_json)}
    for prefix in ("CheckerBlind", "CheckerSilent", "NodeHealthMissingNode1", "NodeHealthMissingNode2"):
        alarm = _alarm(template_json, prefix)
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic], prefix


def test_the_checker_emits_exactly_the_dimensions_the_silence_alarms_select(capsys: Any) -> None:
    """The alarms above select ClusterId (+ Node); a metric emitted with any other dimension set would never
    match them, and a breaching-on-missing alarm would then page forever (or a blind one never)."""
    metrics = telemetry.metrics
    saved, saved_set = dict(metrics.default_dimensions), dict(metrics.dimension_set)
    try:
        checker_telemetry = telemetry.Telemetry(sns=None, topic_arn=None, cluster_id="c-1")
        capsys.readouterr()
        checker_telemetry.node_health("node1", healthy=True)
        checker_telemetry.gauge(telemetry.ACTIVE_NODE_POSITION, 1)
        checker_telemetry.count(telemetry.PROBE_UNKNOWN)
        telemetry.Telemetry.flush()
    finally:
        # The module-level Metrics object outlives this test: leave its dimensions as they were.
        metrics.default_dimensions.clear()
        metrics.default_dimensions.update(saved)
        metrics.dimension_set.clear()
        metrics.dimension_set.update(saved_set)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    dimensions = {}
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "EfsHaCluster"
        for metric in directive["Metrics"]:
            dimensions[metric["Name"]] = ({name: record[name] for name in directive["Dimensions"][0]},
                                          len(directive["Dimensions"]))
    assert dimensions[telemetry.NODE_HEALTHY] == ({"ClusterId": "c-1", "Node": "node1"}, 1)
    assert dimensions[telemetry.ACTIVE_NODE_POSITION] == ({"ClusterId": "c-1"}, 1)
    assert dimensions[telemetry.PROBE_UNKNOWN] == ({"ClusterId": "c-1"}, 1)
