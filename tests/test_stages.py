"""Stages (issue 13): one app, several deployments, each validated with one error naming stage and key; the
default single-cluster flow unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from cluster_config import ConfigError
from cluster_config.stages import load_ci_access, load_stages, main
from tests.conftest import PROJECT_ROOT, context_getter
from tests.staged_app import staged_assembly


def _stages(stages: Any, **context: Any) -> list[Any]:
    return load_stages(context_getter(stages=stages, **context), project_root=PROJECT_ROOT)


def _error(stages: Any, **context: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        _stages(stages, **context)
    return str(caught.value)


def test_no_stages_key_means_the_single_cluster_flow() -> None:
    assert load_stages(context_getter(), project_root=PROJECT_ROOT) == []
    assert load_ci_access(context_getter(), []) is None


def test_each_stage_gets_its_own_stack_name_and_its_overrides_on_top_of_cdk_json() -> None:
    dev, prod = _stages({"dev": {"region": "eu-west-1"},
                         "prod": {"account": "123456789012", "config": {"instance_type": "m7i.large"}}})

    assert (dev.name, dev.stack_name, dev.region, dev.account) == ("dev", "EfsHaCluster-dev", "eu-west-1", None)
    assert (prod.stack_name, prod.account, prod.region) == ("EfsHaCluster-prod", "123456789012", None)
    assert prod.config.instance_type == "m7i.large" and dev.config.instance_type == "t3.small"
    assert dev.config.vip == prod.config.vip  # the rest comes from cdk.json


def test_a_stage_may_name_its_stack_and_the_base_name_follows_stack_name() -> None:
    (only,) = _stages({"dev": {"config": {"stack_name": "Storage-Dev"}}})
    (named,) = _stages({"dev": {}}, stack_name="Objects")
    assert only.stack_name == "Storage-Dev" and named.stack_name == "Objects-dev"


def test_the_stages_can_live_in_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "stages.json"
    path.write_text(json.dumps({"qa": {"config": {"instance_type": "t3.micro"}}}))
    (stage,) = load_stages(context_getter(stages=str(path)), project_root=PROJECT_ROOT)
    assert stage.stack_name == "EfsHaCluster-qa" and stage.config.instance_type == "t3.micro"


@pytest.mark.parametrize(("stages", "message"), [
    ({"prod": {"config": {"vip": "10.0.5.5"}}},
     "config error: 'stages.prod.vip' 10.0.5.5 lies inside vpc_cidr 10.0.0.0/16; route-table failover only works "
     "for an address outside the VPC CIDR (e.g. 172.16.0.1)"),
    ({"prod": {"config": {"instance_typo": "m7i.large"}}},
     "config error: 'stages.prod.instance_typo' is not a config key; see the README's Configuration table"),
    ({"dev": {"region": "Europe"}},
     "config error: 'stages.dev.region' must be an AWS region such as eu-west-1 or empty, got 'Europe'"),
    ({"dev": {"account": "12345"}},
     "config error: 'stages.dev.account' must be a 12-digit AWS account id or empty, got '12345'"),
    ({"dev": {"acount": "123456789012"}},
     "config error: 'stages.dev.acount' is not a stage setting; a stage has account, region, config"),
    ({"Prod": {}},
     "config error: 'stages.Prod' stage names must be lower-case letters, digits and '-', starting with a letter, "
     "at most 20 characters (e.g. dev, prod)"),
    ({"dev": {"config": ["instance_type"]}},
     "config error: 'stages.dev.config' must be an object of config keys (as in cdk.json's context), got "
     "['instance_type']"),
    ({"a": {"config": {"stack_name": "Same"}}, "b": {"config": {"stack_name": "Same"}}},
     "config error: 'stages.b.stack_name' Same is also stage a's stack; every stage needs its own stack name "
     "(drop the override: the default is <stack_name>-<stage>)"),
    ([], "config error: 'stages' must be an object of stages"),
    ("no/such/file.json", "config error: 'stages' names "),
])
def test_bad_stages_give_one_error_naming_stage_and_key(stages: Any, message: str) -> None:
    assert _error(stages).startswith(message)


def test_a_stages_file_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stages.json"
    path.write_text("{dev: {}}")
    message = _error(str(path))
    assert message.startswith(f"config error: 'stages' file {path} is not valid JSON")


def test_ci_access_settings_default_to_the_stages_environments_and_regions() -> None:
    stages = _stages({"dev": {"region": "eu-west-1"}, "prod": {"region": "eu-central-1"}})
    access = load_ci_access(context_getter(ci_access={"repository": "acme/storage"}), stages)

    assert access is not None
    assert access.pull_request_subject == "repo:acme/storage:pull_request"
    assert access.deploy_subjects == ("repo:acme/storage:environment:dev", "repo:acme/storage:environment:prod")
    assert access.regions == ("eu-central-1", "eu-west-1")
    assert access.cluster_stack_names == ("EfsHaCluster-dev", "EfsHaCluster-prod")
    assert (access.bootstrap_qualifier, access.oidc_provider_arn, access.stack_name) == (
        "hnb659fds", None, "EfsHaCiAccess")


def test_ci_access_without_environments_trusts_the_deploy_branch_only() -> None:
    access = load_ci_access(context_getter(ci_access={"repository": "acme/storage", "deploy_branch": "release",
                                                      "deploy_environments": []}), [])
    assert access is not None and access.deploy_subjects == ("repo:acme/storage:ref:refs/heads/release",)
    assert access.cluster_stack_names == ("EfsHaCluster",)


@pytest.mark.parametrize(("access", "message"), [
    ({}, "config error: 'ci_access.repository' is required"),
    ({"repository": "acme"}, "config error: 'ci_access.repository' must be the GitHub repository as owner/name"),
    ({"repository": "acme/storage", "bootstrap_qualifier": "Not-Valid"},
     "config error: 'ci_access.bootstrap_qualifier' must be the cdk bootstrap --qualifier"),
    ({"repository": "acme/storage", "oidc_provider_arn": "arn:aws:iam::123456789012:oidc-provider/example.com"},
     "config error: 'ci_access.oidc_provider_arn' must be the ARN of this account's token.actions"),
    ({"repository": "acme/storage", "deploy_environments": ["prod/*"]},
     "config error: 'ci_access.deploy_environments' must list GitHub environment names"),
    ({"repository": "acme/storage", "role": "admin"}, "config error: 'ci_access.role' is not a CI access setting"),
])
def test_bad_ci_access_gives_one_error_naming_the_key(access: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_ci_access(context_getter(ci_access=access or {"deploy_branch": "main"}), [])
    assert str(caught.value).startswith(message)


def test_the_matrix_command_prints_the_checked_in_stages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy/stages.json"]) == 0
    stages = json.loads(capsys.readouterr().out)
    assert [(s["stage"], s["stack"]) for s in stages] == [("dev", "EfsHaCluster-dev"), ("prod", "EfsHaCluster-prod")]
    assert main(["deploy/missing.json"]) == 2


def test_synth_with_the_checked_in_stages_writes_every_stages_template_without_credentials() -> None:
    assembly = staged_assembly()  # in process (this module runs on the CDK worker: aws_cdk imported above)
    assert isinstance(assembly, cdk.cx_api.CloudAssembly)

    names = sorted(stack.stack_name for stack in assembly.stacks)
    assert names == ["EfsHaCiAccess", "EfsHaCluster-dev", "EfsHaCluster-prod"]
    for name in ("EfsHaCluster-dev", "EfsHaCluster-prod"):
        artifact = assembly.get_stack_by_name(name)
        assert Path(artifact.template_full_path).is_file()
        assert artifact.environment.account == "unknown-account"  # env-agnostic: no credentials needed
        assert artifact.environment.region == "unknown-region"
    dev = assembly.get_stack_by_name("EfsHaCluster-dev").template
    prod = assembly.get_stack_by_name("EfsHaCluster-prod").template
    vpc_cidrs = [next(r["Properties"]["CidrBlock"] for r in t["Resources"].values() if r["Type"] == "AWS::EC2::VPC")
                 for t in (dev, prod)]
    assert vpc_cidrs == ["10.0.0.0/16", "10.1.0.0/16"]  # prod's overrides reached its template


def test_the_checked_in_cdk_json_has_no_stages_so_the_default_synth_stays_one_stack() -> None:
    context = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    assert "stages" not in context and "ci_access" not in context
