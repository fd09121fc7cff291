"""One cluster node: an Amazon Linux 2023 instance in a private subnet that mounts EFS and may serve MinIO."""

from __future__ import annotations

from dataclasses import dataclass, replace

import jsii
from aws_cdk import Acknowledgment, CfnElement, Duration, IStableStringProducer, Lazy, Stack, Tags, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets

from constructs import Construct
from userdata.render import NodeUserDataInputs, render_node_user_data

CLUSTER_TAG = "efs-ha:cluster"
# First boot: packages, EFS mount, MinIO download and the agent's first heartbeat, with systemd retries.
BOOTSTRAP_TIMEOUT = Duration.minutes(20)
NODE_TAG = "efs-ha:node"


@dataclass(frozen=True)
class NodeSettings:
    """What differs between nodes and what the node's files need (file sources are resolved by the stack)."""

    name: str
    subnet: ec2.ISubnet
    instance_type: str
    cluster_id: str
    user_data: NodeUserDataInputs


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
    """The instance's final logical ID (it carries a user-data hash), known only once the instance exists."""

    def __init__(self) -> None:
        self.element: CfnElement | None = None

    def produce(self) -> str | None:
        assert self.element is not None, "the node's instance was never created"
        return self.element.logical_id


class ClusterNode(Construct):
    """IMDSv2-only, SSM-managed (no SSH key), encrypted EBS, source/destination check off for the VIP."""

    def __init__(self, scope: Construct, id_: str, *, settings: NodeSettings, vpc: ec2.IVpc,
                 security_group: ec2.ISecurityGroup) -> None:
        super().__init__(scope, id_)
        self.name = settings.name
        self.role = iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"Cluster node {settings.name}: SSM management, its own heartbeat, MinIO secret",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        logical_id = _LogicalIdOf()
        self.instance = ec2.Instance(
            self, "Instance",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=[settings.subnet]),
            instance_type=ec2.InstanceType(settings.instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(),
            role=self.role,
            security_group=security_group,
            user_data=ec2.UserData.custom(render_node_user_data(replace(
                settings.user_data, stack_name=Stack.of(self).stack_name,
                instance_logical_id=Lazy.string(logical_id)))),
            # CreationPolicy: CloudFormation waits until the bootstrap reports this node ready.
            resource_signal_timeout=BOOTSTRAP_TIMEOUT,
            # cloud-init runs user-data once per instance: a changed config only reaches a node as a new instance.
            user_data_causes_replacement=True,
            # Metadata options on the instance itself (require_imdsv2 would add a fixed-name launch template).
            http_tokens=ec2.HttpTokens.REQUIRED,
            http_put_response_hop_limit=1,
            # Packets for the VIP carry a destination that is not the ENI's own address.
            source_dest_check=False,
            detailed_monitoring=True,
            block_devices=[ec2.BlockDevice(
                device_name="/dev/xvda",
                volume=ec2.BlockDeviceVolume.ebs(20, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3),
            )],
        )
        logical_id.element = self.instance.instance
        self.role.add_to_policy(iam.PolicyStatement(actions=["cloudformation:SignalResource"],
                                                    resources=[Stack.of(self).stack_id]))
        Validations.of(self.role).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
            reason="AmazonSSMManagedInstanceCore is AWS's maintained minimum for Session Manager and Run Command, "
                   "which replace SSH and carry the failover fencing command."))
        Validations.of(self.instance).acknowledge(Acknowledgment(
            id="AwsSolutions-EC29",
            reason="Termination protection would block the replacement a new AMI needs; losing a node is the "
                   "failure the cluster is built to survive."))
        # The failover checker finds nodes by these tags at run time, so a replaced instance is picked up.
        Tags.of(self.instance).add(CLUSTER_TAG, settings.cluster_id)
        Tags.of(self.instance).add(NODE_TAG, settings.name)
        Tags.of(self.instance).add("Name", f"{Stack.of(self).stack_name}-{settings.name}")

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    def grant_object_read(self, asset: s3_assets.Asset) -> None:
        """Read exactly one asset object (not the whole bootstrap bucket, as Asset.grant_read would)."""
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[asset.bucket.arn_for_objects(asset.s3_object_key)]))
