"""MinIO over TLS in the template: two secrets that start as placeholders, only the nodes may read or write the
one with the key, the checker reads the CA-only one, no PEM anywhere, and `tls: off` leaves none of it."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from tests.conftest import cdk_json_context


def _secrets(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template_json["Resources"].items() if r["Type"] == "AWS::SecretsManager::Secret"
            and "MinIO TLS" in r["Properties"].get("Description", "")}


def _tls_secret_ids(template_json: dict[str, Any]) -> tuple[str, str]:
    (key,) = [k for k, r in _secrets(template_json).items() if "private key" in r["Properties"]["Description"]]
    (ca,) = [k for k, r in _secrets(template_json).items() if "CA certificate only" in r["Properties"]["Description"]]
    return key, ca


# The node role's principal: ec2.<URL suffix>, resolved per partition at deploy time.
EC2_PRINCIPAL = {"Fn::Join": ["", ["ec2.", {"Ref": "AWS::URLSuffix"}]]}


def _role_ids(template_json: dict[str, Any], service: Any) -> set[str]:
    return {k for k, r in template_json["Resources"].items() if r["Type"] == "AWS::IAM::Role"
            and any(s.get("Principal", {}).get("Service") == service
                    for s in r["Properties"]["AssumeRolePolicyDocument"]["Statement"])}


def _grants(template_json: dict[str, Any], secret_id: str) -> dict[str, set[str]]:
    """Role logical id -> the actions its inline policies allow on the secret."""
    found: dict[str, set[str]] = {}
    for resource in template_json["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if {"Ref": secret_id} not in resources:
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for role in resource["Properties"]["Roles"]:
                found.setdefault(role["Ref"], set()).update(actions)
    return found


def _checker(template_json: dict[str, Any]) -> dict[str, Any]:
    (function,) = [r["Properties"] for r in template_json["Resources"].values()
                   if r["Type"] == "AWS::Lambda::Function" and "STATE_TABLE_NAME" in
                   r["Properties"].get("Environment", {}).get("Variables", {})]
    return function


def test_both_secrets_start_as_placeholders_without_any_pem(template_json: dict[str, Any]) -> None:
    secrets = _secrets(template_json)
    assert len(secrets) == 2
    for secret in secrets.values():
        assert "SecretString" not in secret["Properties"]
        assert "pending" in secret["Properties"]["GenerateSecretString"]["SecretStringTemplate"]
    text = json.dumps(template_json)
    assert "BEGIN" not in text and "PRIVATE KEY" not in text


def test_only_the_nodes_read_and_write_the_secret_with_the_private_key(template_json: dict[str, Any]) -> None:
    key, _ca = _tls_secret_ids(template_json)
    nodes = _role_ids(template_json, EC2_PRINCIPAL)
    grants = _grants(template_json, key)
    assert set(grants) == nodes and len(nodes) == 2
    for actions in grants.values():
        assert {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"} <= actions
        assert not {"secretsmanager:UpdateSecret", "secretsmanager:UpdateSecretVersionStage"} & actions


def test_the_checker_reads_only_the_ca_secret(template_json: dict[str, Any]) -> None:
    key, ca = _tls_secret_ids(template_json)
    checker_role = _checker(template_json)["Role"]["Fn::GetAtt"][0]
    assert checker_role not in _grants(template_json, key)
    assert "secretsmanager:PutSecretValue" not in _grants(template_json, ca)[checker_role]
    assert "secretsmanager:GetSecretValue" in _grants(template_json, ca)[checker_role]
    variables = _checker(template_json)["Environment"]["Variables"]
    assert variables["MINIO_TLS"] == "true"
    assert variables["MINIO_CA_SECRET_ARN"] == {"Ref": ca}
    assert variables["MINIO_TLS_SERVER_NAME"] == "minio.efs-ha.internal"


def test_nodes_get_both_secret_arns_in_user_data_and_clients_find_the_ca_in_the_outputs(
        template_json: dict[str, Any]) -> None:
    key, ca = _tls_secret_ids(template_json)
    outputs = template_json["Outputs"]
    assert outputs["MinioCaSecretArn"]["Value"] == {"Ref": ca}
    assert outputs["MinioTlsSecretArn"]["Value"] == {"Ref": key}
    assert outputs["MinioEndpoint"]["Value"].startswith("https://")
    user_data = _node_user_data(template_json)
    assert len(user_data) == 2
    for parts in user_data:
        assert {"Ref": key} in parts and {"Ref": ca} in parts
        assert "readonly tls_enabled='true'" in "".join(p for p in parts if isinstance(p, str))


def _node_user_data(template: dict[str, Any]) -> list[list[Any]]:
    """Each node's user-data parts (Fn::Join), from its launch template."""
    return [r["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
            for r in template["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"]


@pytest.fixture(scope="module")
def tls_off_template() -> dict[str, Any]:
    from app import build_app

    app = build_app(cdk.App(context={**cdk_json_context(), "tls": "off"}))
    stack_name = cdk_json_context().get("stack_name", "EfsHaCluster")
    result: dict[str, Any] = app.synth().get_stack_by_name(stack_name).template
    return result


def test_tls_off_serves_plain_http_with_no_tls_secret(tls_off_template: dict[str, Any]) -> None:
    assert _secrets(tls_off_template) == {}
    assert "MINIO_TLS" not in _checker(tls_off_template)["Environment"]["Variables"]
    assert not {"MinioCaSecretArn", "MinioTlsSecretArn"} & set(tls_off_template["Outputs"])
    assert tls_off_template["Outputs"]["MinioEndpoint"]["Value"].startswith("http://")
    user_data = _node_user_data(tls_off_template)
    assert len(user_data) == 2
    for parts in user_data:
        assert "readonly tls_enabled='false'" in "".join(p for p in parts if isinstance(p, str))
