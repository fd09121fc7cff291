"""The single authority for who is active: a tiny DynamoDB table holding the epoch, role and heartbeats."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam

from constructs import Construct

CLUSTER_ITEM = "cluster"


def node_item_key(node_name: str) -> str:
    return f"node#{node_name}"


class ClusterState(Construct):
    """On-demand, point-in-time recovery, retained: losing it would lose the epoch that prevents dual-active."""

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        self.table = dynamodb.TableV2(
            self, "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )

    def grant_node_agent(self, grantee: iam.IGrantable, node_name: str) -> None:
        """A node reads the cluster item and its own item, and writes only its own heartbeat item."""
        own_item = node_item_key(node_name)
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:GetItem"],
            resources=[self.table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [CLUSTER_ITEM, own_item]}},
        ))
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[self.table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [own_item]}},
        ))
