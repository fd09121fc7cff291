"""The CI access stack: deployed once per account by an admin, never with a cluster (see README, Deploy from CI)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack

from cluster_config.stages import CiAccessSettings
from constructs import Construct
from constructs.github_ci_access import GithubCiAccess


class CiAccessStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, settings: CiAccessSettings, **kwargs: Any) -> None:
        super().__init__(scope, id_, description=f"Keyless GitHub Actions access for {settings.repository}: "
                                                 "diff and deploy roles", **kwargs)
        self.access = GithubCiAccess(self, "GithubCiAccess", settings=settings)
        # The repository variables the workflows read (README, Deploy from CI).
        CfnOutput(self, "DiffRoleArn", value=self.access.diff_role.role_arn)
        CfnOutput(self, "DeployRoleArn", value=self.access.deploy_role.role_arn)
        CfnOutput(self, "OidcProviderArn", value=self.access.provider_arn)
