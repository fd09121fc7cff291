"""The app with the checked-in stages (deploy/stages.json) and CI access (deploy/ci-access.json), synthesized
once per process into a temporary directory, with no AWS credentials in the environment."""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import aws_cdk as cdk

from app import build_app
from tests.conftest import cdk_json_context

STAGED_CONTEXT: dict[str, Any] = {"stages": "deploy/stages.json", "ci_access": "deploy/ci-access.json"}


@cache
def staged_assembly() -> cdk.cx_api.CloudAssembly:
    outdir = Path(tempfile.mkdtemp(prefix="staged-cdk-out-"))
    no_aws = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    with mock.patch.dict(os.environ, no_aws, clear=True):
        app = build_app(cdk.App(context={**cdk_json_context(), **STAGED_CONTEXT}, outdir=str(outdir)))
        return app.synth()
