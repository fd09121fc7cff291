"""The CI access stack (issue 13): GitHub OIDC trust pinned to exact `aud` and `sub`, no wildcard principals, and
roles that may only assume the CDK bootstrap roles they need plus what efs-ha status/verify use."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from cluster_config.stages import CiAccessSettings
from stacks.ci_access_stack import CiAccessStack
from tests.staged_app import staged_assembly

REPO = "your-org/efs-ha-cluster"  # deploy/ci-access.json
OIDC = "token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def access() -> dict[str, Any]:
    template: dict[str, Any] = staged_assembly().get_stack_by_name("EfsHaCiAccess").template
    return template


def _resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}


def _role(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    return next((k, v) for k, v in _resources(template, "AWS::IAM::Role").items() if name in k)


def _policy_statements(template: dict[str, Any], role_key: str) -> list[dict[str, Any]]:
    policy = next(p for p in _resources(template, "AWS::IAM::Policy").values()
                  if {"Ref": role_key} in p["Properties"]["Roles"])
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _text(value: Any) -> str:
    """An ARN as text, its intrinsic parts (Fn::Join of Ref AWS::Partition...) rendered as ${...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_text(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + str(value["Ref"]) + "}"
    return str(value)


def _resources_of(statement: dict[str, Any]) -> set[str]:
    resources = statement["Resource"]
    return {_text(r) for r in resources} if isinstance(resources, list) else {_text(resources)}


def _assumable(template: dict[str, Any], role_key: str) -> set[str]:
    return {resource for statement in _policy_statements(template, role_key)
            if "sts:AssumeRole" in _actions(statement) for resource in _resources_of(statement)}


def test_the_github_oidc_provider_is_created_natively_for_sts(access: dict[str, Any]) -> None:
    (provider,) = _resources(access, "AWS::IAM::OIDCProvider").values()
    assert provider["Properties"] == {"Url": f"https://{OIDC}", "ClientIdList": ["sts.amazonaws.com"]}
    assert not _resources(access, "AWS::Lambda::Function")  # no custom-resource provider


def test_the_diff_role_trusts_only_pull_requests_of_the_repository(access: dict[str, Any]) -> None:
    _, role = _role(access, "DiffRole")
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {"StringEquals": {f"{OIDC}:aud": "sts.amazonaws.com",
                                                       f"{OIDC}:sub": [f"repo:{REPO}:pull_request"]}}


def test_the_deploy_role_trusts_only_the_stages_environments(access: dict[str, Any]) -> None:
    _, role = _role(access, "DeployRole")
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Condition"] == {"StringEquals": {
        f"{OIDC}:aud": "sts.amazonaws.com",
        f"{OIDC}:sub": [f"repo:{REPO}:environment:dev", f"repo:{REPO}:environment:prod"]}}


def test_no_trust_has_a_wildcard_principal_or_a_pattern_condition(access: dict[str, Any]) -> None:
    for _, role in _resources(access, "AWS::IAM::Role").items():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            assert set(statement["Principal"]) == {"Federated"}
            assert statement["Principal"]["Federated"] != "*"
            assert set(statement["Condition"]) == {"StringEquals"}  # never StringLike
            subjects = statement["Condition"]["StringEquals"][f"{OIDC}:sub"]
            assert all("*" not in subject and "?" not in subject for subject in subjects)


def test_the_diff_role_may_assume_only_the_lookup_role(access: dict[str, Any]) -> None:
    key, _ = _role(access, "DiffRole")
    assert _assumable(access, key) == {
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-lookup-role-${AWS::AccountId}-eu-west-1"}
    writes = [a for s in _policy_statements(access, key) for a in _actions(s)
              if a.split(":")[1].startswith(("Put", "Update", "Delete", "Invoke", "Send"))]
    assert writes == []


def test_the_deploy_role_may_assume_the_four_bootstrap_roles_it_uses(access: dict[str, Any]) -> None:
    key, _ = _role(access, "DeployRole")
    assert _assumable(access, key) == {
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/cdk-hnb659fds-{kind}-role-${{AWS::AccountId}}-eu-west-1"
        for kind in ("deploy", "file-publishing", "image-publishing", "lookup")}


def test_status_and_verify_access_is_scoped_to_the_stages_stacks(access: dict[str, Any]) -> None:
    key, _ = _role(access, "DeployRole")
    scoped = {a: _resources_of(s) for s in _policy_statements(access, key) for a in _actions(s)
              if a != "ssm:SendCommand"}
    assert scoped["cloudformation:DescribeStacks"] == {
        f"arn:${{AWS::Partition}}:cloudformation:eu-west-1:${{AWS::AccountId}}:stack/EfsHaCluster-{stage}/*"
        for stage in ("dev", "prod")}
    for action in ("dynamodb:Scan", "dynamodb:PutItem"):
        assert scoped[action] == {f"arn:${{AWS::Partition}}:dynamodb:eu-west-1:${{AWS::AccountId}}:table/"
                                  f"EfsHaCluster-{stage}-*" for stage in ("dev", "prod")}
    assert scoped["lambda:InvokeFunction"] == {f"arn:${{AWS::Partition}}:lambda:eu-west-1:${{AWS::AccountId}}:"
                                               f"function:EfsHaCluster-{stage}-*" for stage in ("dev", "prod")}
    assert scoped["ec2:DescribeInstances"] == {"*"}
    send = [s for s in _policy_statements(access, key) if "ssm:SendCommand" in _actions(s)]
    on_instances = next(s for s in send if "Condition" in s)
    assert on_instances["Condition"] == {"StringEquals": {
        "ssm:resourceTag/efs-ha:cluster": ["EfsHaCluster-dev", "EfsHaCluster-prod"]}}
    assert not any(a.startswith(("iam:", "cloudformation:Create", "cloudformation:Update", "s3:", "ec2:Stop"))
                   for s in _policy_statements(access, key) for a in _actions(s))


def test_an_existing_oidc_provider_is_reused_and_target_accounts_are_named() -> None:
    existing = f"arn:aws:iam::123456789012:oidc-provider/{OIDC}"
    settings = CiAccessSettings(stack_name="Access", repository="acme/storage", deploy_branch="main",
                                deploy_environments=(), oidc_provider_arn=existing, bootstrap_qualifier="custom1",
                                target_accounts=("111111111111",), regions=("us-east-1",),
                                cluster_stack_names=("EfsHaCluster",))
    template = Template.from_stack(CiAccessStack(cdk.App(), "Access", settings=settings))

    template.resource_count_is("AWS::IAM::OIDCProvider", 0)
    template.has_resource_properties("AWS::IAM::Role", {"AssumeRolePolicyDocument": {"Statement": [{
        "Principal": {"Federated": existing},
        "Condition": {"StringEquals": {f"{OIDC}:sub": ["repo:acme/storage:ref:refs/heads/main"]}}}]}})
    template.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": Match.array_with([
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                               ":iam::111111111111:role/cdk-custom1-deploy-role-111111111111-us-east-1"]]}])})])}})
