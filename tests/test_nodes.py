"""Cluster nodes: one-instance Auto Scaling groups (AL2023, IMDSv2, no SSH key, SSM, encrypted gp3 root), one per
private subnet, tagged for the checker, replaced one at a time with resource signals; client-only ingress."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Annotations, Match, Template

from tests.conftest import VARIANT_CONTEXT


def _of_type(template_json: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template_json["Resources"].items() if r["Type"] == type_}


def _groups(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _of_type(template_json, "AWS::AutoScaling::AutoScalingGroup")


def _launch_data(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"]["LaunchTemplateData"] for r in _of_type(template_json, "AWS::EC2::LaunchTemplate").values()]


def _statements(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for r in _of_type(template_json, "AWS::IAM::Policy").values()
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


def test_no_node_is_a_plain_instance(template_json: dict[str, Any]) -> None:
    # A plain AWS::EC2::Instance that dies stays dead until someone redeploys.
    assert not _of_type(template_json, "AWS::EC2::Instance")
    assert len(_groups(template_json)) == 2 and len(_of_type(template_json, "AWS::EC2::LaunchTemplate")) == 2


def test_each_node_is_one_instance_in_its_own_private_subnet(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    cidrs = []
    for group in _groups(template_json).values():
        props = group["Properties"]
        (subnet,) = props["VPCZoneIdentifier"]
        cidrs.append(resources[subnet["Ref"]]["Properties"]["CidrBlock"])
        # One instance; the second slot only lets a rolling update start the new one before the old one goes.
        assert (props["MinSize"], props["DesiredCapacity"], props["MaxSize"]) == ("1", "1", "2")
        assert props["HealthCheckType"] == "EC2"
        assert "LaunchTemplate" in props and "LaunchConfigurationName" not in props
    assert sorted(cidrs) == ["10.0.110.0/24", "10.0.120.0/24"]
    assert not _of_type(template_json, "AWS::AutoScaling::ScalingPolicy")  # nothing ever scales a node out


def test_launch_templates_require_imdsv2_no_key_pair_and_an_encrypted_gp3_root(template_json: dict[str, Any]) -> None:
    for data in _launch_data(template_json):
        assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}
        assert "KeyName" not in data
        (device,) = data["BlockDeviceMappings"]
        assert device["Ebs"] == {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 20,
                                 "VolumeType": "gp3"}
    for template in _of_type(template_json, "AWS::EC2::LaunchTemplate").values():
        assert "LaunchTemplateName" not in template["Properties"]  # generated: two clusters never clash


def test_the_node_turns_its_own_source_dest_check_off_and_may_do_so_only_on_its_own_instances(
        template_json: dict[str, Any]) -> None:
    # A launch template cannot set SourceDestCheck: the bootstrap calls ModifyInstanceAttribute on itself.
    modify = [s for s in _statements(template_json) if s["Action"] == "ec2:ModifyInstanceAttribute"]
    nodes = sorted(s["Condition"]["StringEquals"]["aws:ResourceTag/efs-ha:node"] for s in modify)
    assert nodes == ["node1", "node2"]
    for statement in modify:
        assert statement["Condition"]["StringEquals"]["aws:ResourceTag/efs-ha:cluster"] == "EfsHaCluster"
        assert "instance/*" in json.dumps(statement["Resource"])
    for data in _launch_data(template_json):
        text = "".join(p for p in data["UserData"]["Fn::Base64"]["Fn::Join"][1] if isinstance(p, str))
        assert "modify-instance-attribute" in text and "--no-source-dest-check" in text


def test_node_role_allows_ssm_session_manager(template: Template) -> None:
    template.has_resource_properties("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": Match.object_like({"Statement": [Match.object_like(
            {"Principal": {"Service": {"Fn::Join": ["", ["ec2.", {"Ref": "AWS::URLSuffix"}]]}}})]}),
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


def test_instances_are_tagged_at_launch_for_runtime_discovery(template_json: dict[str, Any]) -> None:
    # failover_lambda/ec2_view.py finds nodes by efs-ha:cluster = the stack name and efs-ha:node = the name.
    names = []
    for group in _groups(template_json).values():
        tags = {t["Key"]: t for t in group["Properties"]["Tags"]}
        assert tags["efs-ha:cluster"] == {"Key": "efs-ha:cluster", "Value": "EfsHaCluster", "PropagateAtLaunch": True}
        assert tags["efs-ha:node"]["PropagateAtLaunch"] is True
        names.append(tags["efs-ha:node"]["Value"])
    assert sorted(names) == ["node1", "node2"]
    for data in _launch_data(template_json):
        (instance,) = [s for s in data["TagSpecifications"] if s["ResourceType"] == "instance"]
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["efs-ha:cluster"] == "EfsHaCluster" and tags["efs-ha:node"] in {"node1", "node2"}


def test_node_may_write_only_its_own_heartbeat_item(template_json: dict[str, Any]) -> None:
    writes = [s for s in _statements(template_json) if "dynamodb:UpdateItem" in s["Action"]
              and "Condition" in s and s["Condition"].get("ForAllValues:StringEquals")]
    keys = sorted(s["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"][0] for s in writes)
    assert keys == ["node#node1", "node#node2"]


def test_nodes_are_replaced_one_at_a_time(template_json: dict[str, Any]) -> None:
    # node2's group (and its launch template) waits for node1's group, whose update ends only when its new
    # instance has signalled and its old one is gone: the two nodes are never replaced together.
    resources = template_json["Resources"]
    (node1,) = [k for k in _groups(template_json) if k.startswith("Node1")]
    (node2,) = [k for k in _groups(template_json) if k.startswith("Node2")]
    (template2,) = [k for k in _of_type(template_json, "AWS::EC2::LaunchTemplate") if k.startswith("Node2")]
    assert node1 in resources[node2]["DependsOn"] and node1 in resources[template2]["DependsOn"]


def test_first_boot_waits_for_efs_mount_targets_and_outbound_routes(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    needed = {k for k, r in resources.items() if r["Type"] in {"AWS::EFS::MountTarget", "AWS::EC2::VPCEndpoint"}}
    needed |= {k for k, r in resources.items() if r["Type"] == "AWS::EC2::Route" and "NatGatewayId" in r["Properties"]}
    for logical_id, group in _groups(template_json).items():
        assert needed <= set(group["DependsOn"]), logical_id


def test_a_user_data_change_reaches_the_nodes_as_a_new_launch_template_version(
        template_json: dict[str, Any], variant_template_json: dict[str, Any]) -> None:
    # cloud-init runs user-data once: the group references the template's latest version, so a changed
    # user-data is a new version and the rolling update replaces the instance; the logical IDs stay.
    def user_data(template: dict[str, Any]) -> dict[str, str]:
        return {k: json.dumps(r["Properties"]["LaunchTemplateData"]["UserData"], sort_keys=True)
                for k, r in _of_type(template, "AWS::EC2::LaunchTemplate").items()}

    ids, other = user_data(template_json), user_data(variant_template_json)
    mount_point = VARIANT_CONTEXT["mount_point"]
    assert ids.keys() == other.keys() and len(ids) == 2
    assert all(mount_point not in ids[k] and mount_point in other[k] for k in ids)
    for logical_id, group in _groups(template_json).items():
        version = group["Properties"]["LaunchTemplate"]["Version"]
        assert version["Fn::GetAtt"][1] == "LatestVersionNumber", logical_id


def test_a_deploy_waits_until_each_new_instance_reports_itself_ready(template_json: dict[str, Any]) -> None:
    for group in _groups(template_json).values():
        assert group["CreationPolicy"] == {"ResourceSignal": {"Count": 1, "Timeout": "PT20M"}}
        rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
        # The new instance first (MinInstancesInService 1 < MaxSize 2), its signal awaited, then the old one goes.
        assert rolling["MaxBatchSize"] == 1 and rolling["MinInstancesInService"] == 1
        assert rolling["WaitOnResourceSignals"] is True and rolling["PauseTime"] == "PT20M"
        assert {"HealthCheck", "ReplaceUnhealthy", "AZRebalance"} <= set(rolling["SuspendProcesses"])
        assert not {"Launch", "Terminate"} & set(rolling["SuspendProcesses"])
        assert "AutoScalingReplacingUpdate" not in group["UpdatePolicy"]
    for logical_id, template in _of_type(template_json, "AWS::EC2::LaunchTemplate").items():
        text = "".join(p for p in template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
                       ["Fn::Join"][1] if isinstance(p, str))
        group = "Node1GroupASG" if logical_id.startswith("Node1") else "Node2GroupASG"
        (group_id,) = [k for k in _groups(template_json) if k.startswith(group)]
        # The bootstrap signals its node's group once the agent has written and read back a heartbeat.
        assert f"readonly signal_logical_id='{group_id}'" in text
        assert "aws cloudformation signal-resource" in text
    signal = [s for s in _statements(template_json) if s["Action"] == "cloudformation:SignalResource"]
    assert len(signal) == 2 and all(s["Resource"] == {"Ref": "AWS::StackId"} for s in signal)


def test_no_lifecycle_hook_the_os_stop_path_hands_over(template_json: dict[str, Any]) -> None:
    # docs/failover-design.md, "Node lifecycle": efs-ha-handover.service's stop runs at every termination.
    assert not _of_type(template_json, "AWS::AutoScaling::LifecycleHook")
    for group in _groups(template_json).values():
        assert "LifecycleHookSpecificationList" not in group["Properties"]


def test_no_instance_id_is_baked_into_the_checker_the_rules_or_the_outputs(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    checker = [r for r in _of_type(template_json, "AWS::Lambda::Function").values()
               if "ROUTE_TABLE_IDS" in r["Properties"].get("Environment", {}).get("Variables", {})]
    assert len(checker) == 1
    groups = set(_groups(template_json))
    for name, part in (("checker", checker[0]), *(("rule", r) for r in _of_type(template_json, "AWS::Events::Rule")
                                                   .values()), ("outputs", template_json["Outputs"])):
        text = json.dumps(part)
        assert "i-0" not in text and "InstanceId" not in text, name
        # Not even through a group: the checker finds instances by tag on every probe.
        assert name == "outputs" or not any(g in text for g in groups), name
    assert "NodeInstanceIds" not in template_json["Outputs"] and "NodeGroupNames" in template_json["Outputs"]
    assert not any(r["Type"] == "Custom::AWS" and "createRoute" in json.dumps(r) for r in resources.values())


def test_the_stack_synthesizes_without_warnings(stack: Any) -> None:
    """A warning nobody reads hides the next one: each is fixed or acknowledged with a reason."""
    Annotations.from_stack(stack).has_no_warning("*", Match.any_value())
