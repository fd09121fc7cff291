"""tests/moto_speedup.py remembers moto's attribute-key lookups: the responses must be exactly what moto gives
without it (EC2's XML, the biggest user, through a whole instance and route table)."""

from __future__ import annotations

from typing import Any

import boto3
from moto.core import serialize

from tests import moto_speedup
from tests.support import mocked_aws

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}


def _describe() -> tuple[Any, Any]:
    with mocked_aws(ENV):
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.110.0/24",
                                   AvailabilityZone="eu-west-1a")["Subnet"]["SubnetId"]  # else moto picks one
        image = ec2.register_image(Name="node", Architecture="x86_64", RootDeviceName="/dev/xvda")["ImageId"]
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "efs-ha:node", "Value": "node1"}]}])
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        instances = ec2.describe_instances()["Reservations"]
        tables = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"]
        return _stable(instances), _stable(tables)


def _stable(value: Any) -> Any:
    """Ids, addresses and times differ between two worlds; the shape and every other value must not."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items()
                if not k.endswith(("Id", "Time", "Address", "DnsName", "Ip", "Token", "Name", "Value"))}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def test_responses_with_the_remembered_lookups_are_moto_own() -> None:
    assert serialize.XFormedAttributePicker.get_possible_keys is moto_speedup._remembered  # installed by conftest
    remembered = _describe()
    serialize.XFormedAttributePicker.get_possible_keys = moto_speedup._original  # type: ignore[method-assign]
    try:
        original = _describe()
    finally:
        moto_speedup.install()
    assert remembered == original
    assert remembered[0][0]["Instances"][0]["NetworkInterfaces"][0]["Attachment"]["DeviceIndex"] == 0  # not empty
