"""Shared fixtures: the app is synthesized once per test session (synth costs seconds, assertions do not)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from app import build_app
from cluster_config import ClusterConfig, load_config
from stacks.cluster_stack import EfsHaClusterStack

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    return context


def context_getter(**overrides: Any) -> Callable[[str], Any]:
    """A CDK-context lookalike: cdk.json values with `-c key=value`-style overrides on top."""
    context = {**cdk_json_context(), **overrides}
    return context.get


@pytest.fixture(scope="session")
def config() -> ClusterConfig:
    return load_config(context_getter(), project_root=PROJECT_ROOT)


@pytest.fixture(scope="session")
def app() -> cdk.App:
    """The real app exactly as app.py builds it, cdk-nag included."""
    return build_app(cdk.App(context=cdk_json_context()))


@pytest.fixture(scope="session")
def stack(app: cdk.App, config: ClusterConfig) -> EfsHaClusterStack:
    found = app.node.find_child(config.stack_name)
    assert isinstance(found, EfsHaClusterStack)
    return found


@pytest.fixture(scope="session")
def template(stack: EfsHaClusterStack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def template_json(template: Template) -> dict[str, Any]:
    result: dict[str, Any] = template.to_json()
    return result
