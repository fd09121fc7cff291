"""The deployed stack: its name (cdk.json or --stack-name) and the outputs every command finds resources by."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from efs_ha_cli.errors import CliError

FALLBACK_STACK_NAME = "EfsHaCluster"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Output keys are the contract with stacks/cluster_stack.py.
VIRTUAL_IP = "VirtualIp"
ROUTE_TABLE_IDS = "RouteTableIds"
NODE_NAMES = "NodeNames"
# The nodes' Auto Scaling groups (instance IDs change with every replacement; the checker finds them by tag).
NODE_GROUP_NAMES = "NodeGroupNames"
STATE_TABLE_NAME = "StateTableName"
FILE_SYSTEM_ID = "FileSystemId"
MOUNT_POINT = "MountPoint"
MINIO_SECRET_ARN = "MinioSecretArn"
FAILOVER_FUNCTION_NAME = "FailoverFunctionName"
ALARM_TOPIC_ARN = "AlarmTopicArn"

# What each kind of command cannot work without; the rest is informational.
STATUS_OUTPUTS = (VIRTUAL_IP, ROUTE_TABLE_IDS, NODE_NAMES, STATE_TABLE_NAME)
CHECKER_OUTPUTS = (*STATUS_OUTPUTS, FAILOVER_FUNCTION_NAME)
VERIFY_OUTPUTS = (*CHECKER_OUTPUTS, MINIO_SECRET_ARN)


def default_stack_name(cwd: Path | None = None) -> str:
    """context.stack_name of ./cdk.json, else of the repository's cdk.json, else EfsHaCluster."""
    for folder in (cwd or Path.cwd(), REPO_ROOT):
        name = _stack_name_in(folder / "cdk.json")
        if name:
            return name
    return FALLBACK_STACK_NAME


def _stack_name_in(path: Path) -> str | None:
    try:
        context = json.loads(path.read_text()).get("context", {})
    except (OSError, ValueError, AttributeError):
        return None
    name = context.get("stack_name") if isinstance(context, dict) else None
    return name if isinstance(name, str) and name.strip() else None


@dataclass(frozen=True)
class StackOutputs:
    stack_name: str
    region: str
    stack_status: str
    values: Mapping[str, str]

    def require(self, *keys: str) -> None:
        missing = [key for key in keys if not self.values.get(key, "").strip()]
        if missing:
            raise CliError(f"stack {self.stack_name} ({self.stack_status}) lacks the output(s) "
                           f"{', '.join(missing)}; was the stack deployed with this version?")

    def get(self, key: str) -> str:
        self.require(key)
        return self.values[key].strip()

    def optional(self, key: str) -> str | None:
        return self.values.get(key, "").strip() or None

    def items(self, key: str) -> tuple[str, ...]:
        """A comma-list output, e.g. RouteTableIds or NodeNames (priority order kept)."""
        return tuple(item.strip() for item in self.get(key).split(",") if item.strip())


def load_outputs(cloudformation: Any, stack_name: str, region: str) -> StackOutputs:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as error:
        if _is_missing_stack(error):
            raise CliError(f"stack {stack_name} not found in region {region}; "
                           f"deploy it or pass --stack-name") from None
        raise
    if not stacks:
        raise CliError(f"stack {stack_name} not found in region {region}; deploy it or pass --stack-name")
    stack = stacks[0]
    values = {o["OutputKey"]: str(o.get("OutputValue", "")) for o in stack.get("Outputs", [])}
    return StackOutputs(stack_name, region, str(stack.get("StackStatus", "UNKNOWN")), values)


def _is_missing_stack(error: Exception) -> bool:
    # CloudFormation answers an unknown stack with a generic ValidationError; the message is the only signal.
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    info = response.get("Error", {})
    return info.get("Code") == "ValidationError" and "does not exist" in str(info.get("Message", ""))
