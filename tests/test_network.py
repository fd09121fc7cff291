"""The network is exactly the reference architecture's: CIDRs, AZs, DNS flags, NATs and route tables."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template


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


def test_vip_route_is_created_in_every_route_table_pointing_at_node1(template_json: dict[str, Any]) -> None:
    tables = set(_resources(template_json, "AWS::EC2::RouteTable"))
    (node1,) = [k for k, r in _resources(template_json, "AWS::EC2::Instance").items()
                if {"Key": "efs-ha:node", "Value": "node1"} in r["Properties"]["Tags"]]
    created_in = set()
    for resource in _resources(template_json, "Custom::AWS").values():
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
