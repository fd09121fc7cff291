"""Keyless access for GitHub Actions: the GitHub OIDC provider and two roles that hold no power of their own.

- diff role: trusted only by pull requests of the repository; may assume the CDK lookup role (what
  `cdk diff --method=template` uses) and read the clusters' status.
- deploy role: trusted only by the deploy jobs' GitHub environments of the repository (or, with none configured,
  the deploy branch); may assume the CDK bootstrap roles a deploy uses (deploy, file and image publishing,
  lookup) and do what `efs-ha status` and `efs-ha verify` need on the clusters' own resources.

Every trust pins `aud` to sts.amazonaws.com and `sub` with StringEquals to exact subjects (no wildcards): GitHub
puts `repo:OWNER/REPO:pull_request` in a pull request's token and `repo:OWNER/REPO:environment:NAME` in the token
of a job that declares `environment: NAME` (GitHub docs, "About security hardening with OpenID Connect").
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Aws, Duration, Validations
from aws_cdk import aws_iam as iam

from cluster_config.stages import CiAccessSettings
from constructs import Construct
from constructs.cluster_node import CLUSTER_TAG

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
STS_AUDIENCE = "sts.amazonaws.com"
# The CDK bootstrap roles (cdk bootstrap's template names them cdk-<qualifier>-<kind>-<account>-<region>).
DIFF_BOOTSTRAP_ROLES = ("lookup",)
DEPLOY_BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
SSM_DOCUMENT = "AWS-RunShellScript"  # efs_ha_cli.verify runs its client commands with it


class GithubCiAccess(Construct):
    def __init__(self, scope: Construct, id_: str, *, settings: CiAccessSettings) -> None:
        super().__init__(scope, id_)
        self.settings = settings
        self.provider_arn = self._provider_arn()
        self.diff_role = self._role("DiffRole", "read-only: cdk diff and efs-ha status for pull requests",
                                    (settings.pull_request_subject,))
        self.deploy_role = self._role("DeployRole", "cdk deploy, then efs-ha status/verify, for the deploy jobs",
                                      settings.deploy_subjects)
        self._allow_bootstrap_roles(self.diff_role, DIFF_BOOTSTRAP_ROLES)
        self._allow_bootstrap_roles(self.deploy_role, DEPLOY_BOOTSTRAP_ROLES)
        for role in (self.diff_role, self.deploy_role):
            self._allow_status(role)
        self._allow_verify(self.deploy_role)

    def _provider_arn(self) -> str:
        if self.settings.oidc_provider_arn:
            # An account has at most one provider per URL: reuse the existing one instead of failing the deploy.
            return self.settings.oidc_provider_arn
        # The native resource (no custom-resource Lambda); IAM no longer needs thumbprints for GitHub's issuer.
        provider = iam.OidcProviderNative(self, "GithubOidcProvider", url=GITHUB_OIDC_URL, client_ids=[STS_AUDIENCE])
        return provider.oidc_provider_arn

    def _role(self, id_: str, purpose: str, subjects: tuple[str, ...]) -> iam.Role:
        conditions = {"StringEquals": {f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                                       f"{GITHUB_OIDC_HOST}:sub": list(subjects)}}
        return iam.Role(self, id_, description=f"GitHub Actions ({self.settings.repository}): {purpose}",
                        assumed_by=iam.WebIdentityPrincipal(self.provider_arn, conditions),
                        max_session_duration=Duration.hours(1))

    def _accounts(self) -> list[str]:
        return list(self.settings.target_accounts) or [Aws.ACCOUNT_ID]

    def _allow_bootstrap_roles(self, role: iam.Role, kinds: tuple[str, ...]) -> None:
        qualifier = self.settings.bootstrap_qualifier
        arns = [f"arn:{Aws.PARTITION}:iam::{account}:role/cdk-{qualifier}-{kind}-role-{account}-{region}"
                for kind in kinds for account in self._accounts() for region, _ in self._regions_nag()]
        role.add_to_policy(iam.PolicyStatement(actions=["sts:AssumeRole", "sts:TagSession"], resources=arns))

    def _regions_nag(self) -> list[tuple[str, str]]:
        """(region as deployed, region as cdk-nag renders it) pairs."""
        return [(region, region) for region in self.settings.regions] or [(Aws.REGION, "<AWS::Region>")]

    def _scoped(self, role: iam.Role, actions: list[str], service: str, resource: str, why: str,
                conditions: dict[str, Any] | None = None) -> None:
        """One statement on `resource` ({stack}, {region}) in this account, for each cluster stack and region; its
        trailing wildcard acknowledged for cdk-nag with `why`."""
        template = f"arn:{{partition}}:{service}:{{region}}:{{account}}:{resource}"
        stacks = self.settings.cluster_stack_names if "{stack}" in resource else ("",)
        resources, rendered = [], []
        for region, nag_region in self._regions_nag():
            for stack in stacks:
                resources.append(template.format(partition=Aws.PARTITION, region=region, account=Aws.ACCOUNT_ID,
                                                  stack=stack))
                rendered.append(template.format(partition="<AWS::Partition>", region=nag_region,
                                                account="<AWS::AccountId>", stack=stack))
        role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))
        for arn in rendered:
            Validations.of(role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{arn}]", reason=why))

    def _unscoped(self, role: iam.Role, actions: list[str], why: str) -> None:
        role.add_to_policy(iam.PolicyStatement(actions=actions, resources=["*"]))
        Validations.of(role).acknowledge(Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=why))

    def _allow_status(self, role: iam.Role) -> None:
        """What `efs-ha status` reads: the stack's outputs, the state table, the checker's settings, EC2."""
        self._scoped(role, ["cloudformation:DescribeStacks"], "cloudformation", "stack/{stack}/*",
                     "A stack ARN ends in a generated id; the name part pins the cluster's stack.")
        self._scoped(role, ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query"], "dynamodb", "table/{stack}-*",
                     _GENERATED_NAMES)
        self._scoped(role, ["lambda:GetFunctionConfiguration"], "lambda", "function:{stack}-*", _GENERATED_NAMES)
        self._unscoped(role, ["ec2:DescribeInstances", "ec2:DescribeRouteTables", "ssm:GetCommandInvocation"],
                       "EC2 Describe* and ssm:GetCommandInvocation support no resource-level permissions.")

    def _allow_verify(self, role: iam.Role) -> None:
        """`efs-ha verify`: two switchovers through the checker (or its queue in the table), commands over SSM."""
        self._scoped(role, ["lambda:InvokeFunction"], "lambda", "function:{stack}-*", _GENERATED_NAMES)
        self._scoped(role, ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"], "dynamodb",
                     "table/{stack}-*", _GENERATED_NAMES)
        role.add_to_policy(iam.PolicyStatement(
            actions=["ssm:SendCommand"],
            resources=[f"arn:{Aws.PARTITION}:ssm:{region}::document/{SSM_DOCUMENT}" for region, _ in
                       self._regions_nag()]))
        self._scoped(role, ["ssm:SendCommand"], "ec2", "instance/*",
                     f"Limited to the clusters' node instances by the {CLUSTER_TAG} tag condition; a replaced node "
                     "gets a new instance id.",
                     conditions={"StringEquals": {f"ssm:resourceTag/{CLUSTER_TAG}":
                                                  list(self.settings.cluster_stack_names)}})


# CloudFormation names generated resources <stack>-<logical id>-<suffix>: the prefix pins the cluster's stack.
_GENERATED_NAMES = "Generated names are <stack>-<logical id>-<suffix>; the stack-name prefix pins the cluster."
