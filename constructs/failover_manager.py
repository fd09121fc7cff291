"""The failover checker: a Lambda in the VPC, its triggers, its alert topic and its least-privilege role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import (
    Acknowledgment,
    ArnFormat,
    Duration,
    Fn,
    RemovalPolicy,
    Stack,
    Validations,
)
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions

from cluster_config import ClusterConfig, ConfigError
from constructs import Construct
from constructs.checker_bundle import RUNTIME, checker_code
from constructs.cluster_node import CLUSTER_TAG, ClusterNode
from constructs.cluster_state import ClusterState
from constructs.network import ClusterNetwork
from failover_lambda.budget import invocation_timeout_seconds, loop_safety_margin_seconds

PROJECT_ROOT = Path(__file__).resolve().parent.parent
METRICS_NAMESPACE = "EfsHaCluster"
SCHEDULE = events.Schedule.rate(Duration.minutes(1))
FENCED_STATES = ["stopping", "stopped", "shutting-down", "terminated"]


def reserved_concurrency(config: ClusterConfig) -> int | None:
    """`checker_reserved_concurrency`: 0 reserves nothing (the loop lease keeps one probe loop). 1 is refused:
    the next scheduled run could not start beside the running loop to take it over, so every hand-over would
    wait for the old loop to end and queued events would be throttled (the probe gaps of issue 11)."""
    reserved = config.checker_reserved_concurrency
    if reserved == 1:
        raise ConfigError("checker_reserved_concurrency", "must be 0 (no reservation, the default) or at least 2, "
                          "got 1: the next probe loop starts beside the running one to take it over")
    return reserved or None


@dataclass(frozen=True)
class FailoverInputs:
    config: ClusterConfig
    network: ClusterNetwork
    state: ClusterState
    nodes: list[ClusterNode]
    node_security_group: ec2.ISecurityGroup


class FailoverManager(Construct):
    def __init__(self, scope: Construct, id_: str, *, inputs: FailoverInputs) -> None:
        super().__init__(scope, id_)
        self._inputs = inputs
        self.cluster_id = Stack.of(self).stack_name
        self.topic = self._build_topic()
        self.function = self._build_function()
        self._grant_least_privilege()
        self._build_triggers()

    def _build_topic(self) -> sns.Topic:
        # A customer managed key: CloudWatch alarms cannot publish to a topic under the AWS managed SNS key.
        key = kms.Key(self, "TopicKey", enable_key_rotation=True, removal_policy=RemovalPolicy.DESTROY,
                      description="EFS HA cluster alert topic")
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        topic = sns.Topic(self, "AlertTopic", master_key=key, enforce_ssl=True,
                          display_name="EFS HA cluster alerts")
        # The topic policy enforce_ssl creates replaces SNS's default policy, so CloudWatch alarms need their own
        # grant; the conditions (documented for SNS topic policies against the confused deputy) limit it to this
        # account's alarms in this region. The checker publishes with its role (grant_publish); no EventBridge
        # rule or other service targets the topic.
        stack = Stack.of(self)
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarms", actions=["sns:Publish"], resources=[topic.topic_arn],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnLike": {"aws:SourceArn": stack.format_arn(
                            service="cloudwatch", resource="alarm", resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)}}))
        email = self._inputs.config.alarm_email
        if email:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _build_function(self) -> lambda_.Function:
        config, network = self._inputs.config, self._inputs.network
        security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False,
                                           description="Failover checker: AWS APIs and the MinIO health probe")
        security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs (HTTPS)")
        security_group.connections.allow_to(self._inputs.node_security_group, ec2.Port.tcp(9000),
                                            "MinIO health probe of each node")
        timings = config.timings
        # A probe loop runs until the next scheduled run takes it over (failover_lambda/loop_lease.py), at most
        # LOOP_SECONDS; the timeout adds room for a takeover begun in the loop's last cycle with every AWS call at
        # its configured worst case (failover_lambda/budget.py), so a takeover is never cut by the timeout mid-way.
        timeout = invocation_timeout_seconds(watchdog_required=timings.watchdog_required,
                                             lease_deadline=float(timings.lease_deadline_seconds),
                                             fence_timeout=float(timings.fence_timeout_seconds))
        margin = loop_safety_margin_seconds(watchdog_required=timings.watchdog_required,
                                            lease_deadline=float(timings.lease_deadline_seconds),
                                            fence_timeout=float(timings.fence_timeout_seconds))
        function = lambda_.Function(
            self, "Function",
            description="EFS HA cluster failover checker (probe loop, fencing, VIP route moves)",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="failover_lambda.handler.handler",
            # Powertools is bundled (constructs/checker_bundle.py): no regional layer, so any partition and region.
            code=checker_code(PROJECT_ROOT / "failover_lambda"),
            timeout=Duration.seconds(timeout),
            memory_size=256,
            # Optional: the loop lease keeps one probe loop, the epoch writes keep takeovers safe; a reservation
            # only guarantees capacity, and new accounts cannot grant one (unreserved concurrency floor).
            reserved_concurrent_executions=reserved_concurrency(config),
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=network.private_subnets),
            security_groups=[security_group],
            log_group=logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS,
                                    removal_policy=RemovalPolicy.DESTROY),
            environment={
                "STATE_TABLE_NAME": self._inputs.state.table.table_name,
                "CLUSTER_ID": self.cluster_id,
                "NODE_NAMES": ",".join(config.node_names),
                "ROUTE_TABLE_IDS": Fn.join(",", network.route_table_ids),
                "VIP": str(config.vip),
                "TOPIC_ARN": self.topic.topic_arn,
                "PROBE_INTERVAL_SECONDS": str(timings.probe_interval_seconds),
                "FAILURE_THRESHOLD": str(timings.failure_threshold),
                "HEARTBEAT_INTERVAL_SECONDS": str(timings.heartbeat_interval_seconds),
                "HEARTBEAT_STALE_SECONDS": str(timings.heartbeat_stale_seconds),
                "LEASE_SECONDS": str(timings.lease_seconds),
                "LEASE_DEADLINE_SECONDS": str(timings.lease_deadline_seconds),
                "WATCHDOG": timings.watchdog,
                "WATCHDOG_TIMEOUT_SECONDS": str(timings.watchdog_timeout_seconds),
                "FENCE_TIMEOUT_SECONDS": str(timings.fence_timeout_seconds),
                # The loop stops starting cycles this long before the timeout (= the takeover reserve).
                "LOOP_SAFETY_MARGIN_SECONDS": str(margin),
                "POWERTOOLS_SERVICE_NAME": "efs-ha-checker",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
        )
        return function

    def _grant_least_privilege(self) -> None:
        stack = Stack.of(self)
        role = self.function.role
        assert role is not None
        table_arn = self._inputs.state.table.table_arn
        instance_arn = stack.format_arn(service="ec2", resource="instance", resource_name="*")
        statements = [
            iam.PolicyStatement(sid="ReadClusterState", resources=[table_arn], actions=[
                "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                "dynamodb:DeleteItem"]),
            iam.PolicyStatement(sid="MoveVipRoutes", resources=self._inputs.network.route_table_arns,
                                actions=["ec2:ReplaceRoute", "ec2:CreateRoute"]),
            # Instance ids change when a node is replaced; the cluster tag keeps this to the cluster's nodes.
            iam.PolicyStatement(sid="FenceClusterNodes", resources=[instance_arn],
                                actions=["ec2:StopInstances"],
                                conditions={"StringEquals": {f"aws:ResourceTag/{CLUSTER_TAG}": self.cluster_id}}),
            iam.PolicyStatement(sid="StopMinioOnClusterNodes", resources=[instance_arn],
                                actions=["ssm:SendCommand"],
                                conditions={"StringEquals": {f"ssm:resourceTag/{CLUSTER_TAG}": self.cluster_id}}),
            iam.PolicyStatement(sid="StopMinioDocument", actions=["ssm:SendCommand"], resources=[
                stack.format_arn(service="ssm", resource="document", resource_name="AWS-RunShellScript",
                                 account="")]),
            # Describe calls support no resource-level permissions.
            iam.PolicyStatement(sid="DescribeNodesAndRoutes", resources=["*"],
                                actions=["ec2:DescribeInstances", "ec2:DescribeRouteTables"]),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        self.topic.grant_publish(role)
        self._acknowledge_findings(role)

    def _acknowledge_findings(self, role: iam.IRole) -> None:
        reasons = {
            "AwsSolutions-IAM5[Resource::*]": "ec2:DescribeInstances and ec2:DescribeRouteTables support no "
                                              "resource-level permissions; every mutating action is scoped.",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*]":
                "StopInstances and SendCommand are limited to the cluster's instances by the efs-ha:cluster tag "
                "condition; ids cannot be listed because a replaced node gets a new one.",
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": "Added by topic.grant_publish: publishing to the "
                                                               "encrypted alert topic, on that one key only.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]": "AWS's minimal managed policy for writing the function's own logs.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaVPCAccessExecutionRole]": "AWS's minimal managed policy for the ENIs a VPC function needs "
                                                "to probe nodes from inside the VPC.",
        }
        for rule, reason in reasons.items():
            Validations.of(role).acknowledge(Acknowledgment(id=rule, reason=reason))
        Validations.of(self.function).acknowledge(Acknowledgment(
            id="AwsSolutions-L1", reason="Pinned to python3.13: the bundled dependencies are installed for this "
                                         "runtime (constructs/checker_bundle.py PYTHON_VERSION); raise both "
                                         "together after a test run."))

    def _build_triggers(self) -> None:
        # An event older than a minute is worth nothing (a running loop watches the same state), e.g. one
        # throttled by a reservation or the account's limit. A crashed loop is replaced by the next scheduled one.
        self.function.configure_async_invoke(max_event_age=Duration.minutes(1), retry_attempts=0)
        schedule = events.Rule(self, "ProbeSchedule", schedule=SCHEDULE,
                               description="Starts the failover checker's probe loop every minute")
        # A missed minute is replaced by the next one (the running loop goes on meanwhile, up to LOOP_SECONDS).
        schedule.add_target(targets.LambdaFunction(self.function, retry_attempts=0,
                                                   max_event_age=Duration.minutes(1)))
        # EventBridge cannot filter these events by tag, and instance ids change whenever a node is replaced:
        # the rule matches every instance of the account and region, and the checker drops an event whose
        # instance is not one of the nodes' (one Scan of the state table, no EC2 call, no probe loop).
        state_change = events.Rule(
            self, "NodeStateChange",
            description="Starts the failover checker when an instance is stopping or terminated (the checker "
                        "ignores instances that are not cluster nodes)",
            event_pattern=events.EventPattern(
                source=["aws.ec2"], detail_type=["EC2 Instance State-change Notification"],
                detail={"state": FENCED_STATES}),
        )
        state_change.add_target(targets.LambdaFunction(self.function, retry_attempts=2,
                                                       max_event_age=Duration.minutes(5)))
