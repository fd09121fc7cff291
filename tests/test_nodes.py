"""Cluster nodes: AL2023, IMDSv2, no SSH key, SSM, encrypted EBS, source/dest check off, client-only ingress."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from tests.conftest import VARIANT_CONTEXT


def _instances(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template_json["Resources"].values() if r["Type"] == "AWS::EC2::Instance"]


def test_two_nodes_one_in_each_private_subnet(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    subnets = {node["SubnetId"]["Ref"] for node in _instances(template_json)}
    assert {resources[s]["Properties"]["CidrBlock"] for s in subnets} == {"10.0.110.0/24", "10.0.120.0/24"}


def test_nodes_require_imdsv2_and_have_no_key_pair_and_no_source_dest_check(
        template_json: dict[str, Any]) -> None:
    for node in _instances(template_json):
        assert node["MetadataOptions"]["HttpTokens"] == "required"
        assert node["SourceDestCheck"] is False
        assert "KeyName" not in node
        assert "LaunchTemplate" not in node  # no fixed-name launch template to clash between two clusters


def test_nodes_run_amazon_linux_2023_on_encrypted_ebs(template_json: dict[str, Any]) -> None:
    for node in _instances(template_json):
        assert "al2023" in node["ImageId"]["Ref"]
        (device,) = node["BlockDeviceMappings"]
        assert device["Ebs"]["Encrypted"] is True


def test_node_role_allows_ssm_session_manager(template: Template) -> None:
    template.has_resource_properties("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": Match.object_like({"Statement": [Match.object_like(
            {"Principal": {"Service": "ec2.amazonaws.com"}})]}),
        "ManagedPolicyArns": [{"Fn::Join": ["", Match.array_with([Match.string_like_regexp(
            "AmazonSSMManagedInstanceCore")])]}],
    })


def test_node_security_group_admits_minio_ports_only_from_client_cidrs(template: Template) -> None:
    template.has_resource_properties("AWS::EC2::SecurityGroup", {
        "GroupDescription": Match.string_like_regexp("cluster nodes"),
        "SecurityGroupIngress": [
            {"CidrIp": "10.0.0.0/16", "Description": "MinIO S3 API from clients", "FromPort": 9000,
             "IpProtocol": "tcp", "ToPort": 9000},
            {"CidrIp": "10.0.0.0/16", "Description": "MinIO console from clients", "FromPort": 9090,
             "IpProtocol": "tcp", "ToPort": 9090},
        ],
    })


def test_nodes_are_tagged_for_runtime_discovery(template_json: dict[str, Any]) -> None:
    names = []
    for node in _instances(template_json):
        tags = {t["Key"]: t["Value"] for t in node["Tags"]}
        assert tags["efs-ha:cluster"] == "EfsHaCluster"
        names.append(tags["efs-ha:node"])
    assert sorted(names) == ["node1", "node2"]


def test_node_may_write_only_its_own_heartbeat_item(template_json: dict[str, Any]) -> None:
    statements = [s for r in template_json["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    writes = [s for s in statements if "dynamodb:UpdateItem" in s["Action"]
              and "Condition" in s and s["Condition"].get("ForAllValues:StringEquals")]
    keys = sorted(s["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"][0] for s in writes)
    assert keys == ["node#node1", "node#node2"]


def test_nodes_are_updated_one_at_a_time(template_json: dict[str, Any]) -> None:
    # A user-data change stops and starts an instance: in parallel that would take both nodes down at once.
    resources = template_json["Resources"]
    instances = [k for k, r in resources.items() if r["Type"] == "AWS::EC2::Instance"]
    (node1,) = [k for k in instances if k.startswith("Node1")]
    (node2,) = [k for k in instances if k.startswith("Node2")]
    assert node1 in resources[node2].get("DependsOn", [])


def test_first_boot_waits_for_efs_mount_targets_and_outbound_routes(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    needed = {k for k, r in resources.items() if r["Type"] in {"AWS::EFS::MountTarget", "AWS::EC2::VPCEndpoint"}}
    needed |= {k for k, r in resources.items() if r["Type"] == "AWS::EC2::Route" and "NatGatewayId" in r["Properties"]}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::EC2::Instance":
            assert needed <= set(resource["DependsOn"]), logical_id


def test_a_user_data_change_replaces_the_node_instead_of_being_ignored(
        template_json: dict[str, Any], variant_template_json: dict[str, Any]) -> None:
    # cloud-init runs user-data once; with replacement on change the logical ID carries a user-data hash.
    def user_data(template: dict[str, Any]) -> dict[str, str]:
        return {k: json.dumps(r["Properties"]["UserData"], sort_keys=True)
                for k, r in template["Resources"].items() if r["Type"] == "AWS::EC2::Instance"}

    ids, other = user_data(template_json), user_data(variant_template_json)
    mount_point = VARIANT_CONTEXT["mount_point"]  # how the variant changes user-data
    assert all(mount_point not in text for text in ids.values()) and all(mount_point in t for t in other.values())
    assert len(ids) == 2 and len(other) == 2 and not ids.keys() & other.keys()


def test_a_deploy_waits_until_each_node_reports_itself_ready(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::EC2::Instance":
            continue
        assert resource["CreationPolicy"] == {"ResourceSignal": {"Timeout": "PT20M"}}
        parts = resource["Properties"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
        text = "".join(p for p in parts if isinstance(p, str))
        # The bootstrap signals its own (hash-suffixed) logical ID once the agent has written a heartbeat.
        assert f"readonly instance_logical_id='{logical_id}'" in text
        assert "aws cloudformation signal-resource" in text
    statements = [s for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    signal = [s for s in statements if s["Action"] == "cloudformation:SignalResource"]
    assert len(signal) == 2 and all(s["Resource"] == {"Ref": "AWS::StackId"} for s in signal)
