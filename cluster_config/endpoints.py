"""The VPC interface endpoints `interface_endpoints: true` adds: one list for the stack and for `efs-ha preflight`.

Each is an AWS API that failover or a node's start needs and that would otherwise go through the NAT of its zone
(tests/test_network.py derives the same set from the boto3 clients and `aws` CLI calls and fails when a new one
appears): service -> its callers. DynamoDB and S3 are gateway endpoints. Not here: CloudFormation (only the first
boot's signal, while the deploy's NATs are up) and CloudWatch Logs/metrics (the Lambda service ships the checker's
logs and its EMF metrics, not the function's VPC interface; the node agent logs to the journal only).
"""

from __future__ import annotations

INTERFACE_ENDPOINT_SERVICES: dict[str, str] = {
    "ec2": "checker: Describe*, ReplaceRoute/CreateRoute, StopInstances (the fence)",
    "ssm": "checker: SendCommand (the fence's MinIO stop); nodes: the SSM agent",
    "ec2messages": "nodes: the SSM agent receives Run Command (the fence's MinIO stop)",
    "ssmmessages": "nodes: Session Manager, the operator's way in (no SSH)",
    "sns": "checker: Publish (failover and no-standby notifications)",
    "secretsmanager": "nodes: MinIO's root credentials and TLS material at every MinIO start; checker: the CA",
}
# The service-name prefix per partition, as CDK's own table has it (aws-cdk PR 16139): in the China regions EC2's
# endpoint service is cn.com.amazonaws.<region>.ec2.
CN_PREFIXED_SERVICES = frozenset({"ec2"})
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")


def service_prefix(partition: str, service: str) -> str:
    return "cn.com.amazonaws" if partition == "aws-cn" and service in CN_PREFIXED_SERVICES else "com.amazonaws"


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def service_name(region: str, service: str) -> str:
    """The endpoint service name, e.g. com.amazonaws.eu-west-1.ec2 or cn.com.amazonaws.cn-north-1.ec2."""
    return f"{service_prefix(partition_of(region), service)}.{region}.{service}"
