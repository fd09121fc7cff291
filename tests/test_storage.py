"""EFS: encrypted, a mount target in every private subnet (two or three AZs), NFS only from the nodes, TLS only,
backed up and retained."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.network_variants import IDS, NAMES_AND_ENDPOINTS, variant_template


def test_file_system_is_encrypted_backed_up_and_retained(template: Template) -> None:
    template.has_resource("AWS::EFS::FileSystem", {
        "Properties": Match.object_like({"Encrypted": True, "BackupPolicy": {"Status": "ENABLED"}}),
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
    })


def test_file_system_policy_denies_clients_without_tls(template: Template) -> None:
    template.has_resource_properties("AWS::EFS::FileSystem", {"FileSystemPolicy": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Action": "*",
                           "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
    ])}})


def test_mount_targets_in_both_private_subnets(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    private = {k for k, r in resources.items() if r["Type"] == "AWS::EC2::Subnet"
               and r["Properties"]["CidrBlock"] in {"10.0.110.0/24", "10.0.120.0/24"}}
    targets = {r["Properties"]["SubnetId"]["Ref"] for r in resources.values() if r["Type"] == "AWS::EFS::MountTarget"}
    assert targets == private


def test_efs_security_group_only_ingress_is_nfs_from_the_node_security_group(
        template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    (target,) = {r["Properties"]["SecurityGroups"][0]["Fn::GetAtt"][0] for r in resources.values()
                 if r["Type"] == "AWS::EFS::MountTarget"}
    efs_group = resources[target]["Properties"]
    assert "SecurityGroupIngress" not in efs_group
    ingress = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"
               and r["Properties"]["GroupId"]["Fn::GetAtt"][0] == target]
    (node_template,) = [k for k, r in resources.items() if r["Type"] == "AWS::EC2::LaunchTemplate"][:1]
    node_group_id = resources[node_template]["Properties"]["LaunchTemplateData"]["SecurityGroupIds"][0]["Fn::GetAtt"][0]
    assert ingress == [{
        "IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049, "Description": "NFS from cluster nodes",
        "GroupId": {"Fn::GetAtt": [target, "GroupId"]},
        "SourceSecurityGroupId": {"Fn::GetAtt": [node_group_id, "GroupId"]},
    }]
    # No egress either: mount targets only answer.
    assert efs_group["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"


@pytest.mark.parametrize("overrides", [NAMES_AND_ENDPOINTS, IDS], ids=["zone-names", "zone-ids"])
def test_mount_targets_follow_the_private_subnets_into_the_chosen_zones(overrides: dict[str, Any]) -> None:
    resources = variant_template(overrides)["Resources"]
    zone_of = {k: r["Properties"].get("AvailabilityZone", r["Properties"].get("AvailabilityZoneId"))
               for k, r in resources.items() if r["Type"] == "AWS::EC2::Subnet"
               and r["Properties"]["CidrBlock"] in {"10.0.110.0/24", "10.0.120.0/24"}}
    targets = [r["Properties"]["SubnetId"]["Ref"] for r in resources.values() if r["Type"] == "AWS::EFS::MountTarget"]
    assert sorted(zone_of[t] for t in targets) == sorted(overrides["availability_zones"])
