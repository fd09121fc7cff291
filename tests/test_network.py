"""The network is exactly the reference architecture's: CIDRs, AZs, DNS flags, NATs and route tables."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match, Template

from constructs.network import INTERFACE_ENDPOINT_SERVICES
from tests.conftest import PROJECT_ROOT
from tests.network_variants import (
    IDS,
    NAMES_AND_ENDPOINTS,
    THREE_NODES,
    THREE_ZONE_PRIVATE,
    THREE_ZONE_PUBLIC,
    THREE_ZONES,
    ZONE_IDS,
    ZONE_NAMES,
    variant_template,
)


def _resources(template_json: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template_json["Resources"].items() if v["Type"] == type_}


def _subnet_ids_by_cidr(template_json: dict[str, Any]) -> dict[str, str]:
    return {r["Properties"]["CidrBlock"]: k for k, r in _resources(template_json, "AWS::EC2::Subnet").items()}


def test_vpc_has_reference_cidr_and_dns_support_and_hostnames(template: Template) -> None:
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.has_resource_properties("AWS::EC2::VPC", {
        "CidrBlock": "10.0.0.0/16", "EnableDnsSupport": True, "EnableDnsHostnames": True})


def test_exactly_four_subnets_with_exact_cidrs_in_two_distinct_azs(template_json: dict[str, Any]) -> None:
    subnets = _resources(template_json, "AWS::EC2::Subnet").values()
    placement = {s["Properties"]["CidrBlock"]: s["Properties"]["AvailabilityZone"] for s in subnets}
    first_az = {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    second_az = {"Fn::Select": [1, {"Fn::GetAZs": ""}]}
    assert placement == {
        "10.0.10.0/24": first_az, "10.0.110.0/24": first_az,
        "10.0.20.0/24": second_az, "10.0.120.0/24": second_az,
    }


def test_one_internet_gateway_and_one_nat_gateway_in_each_public_subnet(template_json: dict[str, Any]) -> None:
    assert len(_resources(template_json, "AWS::EC2::InternetGateway")) == 1
    by_cidr = _subnet_ids_by_cidr(template_json)
    nat_subnets = sorted(n["Properties"]["SubnetId"]["Ref"]
                         for n in _resources(template_json, "AWS::EC2::NatGateway").values())
    assert nat_subnets == sorted([by_cidr["10.0.10.0/24"], by_cidr["10.0.20.0/24"]])


def _table_of_subnet(template_json: dict[str, Any], subnet_id: str) -> str:
    associations = _resources(template_json, "AWS::EC2::SubnetRouteTableAssociation").values()
    (table,) = [a["Properties"]["RouteTableId"]["Ref"] for a in associations
                if a["Properties"]["SubnetId"]["Ref"] == subnet_id]
    return str(table)


def _default_route_target(template_json: dict[str, Any], table_id: str) -> dict[str, Any]:
    routes = [r["Properties"] for r in _resources(template_json, "AWS::EC2::Route").values()
              if r["Properties"]["RouteTableId"]["Ref"] == table_id
              and r["Properties"]["DestinationCidrBlock"] == "0.0.0.0/0"]
    assert len(routes) == 1, f"{table_id} must have exactly one default route"
    return {k: v for k, v in routes[0].items() if k not in {"RouteTableId", "DestinationCidrBlock"}}


def test_public_subnets_share_one_route_table_whose_default_route_is_the_igw(
        template_json: dict[str, Any]) -> None:
    by_cidr = _subnet_ids_by_cidr(template_json)
    public_a = _table_of_subnet(template_json, by_cidr["10.0.10.0/24"])
    assert public_a == _table_of_subnet(template_json, by_cidr["10.0.20.0/24"])
    (igw,) = _resources(template_json, "AWS::EC2::InternetGateway")
    assert _default_route_target(template_json, public_a) == {"GatewayId": {"Ref": igw}}


def test_route_a_uses_nat_1_and_route_b_uses_nat_2(template_json: dict[str, Any]) -> None:
    by_cidr = _subnet_ids_by_cidr(template_json)
    nat_in_subnet = {n["Properties"]["SubnetId"]["Ref"]: k
                     for k, n in _resources(template_json, "AWS::EC2::NatGateway").items()}
    for private, public in (("10.0.110.0/24", "10.0.10.0/24"), ("10.0.120.0/24", "10.0.20.0/24")):
        table = _table_of_subnet(template_json, by_cidr[private])
        assert _default_route_target(template_json, table) == {
            "NatGatewayId": {"Ref": nat_in_subnet[by_cidr[public]]}}
    assert len(_resources(template_json, "AWS::EC2::RouteTable")) == 3


def test_every_route_table_gets_the_vip_route_and_the_checker_keeps_them_all(template_json: dict[str, Any]) -> None:
    tables = set(_resources(template_json, "AWS::EC2::RouteTable"))
    (checker,) = [r["Properties"] for r in _resources(template_json, "AWS::Lambda::Function").values()
                  if "ROUTE_TABLE_IDS" in r["Properties"].get("Environment", {}).get("Variables", {})]
    assert {part["Ref"] for part in checker["Environment"]["Variables"]["ROUTE_TABLE_IDS"]["Fn::Join"][1]} == tables
    # Where the stack creates the first VIP routes itself (VipRoutes, while nodes are instances with an ID at
    # synth), one create-only route per table towards node1; else the checker's first run creates them.
    creators = {k: r for k, r in _resources(template_json, "Custom::AWS").items()
                if "CreateRoute" in json.dumps(r["Properties"].get("Create", ""))}
    if not creators:
        return
    (node1,) = [k for k, r in _resources(template_json, "AWS::EC2::Instance").items()
                if {"Key": "efs-ha:node", "Value": "node1"} in r["Properties"]["Tags"]]
    created_in = set()
    for resource in creators.values():
        call = resource["Properties"]["Create"]["Fn::Join"][1]
        assert '"DestinationCidrBlock":"172.16.0.1/32","InstanceId":"' in "".join(
            part for part in call if isinstance(part, str))
        refs = [part["Ref"] for part in call if isinstance(part, dict)]
        assert refs[1] == node1
        created_in.add(refs[0])
        # Create only: a later deploy must never move a route the failover checker has moved.
        assert "Update" not in resource["Properties"] and "Delete" not in resource["Properties"]
    assert created_in == tables


def test_gateway_endpoints_for_s3_and_dynamodb_serve_the_private_route_tables(template: Template) -> None:
    for service in ("s3", "dynamodb"):
        template.has_resource_properties("AWS::EC2::VPCEndpoint", {
            "VpcEndpointType": "Gateway",
            "ServiceName": Match.object_like({"Fn::Join": ["", Match.array_with([f".{service}"])]}),
            "RouteTableIds": Match.array_with([{"Ref": Match.string_like_regexp("NetworkRouteTableA")}]),
        })


# ----- availability_zones: subnet pair i in zone i, by name or by AZ ID; nothing else picks a zone -----

def _placements(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Properties"]["CidrBlock"]: {k: v for k, v in s["Properties"].items()
                                          if k in {"AvailabilityZone", "AvailabilityZoneId"}}
            for s in _resources(template_json, "AWS::EC2::Subnet").values()}


def _node_resources(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node name -> what runs it: an EC2 instance, or a one-instance Auto Scaling group (issue 12 part 1)."""
    found = {}
    for resource in template_json["Resources"].values():
        if resource["Type"] not in ("AWS::EC2::Instance", "AWS::AutoScaling::AutoScalingGroup"):
            continue
        name = next((t["Value"] for t in resource["Properties"].get("Tags", []) if t["Key"] == "efs-ha:node"), None)
        if name is not None:
            found[name] = resource
    return found


def _node_subnets(template_json: dict[str, Any]) -> dict[str, list[str]]:
    """Node name -> the subnets it may run in: an instance's SubnetId, or an Auto Scaling group's subnets."""
    found: dict[str, list[str]] = {}
    for name, resource in _node_resources(template_json).items():
        properties = resource["Properties"]
        if resource["Type"] == "AWS::EC2::Instance":
            found[name] = [properties["SubnetId"]["Ref"]]
        else:
            found[name] = [subnet["Ref"] for subnet in properties["VPCZoneIdentifier"]]
    return found


def _node_security_groups(template_json: dict[str, Any]) -> set[str]:
    """The security groups the nodes' instances get (an instance's own, or its launch template's)."""
    resources = template_json["Resources"]
    groups: list[Any] = []
    for resource in _node_resources(template_json).values():
        properties = resource["Properties"]
        if resource["Type"] == "AWS::EC2::Instance":
            groups += properties["SecurityGroupIds"]
            continue
        template = resources[properties["LaunchTemplate"]["LaunchTemplateId"]["Ref"]]["Properties"]
        data = template["LaunchTemplateData"]
        groups += data.get("SecurityGroupIds", [])
        groups += [g for interface in data.get("NetworkInterfaces", []) for g in interface.get("Groups", [])]
    return {g["Fn::GetAtt"][0] for g in groups}


def _uses_get_azs(value: Any) -> bool:
    if isinstance(value, dict):
        return "Fn::GetAZs" in value or any(_uses_get_azs(v) for v in value.values())
    return isinstance(value, list) and any(_uses_get_azs(v) for v in value)


def _node_zones(template_json: dict[str, Any]) -> dict[str, Any]:
    """Node name -> the zone of the one subnet it runs in (an instance's or its Auto Scaling group's)."""
    resources = template_json["Resources"]
    zones = {}
    for name, subnets in _node_subnets(template_json).items():
        (subnet,) = subnets
        properties = resources[subnet]["Properties"]
        zones[name] = {k: v for k, v in properties.items() if k in {"AvailabilityZone", "AvailabilityZoneId"}}
    return zones


def test_zone_names_place_subnet_pair_i_in_zone_i_and_the_nodes_with_them() -> None:
    template_json = variant_template(NAMES_AND_ENDPOINTS)
    first, second = ({"AvailabilityZone": name} for name in ZONE_NAMES)
    assert _placements(template_json) == {"10.0.10.0/24": first, "10.0.110.0/24": first,
                                          "10.0.20.0/24": second, "10.0.120.0/24": second}
    assert _node_zones(template_json) == {"node1": first, "node2": second}
    assert not _uses_get_azs(template_json["Resources"])


def test_zone_ids_place_subnet_pair_i_in_zone_i_and_the_nodes_follow_their_subnet() -> None:
    template_json = variant_template(IDS)
    first, second = ({"AvailabilityZoneId": zone_id} for zone_id in ZONE_IDS)
    assert _placements(template_json) == {"10.0.10.0/24": first, "10.0.110.0/24": first,
                                          "10.0.20.0/24": second, "10.0.120.0/24": second}
    assert _node_zones(template_json) == {"node1": first, "node2": second}
    by_cidr = _subnet_ids_by_cidr(template_json)
    assert _node_subnets(template_json) == {"node1": [by_cidr["10.0.110.0/24"]], "node2": [by_cidr["10.0.120.0/24"]]}
    assert not _uses_get_azs(template_json["Resources"])


def test_default_zones_stay_the_regions_first_two_for_the_nodes_too(template_json: dict[str, Any]) -> None:
    assert _node_zones(template_json) == {"node1": {"AvailabilityZone": {"Fn::Select": [0, {"Fn::GetAZs": ""}]}},
                                          "node2": {"AvailabilityZone": {"Fn::Select": [1, {"Fn::GetAZs": ""}]}}}


# ----- interface_endpoints: what failover and a node's start call, without a NAT -----

def _interface_endpoints(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in _resources(template_json, "AWS::EC2::VPCEndpoint").items()
            if r["Properties"].get("VpcEndpointType") == "Interface"}


def _service(endpoint: dict[str, Any]) -> str:
    prefix, region, name = endpoint["ServiceName"]["Fn::Join"][1]
    assert prefix["Fn::FindInMap"][1:] == [{"Ref": "AWS::Partition"}, name] and region == {"Ref": "AWS::Region"}
    return str(name)


def test_no_interface_endpoints_by_default(template_json: dict[str, Any]) -> None:
    assert not _interface_endpoints(template_json)


def test_interface_endpoints_serve_both_private_subnets_with_private_dns() -> None:
    template_json = variant_template(NAMES_AND_ENDPOINTS)
    endpoints = _interface_endpoints(template_json)
    assert sorted(_service(e) for e in endpoints.values()) == sorted(INTERFACE_ENDPOINT_SERVICES)
    by_cidr = _subnet_ids_by_cidr(template_json)
    private = [{"Ref": by_cidr["10.0.110.0/24"]}, {"Ref": by_cidr["10.0.120.0/24"]}]
    for endpoint in endpoints.values():
        assert endpoint["PrivateDnsEnabled"] is True
        assert endpoint["SubnetIds"] == private


def test_endpoint_service_names_follow_the_partition_china_prefixes_ec2() -> None:
    template_json = variant_template(NAMES_AND_ENDPOINTS)
    (mapping,) = template_json["Mappings"].values()
    assert mapping["aws-cn"]["ec2"] == "cn.com.amazonaws"
    assert {prefix for partition in mapping.values() for name, prefix in partition.items()
            if (partition, name) != (mapping["aws-cn"], "ec2")} == {"com.amazonaws"}
    assert set(mapping) >= {"aws", "aws-cn", "aws-us-gov"}


def test_only_the_nodes_and_the_checker_reach_the_endpoints_on_443() -> None:
    template_json = variant_template(NAMES_AND_ENDPOINTS)
    resources = template_json["Resources"]
    (group,) = {g["Fn::GetAtt"][0] for e in _interface_endpoints(template_json).values()
                for g in e["SecurityGroupIds"]}
    assert "SecurityGroupIngress" not in resources[group]["Properties"]  # no CIDR-wide rule
    sources = {r["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0]
               for r in _resources(template_json, "AWS::EC2::SecurityGroupIngress").values()
               if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
               and (r["Properties"]["FromPort"], r["Properties"]["ToPort"]) == (443, 443)}
    rules = [r for r in _resources(template_json, "AWS::EC2::SecurityGroupIngress").values()
             if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}]
    assert len(rules) == len(sources) == 2
    node_groups = _node_security_groups(template_json)
    assert node_groups
    (checker,) = [r for r in _resources(template_json, "AWS::Lambda::Function").values()
                  if "VpcConfig" in r["Properties"]]
    checker_groups = {g["Fn::GetAtt"][0] for g in checker["Properties"]["VpcConfig"]["SecurityGroupIds"]}
    assert sources == node_groups | checker_groups


def test_nodes_wait_for_the_endpoints_and_the_endpoints_for_their_ingress_rules() -> None:
    template_json = variant_template(NAMES_AND_ENDPOINTS)
    resources = template_json["Resources"]
    endpoints = set(_interface_endpoints(template_json))
    nodes = _node_resources(template_json)
    assert len(nodes) == 2
    for node in nodes.values():
        assert endpoints <= set(node["DependsOn"])
    rules = {k for k, r in _resources(template_json, "AWS::EC2::SecurityGroupIngress").items()
             if r["Properties"]["FromPort"] == 443}
    for endpoint in endpoints:
        assert rules <= set(resources[endpoint]["DependsOn"])


# Where each AWS service the runtime code calls is reached without a NAT.
GATEWAY_ENDPOINT_SERVICES = {"dynamodb", "s3"}
NO_ENDPOINT_NEEDED = {"cloudformation"}  # the first boot's signal only, while the deploy's NATs are up
SOURCE_PATTERNS = {
    "failover_lambda/*.py": re.compile(r"""(?:make|\.client)\(\s*["'](\w+)["']"""),
    "node_agent/*.py": re.compile(r"""\.client\(\s*["'](\w+)["']"""),
    "userdata/files/*.sh": re.compile(r"""\baws\s+(\w+)\s"""),
}


def _services_called_by_runtime_code() -> set[str]:
    found: set[str] = set()
    for pattern, regex in SOURCE_PATTERNS.items():
        for path in sorted(PROJECT_ROOT.glob(pattern)):
            found |= set(regex.findall(path.read_text()))
    return found


def test_every_service_the_checker_and_the_nodes_call_has_an_endpoint_or_a_reason() -> None:
    called = _services_called_by_runtime_code()
    assert {"ec2", "ssm", "sns", "dynamodb", "secretsmanager", "s3"} <= called, called
    missing = called - set(INTERFACE_ENDPOINT_SERVICES) - GATEWAY_ENDPOINT_SERVICES - NO_ENDPOINT_NEEDED
    assert not missing, f"runtime code calls {sorted(missing)}: add an interface endpoint in constructs/network.py"
    # The SSM agent's own channels (Run Command reaches the node through ec2messages) are not boto3 calls.
    assert set(INTERFACE_ENDPOINT_SERVICES) - called == {"ec2messages", "ssmmessages"}


def test_vip_route_provider_logs_to_its_own_log_group_with_a_retention(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    (provider,) = {r["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
                   for r in _resources(template_json, "Custom::AWS").values()}
    log_group = resources[provider]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert resources[log_group]["Properties"]["RetentionInDays"] == 90


# ----- three zones, three nodes: a subnet pair, a NAT gateway and a private route table per zone -----



def test_three_zones_get_their_subnet_pairs_at_the_exact_cidrs_in_the_regions_first_three_zones() -> None:
    template_json = variant_template(THREE_ZONES)
    zone = [{"AvailabilityZone": {"Fn::Select": [index, {"Fn::GetAZs": ""}]}} for index in range(3)]
    assert _placements(template_json) == {
        "10.0.10.0/24": zone[0], "10.0.110.0/24": zone[0],
        "10.0.20.0/24": zone[1], "10.0.120.0/24": zone[1],
        "10.0.30.0/24": zone[2], "10.0.130.0/24": zone[2]}


def test_three_zones_have_three_nats_each_serving_its_own_zones_private_route_table() -> None:
    template_json = variant_template(THREE_ZONES)
    by_cidr = _subnet_ids_by_cidr(template_json)
    nat_in_subnet = {n["Properties"]["SubnetId"]["Ref"]: k
                     for k, n in _resources(template_json, "AWS::EC2::NatGateway").items()}
    assert sorted(nat_in_subnet) == sorted(by_cidr[cidr] for cidr in THREE_ZONE_PUBLIC)
    private_tables = set()
    for private, public in zip(THREE_ZONE_PRIVATE, THREE_ZONE_PUBLIC, strict=True):
        table = _table_of_subnet(template_json, by_cidr[private])
        assert _default_route_target(template_json, table) == {"NatGatewayId": {"Ref": nat_in_subnet[by_cidr[public]]}}
        private_tables.add(table)
    public_tables = {_table_of_subnet(template_json, by_cidr[cidr]) for cidr in THREE_ZONE_PUBLIC}
    assert len(public_tables) == 1 and len(private_tables) == 3  # Public + Route-A/B/C
    assert len(_resources(template_json, "AWS::EC2::RouteTable")) == 4
    assert len(_resources(template_json, "AWS::EC2::EIP")) == 3


def test_three_zones_put_the_vip_in_all_four_route_tables_for_the_checker() -> None:
    template_json = variant_template(THREE_ZONES)
    tables = [{"Ref": table} for table in _resources(template_json, "AWS::EC2::RouteTable")]
    (checker,) = [r["Properties"] for r in _resources(template_json, "AWS::Lambda::Function").values()
                  if "ROUTE_TABLE_IDS" in r["Properties"].get("Environment", {}).get("Variables", {})]
    variables = checker["Environment"]["Variables"]
    delimiter, listed = variables["ROUTE_TABLE_IDS"]["Fn::Join"]
    assert delimiter == "," and sorted(listed, key=str) == sorted(tables, key=str)
    assert variables["NODE_NAMES"] == ",".join(THREE_NODES)
    route_arns = [statement["Resource"] for policy in _resources(template_json, "AWS::IAM::Policy").values()
                  for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                  if statement.get("Sid") == "MoveVipRoutes"]
    assert len(route_arns) == 1 and len(route_arns[0]) == 4
    output = template_json["Outputs"]["RouteTableIds"]["Value"]["Fn::Join"][1]
    assert sorted((part for part in output if isinstance(part, dict)), key=str) == sorted(tables, key=str)
    # A create-only VIP route per table where the stack creates them (else the checker's first run does).
    created_in = [resource["Properties"]["Create"]["Fn::Join"][1][1]
                  for resource in _resources(template_json, "Custom::AWS").values()
                  if "CreateRoute" in json.dumps(resource["Properties"]["Create"])]
    assert sorted(created_in, key=str) in ([], sorted(tables, key=str))


def test_three_nodes_are_placed_one_per_zone_in_priority_order() -> None:
    template_json = variant_template(THREE_ZONES)
    by_cidr = _subnet_ids_by_cidr(template_json)
    assert _node_subnets(template_json) == {name: [by_cidr[cidr]]
                                            for name, cidr in zip(THREE_NODES, THREE_ZONE_PRIVATE, strict=True)}


def test_efs_and_the_gateway_endpoints_serve_all_three_private_subnets() -> None:
    template_json = variant_template(THREE_ZONES)
    by_cidr = _subnet_ids_by_cidr(template_json)
    targets = sorted(r["Properties"]["SubnetId"]["Ref"]
                     for r in _resources(template_json, "AWS::EFS::MountTarget").values())
    assert targets == sorted(by_cidr[cidr] for cidr in THREE_ZONE_PRIVATE)
    private_tables = sorted(_table_of_subnet(template_json, by_cidr[cidr]) for cidr in THREE_ZONE_PRIVATE)
    for endpoint in _resources(template_json, "AWS::EC2::VPCEndpoint").values():
        assert sorted(t["Ref"] for t in endpoint["Properties"]["RouteTableIds"]) == private_tables


def test_more_nodes_than_zones_go_round_robin_across_the_private_subnets() -> None:
    template_json = variant_template({"node_names": ["node1", "node2", "node3", "node4"]})
    by_cidr = _subnet_ids_by_cidr(template_json)
    a, b = by_cidr["10.0.110.0/24"], by_cidr["10.0.120.0/24"]
    assert _node_subnets(template_json) == {"node1": [a], "node2": [b], "node3": [a], "node4": [b]}
