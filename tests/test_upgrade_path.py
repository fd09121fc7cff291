"""Upgrading a deployed cluster (issue 12, part 6): today's template against the one of commit 18b69f0 (plain
AWS::EC2::Instance nodes and VipRoutes), as `cdk diff` would show it. The data (EFS, the state table, the
secrets) and the network keep their logical IDs, so CloudFormation leaves them untouched; only the node
resources and the VIP route resources are removed, and the node groups, their launch templates and the image
lookup are added (README, "Upgrading a cluster deployed before the node groups")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASELINE = json.loads((Path(__file__).parent / "baselines" / "template-before-node-groups.json").read_text())
BEFORE: dict[str, str] = BASELINE["resources"]

# What the upgrade removes, by design: the instances (and their instance profiles) and the create-only VIP routes
# (deleting them deletes no route: they have no delete call; the checker owns the routes).
REMOVED = {
    "Node1Instance21CEE3621404f4d7463a6915", "Node1InstanceInstanceProfile8625314B",
    "Node2Instance3AF82E2A1f51bb73b81504e3", "Node2InstanceInstanceProfile9B727B7C",
    "VipRoutesProviderLogs9F1B36A9", "VipRoutesRoute0EADBBBFD", "VipRoutesRoute104628E76", "VipRoutesRoute29C17616E",
    "VipRoutesRoute0CustomResourcePolicyA45EF848", "VipRoutesRoute1CustomResourcePolicy678EB451",
    "VipRoutesRoute2CustomResourcePolicyEA60FA0F",
}
# Where the data is: never replaced, never deleted by this upgrade.
DATA = {
    "SharedStorageFileSystemFF4F5FE9": "AWS::EFS::FileSystem",
    "SharedStorageFileSystemEfsMountTarget173C602CB": "AWS::EFS::MountTarget",
    "SharedStorageFileSystemEfsMountTarget2ED26E3D4": "AWS::EFS::MountTarget",
    "ClusterStateTableE1209BF7": "AWS::DynamoDB::GlobalTable",
    "MinioCredentialsSecret3CDE5A3D": "AWS::SecretsManager::Secret",
    "MinioTlsSecret0A69A615": "AWS::SecretsManager::Secret",
    "MinioTlsCaSecret693E3BC0": "AWS::SecretsManager::Secret",
}


def test_the_data_keeps_its_logical_ids_and_types(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    for logical_id, type_ in DATA.items():
        assert BEFORE[logical_id] == type_, f"baseline lacks {logical_id}"
        assert resources.get(logical_id, {}).get("Type") == type_, f"{logical_id} would be replaced or deleted"


def test_only_the_node_and_vip_route_resources_are_removed(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    removed = {k for k in BEFORE if k not in resources}
    assert removed == REMOVED
    changed_type = {k for k, t in BEFORE.items() if k in resources and resources[k]["Type"] != t}
    assert not changed_type  # a changed type under one logical ID is a replacement
    # The nodes' roles and their policies stay (same construct paths): no IAM churn for the agents.
    assert {"Node1Role5861C9A9", "Node2RoleCFC3C13F"} <= resources.keys()


def test_the_added_resources_are_the_node_groups_and_the_image_lookup(template_json: dict[str, Any]) -> None:
    added = {template_json["Resources"][k]["Type"] for k in template_json["Resources"] if k not in BEFORE}
    assert added <= {"AWS::AutoScaling::AutoScalingGroup", "AWS::EC2::LaunchTemplate", "AWS::IAM::InstanceProfile",
                     "Custom::AWS", "AWS::IAM::Policy", "AWS::Logs::LogGroup"}
    assert "AWS::AutoScaling::AutoScalingGroup" in added


def test_the_image_parameter_resolved_at_every_deploy_is_gone(template_json: dict[str, Any]) -> None:
    assert any("al2023" in p for p in BASELINE["parameters"])
    assert list(template_json.get("Parameters", {})) == ["BootstrapVersion"]
