"""The failover checker's infrastructure: optional reservation, bundled dependencies, both triggers, state table,
scoped IAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template

MUTATING_ACTIONS = {"ec2:ReplaceRoute", "ec2:CreateRoute", "ec2:StopInstances", "ssm:SendCommand"}


def _checker(template_json: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, r["Properties"]) for k, r in template_json["Resources"].items()
                if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler")
                == "failover_lambda.handler.handler"]
    return found


def test_checker_reserves_no_concurrency_by_default_and_runs_inside_the_private_subnets(
        template_json: dict[str, Any], config: Any) -> None:
    """Issue 11, defect 2: an account whose concurrency quota is 10 cannot reserve any (unreserved concurrency may
    not drop below 10); the loop lease keeps one probe loop instead (tests/failover/test_loop_lease.py)."""
    assert config.checker_reserved_concurrency == 0
    _, function = _checker(template_json)
    assert "ReservedConcurrentExecutions" not in function
    assert function["Runtime"].startswith("python3.")
    subnets = {s["Ref"] for s in function["VpcConfig"]["SubnetIds"]}
    cidrs = {template_json["Resources"][s]["Properties"]["CidrBlock"] for s in subnets}
    assert cidrs == {"10.0.110.0/24", "10.0.120.0/24"}


def test_checker_environment_names_the_cluster_resources_and_shipped_timings(
        template_json: dict[str, Any], config: Any) -> None:
    _, function = _checker(template_json)
    env = function["Environment"]["Variables"]
    assert env["VIP"] == "172.16.0.1"
    assert env["NODE_NAMES"] == "node1,node2"
    assert env["CLUSTER_ID"] == "EfsHaCluster"
    timings = config.timings
    assert env["FAILURE_THRESHOLD"] == str(timings.failure_threshold)
    assert env["PROBE_INTERVAL_SECONDS"] == str(timings.probe_interval_seconds)
    assert {key: env[key] for key in ("HEARTBEAT_INTERVAL_SECONDS", "HEARTBEAT_STALE_SECONDS", "LEASE_SECONDS",
                                      "LEASE_DEADLINE_SECONDS", "WATCHDOG", "WATCHDOG_TIMEOUT_SECONDS",
                                      "FENCE_TIMEOUT_SECONDS")} == {
        "HEARTBEAT_INTERVAL_SECONDS": str(timings.heartbeat_interval_seconds),
        "HEARTBEAT_STALE_SECONDS": str(timings.heartbeat_stale_seconds),
        "LEASE_SECONDS": str(timings.lease_seconds),
        "LEASE_DEADLINE_SECONDS": str(timings.lease_deadline_seconds),
        "WATCHDOG": timings.watchdog,
        "WATCHDOG_TIMEOUT_SECONDS": str(timings.watchdog_timeout_seconds),
        "FENCE_TIMEOUT_SECONDS": str(timings.fence_timeout_seconds)}
    tables = [part["Ref"] for part in env["ROUTE_TABLE_IDS"]["Fn::Join"][1]]
    assert sorted(tables) == sorted(k for k, r in template_json["Resources"].items()
                                    if r["Type"] == "AWS::EC2::RouteTable")


def test_schedule_and_ec2_state_change_rules_target_the_checker(template: Template,
                                                                template_json: dict[str, Any]) -> None:
    checker_id, _ = _checker(template_json)
    target = Match.array_with([Match.object_like({"Arn": {"Fn::GetAtt": [checker_id, "Arn"]}})])
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "rate(1 minute)", "State": "ENABLED", "Targets": target})
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["stopping", "stopped", "shutting-down", "terminated"]},
        },
        "Targets": target,
    })


def test_the_ec2_state_change_rule_names_no_deploy_time_instance_ids(template_json: dict[str, Any]) -> None:
    """Instance ids change when a node is replaced, and EventBridge cannot filter by tag: the rule matches
    broadly and the checker filters (failover_lambda.handler)."""
    (rule,) = [r["Properties"] for r in template_json["Resources"].values() if r["Type"] == "AWS::Events::Rule"
               and "EventPattern" in r["Properties"]]
    assert "instance-id" not in rule["EventPattern"]["detail"]
    assert "Node1Instance" not in str(rule)


def test_a_takeover_begun_in_the_loops_last_cycle_fits_before_the_timeout(template_json: dict[str, Any],
                                                                         config: Any) -> None:
    """The loop stops LOOP_SAFETY_MARGIN_SECONDS before the timeout; that margin holds a whole takeover with every
    AWS call at its configured worst case, so the timeout never cuts one mid-way."""
    from failover_lambda.budget import CALL_WORST_SECONDS, fence_wait_bound, takeover_seconds

    _, function = _checker(template_json)
    margin = float(function["Environment"]["Variables"]["LOOP_SAFETY_MARGIN_SECONDS"])
    timings = config.timings
    worst = takeover_seconds(fence_wait_bound(watchdog_required=timings.watchdog_required,
                                              lease_deadline=timings.lease_deadline_seconds,
                                              fence_timeout=timings.fence_timeout_seconds))
    assert margin >= worst > 3 * CALL_WORST_SECONDS  # far above the old 3 s margin
    # The loop outlasts the minute between scheduled runs, so the next run takes it over instead of a gap
    assert function["Timeout"] - margin >= 60 + 20


def test_the_checker_bundles_its_pinned_dependencies_instead_of_a_regional_layer(
        stack: Any, template_json: dict[str, Any]) -> None:
    """Issue 11, defect 3: the Powertools layer ARN named a commercial-partition account and existed in some
    regions only. The asset now holds the package and its pinned dependencies (constructs/checker_bundle.py)."""
    from aws_cdk import Stage

    _, function = _checker(template_json)
    assert "Layers" not in function
    asset_hash = function["Code"]["S3Key"].removesuffix(".zip")
    asset = Path(Stage.of(stack).outdir) / f"asset.{asset_hash}"
    assert (asset / "failover_lambda" / "handler.py").is_file()
    assert (asset / "aws_lambda_powertools" / "__init__.py").is_file()
    assert (asset / "jmespath").is_dir()
    assert not list(asset.rglob("__pycache__")) and not (asset / "bin").exists()


def test_the_bundled_pins_match_the_ones_the_tests_run_with() -> None:
    root = Path(__file__).resolve().parent.parent
    bundled = _pins(root / "failover_lambda" / "requirements.txt")
    tested = _pins(root / "requirements.txt")
    assert bundled and all(tested[name] == version for name, version in bundled.items() if name in tested)
    assert "aws-lambda-powertools" in bundled


def _pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {name.lower().replace("_", "-"): version for name, _, version in
            (line.partition("==") for line in lines if "==" in line)}


def test_state_table_is_on_demand_with_point_in_time_recovery_and_retained(template: Template) -> None:
    template.has_resource("AWS::DynamoDB::GlobalTable", {
        "Properties": Match.object_like({
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "Replicas": [Match.object_like({"PointInTimeRecoverySpecification": {
                "PointInTimeRecoveryEnabled": True}})],
        }),
        "DeletionPolicy": "Retain",
    })


def _statements(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for r in template_json["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_statement_grants_route_fencing_or_run_command_actions_on_star(template_json: dict[str, Any]) -> None:
    risky = [s for s in _statements(template_json) if MUTATING_ACTIONS & set(_as_list(s["Action"]))]
    assert {a for s in risky for a in _as_list(s["Action"])} >= MUTATING_ACTIONS
    for statement in risky:
        assert "*" not in _as_list(statement["Resource"]), statement


def test_route_changes_are_limited_to_the_cluster_route_tables(template_json: dict[str, Any]) -> None:
    (statement,) = [s for s in _statements(template_json) if s.get("Sid") == "MoveVipRoutes"]
    tables = {part["Ref"] for arn in statement["Resource"] for part in arn["Fn::Join"][1] if isinstance(part, dict)
              and "Ref" in part and part["Ref"].startswith("Network")}
    assert tables == {k for k, r in template_json["Resources"].items() if r["Type"] == "AWS::EC2::RouteTable"}


def test_fencing_is_limited_to_instances_tagged_with_this_cluster(template_json: dict[str, Any]) -> None:
    for sid, key in (("FenceClusterNodes", "aws:ResourceTag/efs-ha:cluster"),
                     ("StopMinioOnClusterNodes", "ssm:resourceTag/efs-ha:cluster")):
        (statement,) = [s for s in _statements(template_json) if s.get("Sid") == sid]
        assert statement["Condition"] == {"StringEquals": {key: "EfsHaCluster"}}


def test_alert_topic_is_encrypted_and_enforces_tls(template: Template) -> None:
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


def test_checker_log_group_has_a_retention(template: Template) -> None:
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 90})


def test_queued_events_expire_after_a_minute_and_crashes_are_not_retried(template: Template,
                                                                          template_json: dict[str, Any]) -> None:
    checker_id, _ = _checker(template_json)
    template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "FunctionName": {"Ref": checker_id}, "MaximumEventAgeInSeconds": 60, "MaximumRetryAttempts": 0})
