"""The AMI the nodes run: pinned, so a deploy with no config change never replaces a node.

With `node_image_ids` listing regions: a CfnMapping (the template stays environment-agnostic) read with
Fn::FindInMap on the stack's region, and a template rule that refuses a deploy to a region the map lacks
with a message naming the key and the command that fills it. With an empty map (the checked-in default, so a
fresh clone synthesizes and deploys with no preparation): the Amazon Linux 2023 public SSM parameter is read
ONCE, when the stack is created, by a create-only custom resource, and kept; later deploys never read it again.
"""

from __future__ import annotations

import hashlib

from aws_cdk import Acknowledgment, Aws, CfnMapping, CfnRule, CfnRuleAssertion, Fn, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr

from cluster_config.image import AL2023_PARAMETER, KEY, NodeImages
from constructs import Construct
from constructs.lambda_dependencies import drop_redundant_role_dependency

# A tag value's limit (the text is an instance tag in the launch templates).
_DESCRIPTION_MAX = 256


class NodeImage(Construct):
    def __init__(self, scope: Construct, id_: str, *, images: NodeImages) -> None:
        super().__init__(scope, id_)
        self.pinned = bool(images.ids)
        self.image_id = self._from_map(images) if self.pinned else self._looked_up_once()
        self.description = _pin_description(images) if self.pinned else None

    def _from_map(self, images: NodeImages) -> str:
        mapping = CfnMapping(self, "Ids", mapping={region: {"ami": ami} for region, ami in images.ids})
        regions = [region for region, _ in images.ids]
        CfnRule(self, "RegionPinned", assertions=[CfnRuleAssertion(
            assert_=Fn.condition_contains(regions, Aws.REGION),
            assert_description=f"{KEY} in cdk.json has no image for this region (it has {', '.join(regions)}): "
                               f"run `efs-ha image pin --region <this region>`, or empty {KEY} to look the "
                               f"image up once at creation.")])
        return mapping.find_in_map(Aws.REGION, "ami")

    def _looked_up_once(self) -> str:
        # CDK's provider is a singleton: the first resource's log group is its log group. Without one, Lambda
        # creates /aws/lambda/<name> on first use, outside the stack and kept forever.
        log_group = logs.LogGroup(self, "ProviderLogs", retention=logs.RetentionDays.THREE_MONTHS,
                                  removal_policy=RemovalPolicy.DESTROY)
        parameter_arn = Stack.of(self).format_arn(service="ssm", resource="parameter", account="",
                                                  resource_name=AL2023_PARAMETER.lstrip("/"))
        lookup = cr.AwsCustomResource(
            self, "Lookup",
            # on_create only: no update call, so CloudFormation keeps the value of the first deploy for good
            # (its properties never change), and the delete call is none (nothing to undo).
            on_create=cr.AwsSdkCall(
                service="SSM", action="getParameter", parameters={"Name": AL2023_PARAMETER},
                physical_resource_id=cr.PhysicalResourceId.of("efs-ha-node-image"),
                output_paths=["Parameter.Value"]),
            policy=cr.AwsCustomResourcePolicy.from_statements([
                iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter_arn])]),
            install_latest_aws_sdk=False,
            log_group=log_group,
        )
        provider = Stack.of(self).node.find_child("AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""))
        assert isinstance(provider, lambda_.Function), f"CDK's AwsCustomResource provider changed shape: {provider!r}"
        drop_redundant_role_dependency(provider)
        Validations.of(provider).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
               "AWSLambdaBasicExecutionRole]",
            reason="CDK's AwsCustomResource provider; the basic execution role only lets it write its own logs."))
        return lookup.get_response_field("Parameter.Value")


def _pin_description(images: NodeImages) -> str:
    """The pinned images as literal text for the launch templates: Fn::FindInMap is resolved only at deploy time, so
    without it a new pin would change only the Mappings section and `cdk diff` would not name the nodes it
    replaces. Every stack using this map sees a change to any of its regions (a replacement, shown by the diff)."""
    text = "node_image_ids " + " ".join(f"{region}={ami}" for region, ami in images.ids)
    if len(text) <= _DESCRIPTION_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"node_image_ids sha256:{digest} regions:{len(images.ids)}"  # tag-safe characters only
