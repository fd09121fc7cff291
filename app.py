#!/usr/bin/env python3
"""CDK entry point: validate the config once, then compose the stack; bad config ends synth with one line."""

from __future__ import annotations

import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cluster_config import ClusterConfig, ConfigError, load_config
from stacks.cluster_stack import EfsHaClusterStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App()
    config: ClusterConfig = load_config(app.node.try_get_context)
    # No env: the stack stays environment-agnostic, so synth needs no credentials and does no lookups.
    EfsHaClusterStack(app, config.stack_name, config=config)
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
