"""Partitions and regions (issue 11, defect 3): the stack synthesized for aws-cn and aws-us-gov holds no ARN of the
commercial partition and only service principals those partitions accept; the checker's reservation is optional
and refused at 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cluster_config import ConfigError, load_config
from tests.conftest import PROJECT_ROOT, context_getter

# One synthesis per partition; the aws-cn one also reserves concurrency, so the reservation is tested there.
PARTITIONS = {"aws-cn": ("cn-north-1", {"checker_reserved_concurrency": 2}), "aws-us-gov": ("us-gov-west-1", {})}


def _synth(region: str, overrides: dict[str, Any]) -> dict[str, Any]:
    import aws_cdk as cdk

    from stacks.cluster_stack import EfsHaClusterStack

    config = load_config(context_getter(**overrides), project_root=PROJECT_ROOT)
    app = cdk.App()
    stack = EfsHaClusterStack(app, config.stack_name, config=config,
                              env=cdk.Environment(account="123456789012", region=region))
    template: dict[str, Any] = app.synth().get_stack_by_name(stack.stack_name).template
    return template


@pytest.fixture(scope="module", params=sorted(PARTITIONS))
def partition_template(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    region, overrides = PARTITIONS[request.param]
    return request.param, _synth(region, overrides)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_no_arn_names_the_commercial_partition(partition_template: tuple[str, dict[str, Any]]) -> None:
    partition, template = partition_template
    literals = sorted({s for s in _strings(template) if "arn:aws:" in s})
    assert literals == [], f"{partition}: ARNs must use the partition ({{AWS::Partition}}): {literals}"
    # The layer's publisher account is gone with the layer
    assert "017000801446" not in json.dumps(template)


# The partitions whose principal for a service differs from `<service>.amazonaws.com`: in aws-cn, EC2 and S3
# (hashicorp/terraform-provider-aws#47141; aws/aws-cdk#24709 from the China IAM console); Lambda and the others
# keep the standard form there too (aws/aws-cdk#2198: `lambda.amazonaws.com.cn` is refused).
CHINA_SUFFIX_SERVICES = {"ec2", "s3"}
# The resources of the checker and its monitoring (constructs/failover_manager.py, constructs/monitoring.py).
CHECKER_RESOURCES = ("FailoverManager", "Monitoring")


def expected_principal(service: str, partition: str) -> str:
    suffix = "amazonaws.com.cn" if partition == "aws-cn" and service in CHINA_SUFFIX_SERVICES else "amazonaws.com"
    return f"{service}.{suffix}"


def test_the_checkers_service_principals_are_the_ones_each_partition_accepts(
        partition_template: tuple[str, dict[str, Any]]) -> None:
    partition, template = partition_template
    principals = [principal for logical_id, resource in template["Resources"].items()
                  if logical_id.startswith(CHECKER_RESOURCES) for principal in _service_principals(resource)]
    assert {p.split(".")[0] for p in principals} >= {"lambda", "cloudwatch"}, partition
    wrong = sorted({p for p in principals if p != expected_principal(p.split(".")[0], partition)})
    assert wrong == [], f"{partition}: {wrong}"


def _service_principals(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Principal" and isinstance(item, dict) and "Service" in item:
                services = item["Service"]
                found += [str(s) for s in (services if isinstance(services, list) else [services])]
            else:
                found += _service_principals(item)
    elif isinstance(value, list):
        for item in value:
            found += _service_principals(item)
    return found


def test_the_checker_reserves_the_configured_concurrency(partition_template: tuple[str, dict[str, Any]]) -> None:
    partition, template = partition_template
    (function,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                   and r["Properties"].get("Handler") == "failover_lambda.handler.handler"]
    expected = PARTITIONS[partition][1].get("checker_reserved_concurrency")
    assert function.get("ReservedConcurrentExecutions") == expected


def test_a_reservation_of_one_is_refused_naming_the_key() -> None:
    """One slot would throttle the run that takes the probe loop over (issue 11, defect 4's gaps)."""
    with pytest.raises(ConfigError, match=r"'checker_reserved_concurrency'.*at least 2"):
        _synth("eu-west-1", {"checker_reserved_concurrency": 1})


_URL_SUFFIX = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}


def _as_deployed(principal: Any, partition: str) -> str:
    """A principal as CloudFormation resolves it in that partition (`Fn::Join` with `AWS::URLSuffix`)."""
    if isinstance(principal, dict) and "Fn::Join" in principal:
        separator, parts = principal["Fn::Join"]
        return separator.join(_URL_SUFFIX[partition] if part == {"Ref": "AWS::URLSuffix"} else str(part)
                              for part in parts)
    return str(principal)


def test_the_nodes_ec2_principal_is_the_one_each_partition_accepts(
        partition_template: tuple[str, dict[str, Any]]) -> None:
    """The node role is assumed by EC2, whose principal is ec2.amazonaws.com.cn in the China regions (kubernetes/
    kops#27: `ec2.amazonaws.com` is refused there). Failed before the fix in aws-cn."""
    partition, template = partition_template
    principals = [_as_deployed(principal, partition) for resource in template["Resources"].values()
                  if resource["Type"] == "AWS::IAM::Role"
                  for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
                  for principal in _listed(statement.get("Principal", {}).get("Service", []))]
    ec2 = [p for p in principals if p.startswith("ec2.")]
    assert ec2 and set(ec2) == {expected_principal("ec2", partition)}, (partition, ec2)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
