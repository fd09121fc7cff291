"""Review gates: cdk-nag AwsSolutions clean, cfn-lint clean, checkov clean but for acknowledged findings, stateful
IDs pinned, two clusters side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks

from cluster_config import load_config
from stacks.cluster_stack import EfsHaClusterStack
from tests.conftest import PROJECT_ROOT, cdk_json_context, context_getter
from tests.network_variants import NAMES_AND_ENDPOINTS, THREE_ZONES, variant_template

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


def test_cfn_lint_finds_no_errors_or_warnings_in_any_synthesized_template(
        synthesized_dir: tuple[Path, str]) -> None:
    outdir, _ = synthesized_dir
    templates = sorted(outdir.glob("*.template.json"))
    assert templates
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable",
                             *map(str, templates)], capture_output=True, text=True)
    # Parseable lines read file:line:col:end-line:end-col:RULE:message; informational (I) rules do not count.
    findings = [line for line in result.stdout.splitlines() if line.split(":")[5][:1] in {"E", "W"}]
    assert not findings, result.stdout


def test_functions_wait_for_their_role_policies_but_not_twice_for_the_role(template_json: dict[str, Any]) -> None:
    """cfn-lint W3005: `Role: GetAtt` already orders a function after its role; a DependsOn on it is redundant.
    Its policies are not ordered by anything else: the function, or every resource that invokes it (a custom
    resource's ServiceToken), waits for them."""
    resources = template_json["Resources"]
    functions = {k: r for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) >= 2  # the checker and CDK's custom resource provider (the node image lookup)
    for logical_id, function in functions.items():
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        assert role not in function.get("DependsOn", []), logical_id
        callers = [r for r in resources.values()
                   if r.get("Properties", {}).get("ServiceToken") == {"Fn::GetAtt": [logical_id, "Arn"]}]
        for policy, resource in resources.items():
            if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]:
                assert policy in function.get("DependsOn", []) or any(
                    policy in caller.get("DependsOn", []) for caller in callers), \
                    f"{logical_id} could run before {policy} exists"


# ----- checkov: every finding is fixed or acknowledged (per check and resource) in audit/ -----

CHECKOV = PROJECT_ROOT / ".tools" / "checkov" / "bin" / "checkov"
ACKNOWLEDGED = PROJECT_ROOT / "audit" / "checkov-acknowledged.toml"
Finding = tuple[str, str]  # (check id, "<resource type>.<logical id>")


def acknowledged_findings() -> dict[Finding, str]:
    entries = tomllib.loads(ACKNOWLEDGED.read_text())["finding"]
    acknowledged = {(entry["check"], entry["resource"]): entry["reason"] for entry in entries}
    assert len(acknowledged) == len(entries), "an acknowledgement is listed twice"
    return acknowledged


def checkov_findings(templates: list[Path]) -> dict[Finding, str]:
    """Failed checks as {(check, resource): check name}; --skip-download keeps checkov off the network."""
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make test` installs it (audit/checkov-requirements.txt)"
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--quiet", "--compact",
               "--output", "json", *(arg for template in templates for arg in ("--file", str(template)))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode in {0, 1}, result.stderr  # 1: some check failed
    report = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    return {(check["check_id"], check["resource"]): check["check_name"]
            for check in report["results"]["failed_checks"]}


def audit_problems(findings: dict[Finding, str], acknowledged: dict[Finding, str]) -> list[str]:
    new = [f"{check} on {resource} ({findings[(check, resource)]}): fix it, or acknowledge it in "
           f"{ACKNOWLEDGED.relative_to(PROJECT_ROOT)} with a reason" for check, resource in sorted(findings.keys()
                                                                                             - acknowledged.keys())]
    stale = [f"{check} on {resource} is acknowledged but no longer found: remove the entry"
             for check, resource in sorted(acknowledged.keys() - findings.keys())]
    return new + stale


def test_checkov_finds_nothing_beyond_the_acknowledged_findings(template_json: dict[str, Any],
                                                                tmp_path: Path) -> None:
    templates = []
    variants = (("default", template_json), ("zones-and-endpoints", variant_template(NAMES_AND_ENDPOINTS)),
                ("three-zones", variant_template(THREE_ZONES)))
    for name, template in variants:
        templates.append(tmp_path / f"{name}.template.json")
        templates[-1].write_text(json.dumps(template))
    problems = audit_problems(checkov_findings(templates), acknowledged_findings())
    assert not problems, "\n".join(problems)


def test_audit_reports_new_findings_and_stale_acknowledgements() -> None:
    acknowledged = {("CKV_AWS_1", "AWS::X::Y.A"): "reason", ("CKV_AWS_2", "AWS::X::Y.B"): "reason"}
    findings = {("CKV_AWS_1", "AWS::X::Y.A"): "name", ("CKV_AWS_1", "AWS::X::Y.B"): "name"}
    problems = audit_problems(findings, acknowledged)
    assert len(problems) == 2
    assert problems[0].startswith("CKV_AWS_1 on AWS::X::Y.B (name): fix it")  # same check, other resource
    assert problems[1].startswith("CKV_AWS_2 on AWS::X::Y.B is acknowledged but no longer found")
    assert audit_problems(findings, {**acknowledged, ("CKV_AWS_1", "AWS::X::Y.B"): "r"}) == problems[1:]


def test_every_checkov_acknowledgement_names_one_check_on_one_resource_with_a_real_reason() -> None:
    for (check, resource), reason in acknowledged_findings().items():
        assert check.startswith("CKV_") and "*" not in check, check
        type_, _, logical_id = resource.rpartition(".")
        assert type_.startswith("AWS::") and logical_id.isalnum(), resource
        assert len(reason.split()) >= 12, f"{check} {resource}: reason too thin for a reviewer: {reason!r}"


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
