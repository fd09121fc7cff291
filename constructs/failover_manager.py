"""The failover checker: a Lambda in the VPC, its triggers, its alert topic and its least-privilege role."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    Acknowledgment,
    ArnFormat,
    BundlingOptions,
    Duration,
    Fn,
    ILocalBundling,
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

from cluster_config import ClusterConfig
from constructs import Construct
from constructs.cluster_node import CLUSTER_TAG, ClusterNode
from constructs.cluster_state import ClusterState
from constructs.network import ClusterNetwork
from failover_lambda.budget import invocation_timeout_seconds, loop_safety_margin_seconds

PROJECT_ROOT = Path(__file__).resolve().parent.parent
METRICS_NAMESPACE = "EfsHaCluster"
SCHEDULE = events.Schedule.rate(Duration.minutes(1))
FENCED_STATES = ["stopping", "stopped", "shutting-down", "terminated"]


@jsii.implements(ILocalBundling)
class _CopyPackage:
    """Ships the plain Python package as-is (its only dependencies are in the runtime and the layer): no Docker."""

    def __init__(self, package: Path) -> None:
        self._package = package

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        # jsii passes the bundling options positionally; they do not matter for a plain copy.
        shutil.copytree(self._package, Path(output_dir) / self._package.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return True


def _package_code(package: Path) -> lambda_.Code:
    return lambda_.Code.from_asset(str(package), exclude=["__pycache__", "*.pyc"], bundling=BundlingOptions(
        image=lambda_.Runtime.PYTHON_3_13.bundling_image, local=_CopyPackage(package)))


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
        # The probe loop runs LOOP_SECONDS (57 s), so the schedule starts the next loop as it ends; the timeout
        # adds room for a takeover begun in the loop's last cycle with every AWS call at its configured worst
        # case (failover_lambda/budget.py), so a takeover is never cut by the timeout mid-way.
        timeout = invocation_timeout_seconds(watchdog_required=timings.watchdog_required,
                                             lease_deadline=float(timings.lease_deadline_seconds),
                                             fence_timeout=float(timings.fence_timeout_seconds))
        margin = loop_safety_margin_seconds(watchdog_required=timings.watchdog_required,
                                            lease_deadline=float(timings.lease_deadline_seconds),
                                            fence_timeout=float(timings.fence_timeout_seconds))
        function = lambda_.Function(
            self, "Function",
            description="EFS HA cluster failover checker (probe loop, fencing, VIP route moves)",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.X86_64,
            handler="failover_lambda.handler.handler",
            code=_package_code(PROJECT_ROOT / "failover_lambda"),
            layers=[self._powertools_layer(config.powertools_layer_version)],
            timeout=Duration.seconds(timeout),
            memory_size=256,
            # One authority at a time: two overlapping probe loops could race each other's fencing.
            reserved_concurrent_executions=1,
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

    def _powertools_layer(self, version: int) -> lambda_.ILayerVersion:
        # AWS publishes Powertools as a public layer; no packaging (and no Docker) at synth time.
        arn = Fn.sub("arn:${AWS::Partition}:lambda:${AWS::Region}:017000801446:layer:"
                     f"AWSLambdaPowertoolsPythonV3-python313-x86_64:{version}")
        return lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", arn)

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
            id="AwsSolutions-L1", reason="Pinned to python3.13, the newest runtime the pinned Powertools layer "
                                         "version is published for; raise both together."))

    def _build_triggers(self) -> None:
        # Events queued behind a running probe loop (throttled by the single slot) are worth nothing after a minute:
        # the loop itself watches the same state. A crashed loop is replaced by the next scheduled one.
        self.function.configure_async_invoke(max_event_age=Duration.minutes(1), retry_attempts=0)
        schedule = events.Rule(self, "ProbeSchedule", schedule=SCHEDULE,
                               description="Starts the failover checker's probe loop every minute")
        # A missed minute is replaced by the next one; retrying an old probe loop only wastes the single slot.
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
