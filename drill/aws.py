"""The fake AWS: a moto server populated like the synthesized stack (VPC, a public and a private subnet per zone,
the public route table and one per private subnet, their VIP route on node1's ENI, the tagged instances, the state
table, the alert topic). Two nodes in two zones, or three in three (the stack's other layout)."""

from __future__ import annotations

import sys
import time
import urllib.request
from typing import Any

import boto3
from botocore.config import Config

from drill.config import CLUSTER_ID, MOTO_PORT, NODE_NAMES, REGION, TABLE_NAME, VIP, Fleet

MOTO_URL = f"http://127.0.0.1:{MOTO_PORT}"


def zone_subnets(zones: int) -> dict[str, str]:
    """The stack's CIDRs: public 10.0.10/20/30.0/24 and private 10.0.110/120/130.0/24 in zones a, b, c."""
    letters = "abc"[:zones]
    return {**{f"public-{z}": f"10.0.{10 * (i + 1)}.0/24" for i, z in enumerate(letters)},
            **{f"private-{z}": f"10.0.{110 + 10 * i}.0/24" for i, z in enumerate(letters)}}


# moto needs an image id; no image is ever looked up anywhere.
IMAGE_ID = "ami-12c6146b"
_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=1, read_timeout=3)


def moto_argv() -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "0.0.0.0", "-p", str(MOTO_PORT)]


def wait_ready(url: str = MOTO_URL, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto did not answer on {url} within {timeout:g}s")


def client(service: str, endpoint: str = MOTO_URL) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, config=_CONFIG)


def populate(node_names: tuple[str, ...] = NODE_NAMES) -> Fleet:
    """One zone per node (two or three), node i in zone i, as the stack places them."""
    ec2 = client("ec2")
    zones = len(node_names)
    letters = "abc"[:zones]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {name: ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
               for name, cidr in zone_subnets(zones).items()}
    # As the stack: one public table shared by every public subnet, one table per private subnet.
    tables = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(1 + zones)]
    associations = [(tables[0], f"public-{z}") for z in letters] + \
                   [(tables[1 + i], f"private-{z}") for i, z in enumerate(letters)]
    for table, subnet in associations:
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnets[subnet])
    instances, enis, addresses = {}, {}, {}
    for index, node in enumerate(node_names):
        subnet = subnets[f"private-{letters[index % zones]}"]
        tags = [{"Key": "efs-ha:cluster", "Value": CLUSTER_ID}, {"Key": "efs-ha:node", "Value": node}]
        item = ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, SubnetId=subnet,
                                 InstanceType="t3.small",
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]
        instances[node] = item["InstanceId"]
        addresses[node] = item["PrivateIpAddress"]
        enis[node] = next(n["NetworkInterfaceId"] for n in item["NetworkInterfaces"]
                          if n["Attachment"]["DeviceIndex"] == 0)
    for table in tables:
        ec2.create_route(RouteTableId=table, DestinationCidrBlock=f"{VIP}/32", NetworkInterfaceId=enis[node_names[0]])
    client("dynamodb").create_table(TableName=TABLE_NAME, BillingMode="PAY_PER_REQUEST",
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    topic = client("sns").create_topic(Name="efs-ha-drill-alerts")["TopicArn"]
    return Fleet(route_table_ids=tuple(tables), instance_ids=instances, enis=enis, topic_arn=topic,
                 private_ips=addresses)


def launch_replacement(old_instance_id: str) -> tuple[str, str, str]:
    """What the node's Auto Scaling group does for an impaired instance: terminate it and launch a new one in the
    same subnet with the same tags. Returns the new instance's id, primary ENI and address."""
    ec2 = client("ec2")
    old = ec2.describe_instances(InstanceIds=[old_instance_id])["Reservations"][0]["Instances"][0]
    ec2.terminate_instances(InstanceIds=[old_instance_id])
    tags = [tag for tag in old.get("Tags", []) if not tag["Key"].startswith("aws:")]
    item = ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, SubnetId=old["SubnetId"],
                             InstanceType="t3.small",
                             TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]
    eni = next(n["NetworkInterfaceId"] for n in item["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)
    return item["InstanceId"], eni, item["PrivateIpAddress"]
