"""Alarms and dashboard: every alarm notifies the alert topic; e-mail subscription comes from config."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template

from tests.conftest import VARIANT_CONTEXT

EXPECTED_ALARMS = {"FailoverHappened", "RouteDrift", "NoHealthyStandby", "CheckerErrors", "CheckerFailing",
                   "CheckerNotRunning", "NodeUnhealthyNode1", "NodeUnhealthyNode2", "EfsIoLimit",
                   "CheckerBlind", "CheckerSilent", "NodeHealthMissingNode1", "NodeHealthMissingNode2", "ProbeGap"}


def _alarms(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template_json["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_expected_alarm_exists(template_json: dict[str, Any]) -> None:
    names = {k for k in _alarms(template_json)}
    for expected in EXPECTED_ALARMS:
        assert any(k.startswith(f"Monitoring{expected}") for k in names), expected
    assert len(names) == len(EXPECTED_ALARMS)


def test_every_alarm_notifies_the_alert_topic_on_alarm_and_recovery(template_json: dict[str, Any]) -> None:
    (topic,) = [k for k, r in template_json["Resources"].items() if r["Type"] == "AWS::SNS::Topic"]
    for name, alarm in _alarms(template_json).items():
        assert alarm["AlarmActions"] == [{"Ref": topic}], name
        assert alarm["OKActions"] == [{"Ref": topic}], name


def test_checker_not_running_alarm_treats_silence_as_failure(template: Template) -> None:
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "Invocations", "Namespace": "AWS/Lambda", "ComparisonOperator": "LessThanThreshold",
        "TreatMissingData": "breaching", "EvaluationPeriods": 3})


def test_node_health_alarms_watch_each_node(template: Template) -> None:
    for node in ("node1", "node2"):
        template.has_resource_properties("AWS::CloudWatch::Alarm", {
            "MetricName": "NodeHealthy", "Namespace": "EfsHaCluster",
            "Dimensions": Match.array_with([{"Name": "Node", "Value": node}])})


def test_dashboard_shows_health_active_node_failovers_timings_and_errors(template_json: dict[str, Any]) -> None:
    (dashboard,) = [r["Properties"] for r in template_json["Resources"].values()
                    if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = "".join(p if isinstance(p, str) else "" for p in dashboard["DashboardBody"]["Fn::Join"][1])
    for metric in ("NodeHealthy", "ActiveNodePosition", "Failovers", "DetectionSeconds", "SwitchSeconds",
                   "CheckerErrors", "Errors", "ProbeGapSeconds"):
        assert f'"{metric}"' in body, metric


def test_alarm_email_from_config_subscribes_to_the_topic(variant_template_json: dict[str, Any]) -> None:
    assert VARIANT_CONTEXT["alarm_email"] == "oncall@example.com"
    template = Template.from_json(variant_template_json)
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email",
                                                                "Endpoint": "oncall@example.com"})


def test_no_email_subscription_by_default(template: Template) -> None:
    template.resource_count_is("AWS::SNS::Subscription", 0)


def test_probe_gap_alarm_pages_when_probes_stop_for_longer_than_the_design_allows(
        template: Template, config: Any) -> None:
    """Issue 11, defect 4: the checker reports ProbeGapSeconds on every probe; a gap above 2 probe intervals
    + a cold start (failover_lambda/budget.py) alarms, on the dimension the checker emits."""
    from failover_lambda.budget import probe_gap_bound_seconds

    bound = probe_gap_bound_seconds(float(config.timings.probe_interval_seconds))
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "ProbeGapSeconds", "Namespace": "EfsHaCluster", "Statistic": "Maximum", "Period": 60,
        "Dimensions": [{"Name": "ClusterId", "Value": "EfsHaCluster"}],
        "ComparisonOperator": "GreaterThanThreshold", "Threshold": bound, "EvaluationPeriods": 1})


def test_the_probe_gap_alarm_follows_the_configured_probe_interval(variant_template_json: dict[str, Any]) -> None:
    """probe_interval_seconds 2 (the variant): the bound is 2 x 2 s + a cold start, not the default's."""
    from failover_lambda.budget import probe_gap_bound_seconds

    Template.from_json(variant_template_json).has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "ProbeGapSeconds", "Threshold": probe_gap_bound_seconds(2.0)})
