"""Encrypted EFS with a mount target per private subnet; the cluster's shared, always-mounted storage."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam

from constructs import Construct
from constructs.network import ClusterNetwork


class SharedStorage(Construct):
    """EFS that admits NFS only from the node security group and only over TLS; retained on stack deletion."""

    def __init__(self, scope: Construct, id_: str, *, network: ClusterNetwork,
                 node_security_group: ec2.ISecurityGroup) -> None:
        super().__init__(scope, id_)
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False,
                                                description="EFS mount targets: NFS from cluster nodes only")
        self.security_group.add_ingress_rule(node_security_group, ec2.Port.tcp(2049), "NFS from cluster nodes")
        self.file_system = efs.FileSystem(
            self, "FileSystem",
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=network.private_subnets),
            security_group=self.security_group,
            encrypted=True,
            enable_automatic_backups=True,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            # Object data lives here: a stack deletion must never take it along.
            removal_policy=RemovalPolicy.RETAIN,
            file_system_policy=_tls_only_policy(),
            # The seed's fstab line mounts without IAM auth; who may connect is decided by the security group.
            allow_anonymous_access=True,
        )


def _tls_only_policy() -> iam.PolicyDocument:
    """Clients may mount through a mount target, and only over TLS (the fstab line mounts with `tls`)."""
    return iam.PolicyDocument(statements=[
        iam.PolicyStatement(
            effect=iam.Effect.ALLOW,
            principals=[iam.AnyPrincipal()],
            actions=["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite",
                     "elasticfilesystem:ClientRootAccess"],
            conditions={"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
        ),
        iam.PolicyStatement(
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["*"],
            conditions={"Bool": {"aws:SecureTransport": "false"}},
        ),
    ])
