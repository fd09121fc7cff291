"""The first VIP route in every route table, created once; after that the failover checker owns the routes."""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr

from constructs import Construct
from constructs.lambda_dependencies import drop_redundant_role_dependency


class VipRoutes(Construct):
    """CreateRoute `<vip>/32 -> initial node` in each table on stack creation only.

    A plain AWS::EC2::Route would be rewritten by CloudFormation whenever the initial node's instance is replaced
    (a new AMI), moving the VIP back to it even after a failover. This resource has no update or delete call, so
    a later deploy never touches a route the checker has moved; the checker also creates any missing route.
    """

    def __init__(self, scope: Construct, id_: str, *, vip: str, route_table_ids: list[str],
                 route_table_arns: list[str], initial_instance_id: str) -> None:
        super().__init__(scope, id_)
        self.destination = f"{vip}/32"
        policy = cr.AwsCustomResourcePolicy.from_statements([
            iam.PolicyStatement(actions=["ec2:CreateRoute"], resources=route_table_arns),
        ])
        # CDK's provider is a singleton: the first resource's log group is its log group. Without one, Lambda
        # creates /aws/lambda/<name> on first use, outside the stack and kept forever.
        log_group = logs.LogGroup(self, "ProviderLogs", retention=logs.RetentionDays.THREE_MONTHS,
                                  removal_policy=RemovalPolicy.DESTROY)
        self.routes = [
            cr.AwsCustomResource(
                self, f"Route{index}",
                on_create=cr.AwsSdkCall(
                    service="EC2",
                    action="createRoute",
                    parameters={"RouteTableId": table_id, "DestinationCidrBlock": self.destination,
                                "InstanceId": initial_instance_id},
                    physical_resource_id=cr.PhysicalResourceId.of(f"vip-route-{index}"),
                    # Re-creating this resource must not fail on a route the checker already maintains.
                    ignore_error_codes_matching="RouteAlreadyExists",
                ),
                policy=policy,
                install_latest_aws_sdk=False,
                log_group=log_group,
            )
            for index, table_id in enumerate(route_table_ids)
        ]
        provider = Stack.of(self).node.find_child("AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""))
        drop_redundant_role_dependency(_provider_function(provider))
        Validations.of(provider).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
               "AWSLambdaBasicExecutionRole]",
            reason="CDK's AwsCustomResource provider; the basic execution role only lets it write its own logs."))


def _provider_function(provider: object) -> lambda_.IFunction:
    """The singleton's underlying function (the construct found under the stack is the lambda.Function)."""
    assert isinstance(provider, lambda_.Function), f"CDK's AwsCustomResource provider changed shape: {provider!r}"
    return provider
