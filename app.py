#!/usr/bin/env python3
"""CDK entry point: validate the config once, then compose the stacks; bad config ends synth with one line.

Without the `stages` context key: the single cluster of cdk.json (stack `stack_name`). With it (`-c
stages=deploy/stages.json`): one cluster stack per stage. With `ci_access`: also the CI access stack.
"""

from __future__ import annotations

import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cluster_config import ClusterConfig, ConfigError, load_config
from cluster_config.stages import load_ci_access, load_stages
from stacks.ci_access_stack import CiAccessStack
from stacks.cluster_stack import EfsHaClusterStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App()
    stages = load_stages(app.node.try_get_context)
    if stages:
        for stage in stages:
            # Env-agnostic too: a stage's account and region are where the pipeline deploys it (its credentials,
            # AWS_REGION, configure-aws-credentials' allowed-account-ids), so synth needs no credentials. Pinning
            # env would also render cdk-nag findings with the concrete region/account, which the constructs'
            # acknowledgements (written for <AWS::Region>) would then not match.
            EfsHaClusterStack(app, stage.stack_name, config=stage.config)
    else:
        config: ClusterConfig = load_config(app.node.try_get_context)
        # No env: the stack stays environment-agnostic, so synth needs no credentials and does no lookups.
        EfsHaClusterStack(app, config.stack_name, config=config)
    access = load_ci_access(app.node.try_get_context, stages)
    if access is not None:
        CiAccessStack(app, access.stack_name, settings=access)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))  # findings fail synthesis
    return app


def main() -> None:
    try:
        app = build_app()
    except ConfigError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    app.synth()


if __name__ == "__main__":
    main()
