"""App configurations that place the subnets in chosen zones and add the interface endpoints, each synthesized
once per process (cdk-nag included, as app.py builds it) for the network, storage and audit tests."""

from __future__ import annotations

import functools
import json
from typing import Any

from tests.conftest import cdk_json_context

# Zone names, plus the interface endpoints (one synthesis covers both keys).
ZONE_NAMES = ("us-east-1b", "us-east-1c")
NAMES_AND_ENDPOINTS: dict[str, Any] = {"availability_zones": list(ZONE_NAMES), "interface_endpoints": True}
ZONE_IDS = ("use1-az4", "use1-az6")
IDS: dict[str, Any] = {"availability_zones": list(ZONE_IDS)}
# Three zones (the region's first three, Fn::GetAZs) and three nodes, one in each.
THREE_ZONE_PUBLIC = ("10.0.10.0/24", "10.0.20.0/24", "10.0.30.0/24")
THREE_ZONE_PRIVATE = ("10.0.110.0/24", "10.0.120.0/24", "10.0.130.0/24")
THREE_NODES = ("node1", "node2", "node3")
THREE_ZONES: dict[str, Any] = {"public_subnet_cidrs": list(THREE_ZONE_PUBLIC),
                               "private_subnet_cidrs": list(THREE_ZONE_PRIVATE), "node_names": list(THREE_NODES)}


@functools.cache
def _synthesize(context_json: str) -> dict[str, Any]:
    import aws_cdk as cdk

    from app import build_app

    context = {**cdk_json_context(), **json.loads(context_json)}
    assembly = build_app(cdk.App(context=context)).synth()
    result: dict[str, Any] = assembly.get_stack_by_name(context.get("stack_name", "EfsHaCluster")).template
    return result


def variant_template(overrides: dict[str, Any]) -> dict[str, Any]:
    return _synthesize(json.dumps(overrides, sort_keys=True))
