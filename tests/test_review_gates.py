"""Review gates: cdk-nag AwsSolutions clean, cfn-lint clean, stateful IDs pinned, two clusters side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks

from cluster_config import load_config
from stacks.cluster_stack import EfsHaClusterStack
from tests.conftest import PROJECT_ROOT, cdk_json_context, context_getter

# Renaming any of these replaces the resource: EFS data, the failover epoch and MinIO's root key would be lost.
PINNED_STATEFUL_IDS = {
    "SharedStorageFileSystemFF4F5FE9": "AWS::EFS::FileSystem",
    "ClusterStateTableE1209BF7": "AWS::DynamoDB::GlobalTable",
    "MinioCredentialsSecret3CDE5A3D": "AWS::SecretsManager::Secret",
}
# Properties that fix a physical name (region- or account-wide): two clusters in one account would clash.
PHYSICAL_NAME_PROPERTIES = {"FunctionName", "TableName", "RoleName", "BucketName", "TopicName", "LogGroupName",
                            "LaunchTemplateName", "AlarmName", "DashboardName", "GroupName", "Name",
                            "RuleName", "ScheduleName", "FileSystemName", "ManagedPolicyName", "SecretName"}


@pytest.fixture(scope="module")
def synthesized_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`python app.py` exactly as `cdk synth` runs it: no AWS credentials, context from cdk.json."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CDK_OUTDIR=str(outdir), CDK_CONTEXT_JSON=json.dumps(cdk_json_context()),
               PATH=f"{PROJECT_ROOT / '.tools/node_modules/.bin'}:{os.environ['PATH']}")
    result = subprocess.run([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    return outdir, result.stdout + result.stderr


def test_cdk_nag_reports_no_unacknowledged_errors_or_warnings(synthesized_dir: tuple[Path, str]) -> None:
    _, output = synthesized_dir
    assert "AwsSolutions-" not in output, output


def test_every_acknowledged_nag_rule_has_a_real_reason(app: cdk.App) -> None:
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = [(construct.node.path, rule, reason) for construct in app.node.find_all()
                    for entry in construct.node.metadata if entry.type == key
                    for rule, reason in entry.data.items()]
    nag = [item for item in acknowledged if "AwsSolutions-" in item[1]]
    assert nag, "expected the documented acknowledgements (SSM managed policy, EC29, SMG4)"
    for path, rule, reason in nag:
        assert len(reason.split()) >= 8, f"{path} {rule}: reason too thin for a reviewer: {reason!r}"


def test_cfn_lint_finds_no_errors_in_any_synthesized_template(synthesized_dir: tuple[Path, str]) -> None:
    outdir, _ = synthesized_dir
    templates = sorted(outdir.glob("*.template.json"))
    assert templates
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable",
                             *map(str, templates)], capture_output=True, text=True)
    errors = [line for line in result.stdout.splitlines() if ":E" in line.split(" ")[0] or ":E" in line]
    assert not errors, result.stdout


@pytest.mark.parametrize(("logical_id", "type_"), sorted(PINNED_STATEFUL_IDS.items()))
def test_stateful_resources_keep_their_logical_ids_and_are_retained(template_json: dict[str, Any],
                                                                    logical_id: str, type_: str) -> None:
    resource = template_json["Resources"].get(logical_id)
    assert resource is not None, f"{logical_id} vanished: a refactor would replace this {type_}"
    assert resource["Type"] == type_
    assert resource["DeletionPolicy"] == "Retain" and resource["UpdateReplacePolicy"] == "Retain"


def test_two_clusters_synthesize_side_by_side_with_no_fixed_physical_names() -> None:
    app = cdk.App(context=cdk_json_context())
    stacks = [EfsHaClusterStack(app, name, config=load_config(context_getter(stack_name=name)))
              for name in ("ClusterBlue", "ClusterGreen")]
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()
    assert {s.stack_name for s in assembly.stacks} == {"ClusterBlue", "ClusterGreen"}
    for stack in stacks:
        template = assembly.get_stack_by_name(stack.stack_name).template
        for logical_id, resource in template["Resources"].items():
            fixed = {k for k, v in resource.get("Properties", {}).items()
                     if k in PHYSICAL_NAME_PROPERTIES and isinstance(v, str)}
            assert not fixed, f"{logical_id} fixes a physical name: {fixed}"
