"""One cluster node: a one-instance Auto Scaling group of Amazon Linux 2023 in its own private subnet.

The group replaces an instance that fails its EC2 status checks, is stopped (the checker's fence) or terminated,
without a deploy; the new instance bootstraps, heartbeats and joins as a standby. The node's identity is its
name (the `efs-ha:node` tag and user-data), never an instance ID: the checker binds the role to whichever
instance it finds by tag and moves the VIP routes to that instance's ENI (docs/failover-design.md, "Node
lifecycle").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jsii
from aws_cdk import (
    Acknowledgment,
    Annotations,
    Aws,
    CfnElement,
    Duration,
    Fn,
    IStableStringProducer,
    Lazy,
    Stack,
    Tags,
    Validations,
)
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets

from constructs import Construct
from userdata.render import NodeUserDataInputs, render_node_user_data

CLUSTER_TAG = "efs-ha:cluster"
# First boot: packages, EFS mount, MinIO download and the agent's first heartbeat, with systemd retries.
BOOTSTRAP_TIMEOUT = Duration.minutes(20)
NODE_TAG = "efs-ha:node"
IMAGE_PIN_TAG = "efs-ha:image-pin"
# EC2 status checks need a few minutes to report on a new instance; an impaired one is replaced after that.
HEALTH_CHECK_GRACE = Duration.minutes(5)
# Processes that could change the group while CloudFormation replaces its instance (AWS's guidance for rolling
# updates); Launch and Terminate stay on, the update needs them.
_SUSPENDED_DURING_UPDATE = [
    autoscaling.ScalingProcess.HEALTH_CHECK,
    autoscaling.ScalingProcess.REPLACE_UNHEALTHY,
    autoscaling.ScalingProcess.AZ_REBALANCE,
    autoscaling.ScalingProcess.ALARM_NOTIFICATION,
    autoscaling.ScalingProcess.SCHEDULED_ACTIONS,
]


@dataclass(frozen=True)
class NodeSettings:
    """What differs between nodes and what the node's files need (file sources are resolved by the stack)."""

    name: str
    subnet: ec2.ISubnet
    instance_type: str
    cluster_id: str
    user_data: NodeUserDataInputs
    image_id: str  # pinned (constructs/node_image.py): never "the latest" at deploy time
    # The pinned images as text (None when looked up at creation): a new pin shows in `cdk diff` per node.
    image_description: str | None = None


def node_security_group(scope: Construct, id_: str, *, vpc: ec2.IVpc,
                        client_cidrs: list[str]) -> ec2.SecurityGroup:
    """Shared by all nodes: MinIO API and console only from the configured client networks."""
    group = ec2.SecurityGroup(scope, id_, vpc=vpc, allow_all_outbound=True,
                              description="EFS HA cluster nodes: MinIO API/console from client CIDRs")
    for cidr in client_cidrs:
        group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(9000), "MinIO S3 API from clients")
        group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(9090), "MinIO console from clients")
    return group


@jsii.implements(IStableStringProducer)
class _LogicalIdOf:
    """The group's final logical ID, known only once the group exists (the bootstrap signals it)."""

    def __init__(self) -> None:
        self.element: CfnElement | None = None

    def produce(self) -> str | None:
        assert self.element is not None, "the node's Auto Scaling group was never created"
        return self.element.logical_id


class ClusterNode(Construct):
    """IMDSv2-only, SSM-managed (no SSH key), encrypted gp3 root, source/destination check off for the VIP."""

    def __init__(self, scope: Construct, id_: str, *, settings: NodeSettings, vpc: ec2.IVpc,
                 security_group: ec2.ISecurityGroup) -> None:
        super().__init__(scope, id_)
        self.name = settings.name
        stack = Stack.of(self)
        self.role = iam.Role(
            self, "Role",
            # ec2.amazonaws.com.cn in the China regions (the stack is region-agnostic: resolved at deploy time).
            assumed_by=iam.ServicePrincipal(Fn.join("", ["ec2.", Aws.URL_SUFFIX])),
            description=f"Cluster node {settings.name}: SSM management, its own heartbeat, MinIO secret",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        logical_id = _LogicalIdOf()
        self.launch_template = ec2.LaunchTemplate(
            self, "LaunchTemplate",
            # No launch_template_name: CloudFormation generates one, so two copies of the stack never clash.
            instance_type=ec2.InstanceType(settings.instance_type),
            machine_image=_PinnedImage(settings.image_id),
            role=self.role,
            security_group=security_group,
            user_data=ec2.UserData.custom(render_node_user_data(replace(
                settings.user_data, stack_name=stack.stack_name, signal_logical_id=Lazy.string(logical_id)))),
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=1,
            detailed_monitoring=True,
            block_devices=[ec2.BlockDevice(
                device_name="/dev/xvda",
                # Deleted with the instance: nothing on it outlives the node (state is on EFS and in the table).
                volume=ec2.BlockDeviceVolume.ebs(20, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3,
                                                 delete_on_termination=True),
            )],
        )
        self.group = autoscaling.AutoScalingGroup(
            self, "Group",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=[settings.subnet]),
            launch_template=self.launch_template,
            # One instance. Max 2 is headroom for CloudFormation's rolling update only (no scaling policy exists):
            # the new instance starts and reports ready before the old one is terminated, which AWS allows only
            # with MinInstancesInService (1) below MaxSize.
            min_capacity=1,
            desired_capacity=1,
            max_capacity=2,
            # CreationPolicy and, through the rolling update, the update: each waits for the new instance's
            # bootstrap to signal that its agent has written and read back a heartbeat.
            signals=autoscaling.Signals.wait_for_count(1, timeout=BOOTSTRAP_TIMEOUT),
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1, min_instances_in_service=1, wait_on_resource_signals=True,
                pause_time=BOOTSTRAP_TIMEOUT, suspend_processes=_SUSPENDED_DURING_UPDATE),
            health_checks=autoscaling.HealthChecks.ec2(grace_period=HEALTH_CHECK_GRACE),
        )
        # CDK warns that a desired capacity resets the group's size at every deploy: for a one-instance node that
        # is the point (nothing scales it; a deploy must leave exactly one instance).
        Annotations.of(self.group).acknowledge_warning(
            "@aws-cdk/aws-autoscaling:desiredCapacitySet", "one instance per node; a deploy keeps it at one")
        cfn_group = self.group.node.default_child
        assert isinstance(cfn_group, CfnElement), f"AutoScalingGroup's L1 changed shape: {cfn_group!r}"
        logical_id.element = cfn_group
        self.role.add_to_policy(iam.PolicyStatement(actions=["cloudformation:SignalResource"],
                                                    resources=[stack.stack_id]))
        # The VIP's packets carry a destination that is not the ENI's own address, and a launch template cannot
        # turn the source/destination check off: the bootstrap does it on its own instance. The tag conditions
        # keep it to this node's instances (the old and the new one of a replacement), not the cluster's others.
        self.role.add_to_policy(iam.PolicyStatement(
            sid="SourceDestCheckOffOnItsOwnInstance", actions=["ec2:ModifyInstanceAttribute"],
            resources=[stack.format_arn(service="ec2", resource="instance", resource_name="*")],
            conditions={"StringEquals": {f"aws:ResourceTag/{CLUSTER_TAG}": settings.cluster_id,
                                         f"aws:ResourceTag/{NODE_TAG}": settings.name}}))
        Validations.of(self.role).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
            reason="AmazonSSMManagedInstanceCore is AWS's maintained minimum for Session Manager and Run Command, "
                   "which replace SSH and carry the failover fencing command."))
        Validations.of(self.role).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*]",
            reason="ModifyInstanceAttribute (source/destination check off) is limited by the efs-ha:cluster and "
                   "efs-ha:node tag conditions to this node's own instances, whose ids change on replacement."))
        Validations.of(self.group).acknowledge(Acknowledgment(
            id="AwsSolutions-AS3",
            reason="A replaced or failing node already alerts through the checker's alarms (NodeUnhealthy, "
                   "NodeHealthMissing, NoHealthyStandby) on the alert topic; the group's own launch/terminate "
                   "notifications would repeat them and need the topic's KMS key opened to Auto Scaling."))
        # The failover checker finds nodes by these tags at run time, so a replacement instance is picked up.
        # On the group (propagated at launch) and in the launch template (instance and volume), so the tags exist
        # from RunInstances on: the bootstrap's own IAM conditions need them.
        for key, value in ((CLUSTER_TAG, settings.cluster_id), (NODE_TAG, settings.name),
                           ("Name", f"{stack.stack_name}-{settings.name}")):
            Tags.of(self.group).add(key, value, apply_to_launched_instances=True)
            Tags.of(self.launch_template).add(key, value)
        if settings.image_description is not None:
            # Literal text inside the launch template data: a new pin is a new version (CloudFormation resolves
            # Fn::FindInMap only at deploy time) and shows in `cdk diff` on each node's launch template.
            Tags.of(self.launch_template).add(IMAGE_PIN_TAG, settings.image_description)

    def grant_object_read(self, asset: s3_assets.Asset) -> None:
        """Read exactly one asset object (not the whole bootstrap bucket, as Asset.grant_read would)."""
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[asset.bucket.arn_for_objects(asset.s3_object_key)]))


@jsii.implements(ec2.IMachineImage)
class _PinnedImage:
    """An AMI ID that may be a token (Fn::FindInMap of the pin, or the create-only lookup's attribute)."""

    def __init__(self, image_id: str) -> None:
        self._image_id = image_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(image_id=self._image_id, os_type=ec2.OperatingSystemType.LINUX,
                                      user_data=ec2.UserData.for_linux())
