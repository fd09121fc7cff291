"""Per-invocation state: the boto3 session, the stack outputs and the checker's settings, all built lazily."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from efs_ha_cli.errors import CliError
from efs_ha_cli.stack import (
    ALARM_TOPIC_ARN,
    FAILOVER_FUNCTION_NAME,
    NODE_NAMES,
    ROUTE_TABLE_IDS,
    STATE_TABLE_NAME,
    STATUS_OUTPUTS,
    VIRTUAL_IP,
    StackOutputs,
    load_outputs,
)
from failover_lambda.clock import Clock, SystemClock
from failover_lambda.lease import LeaseTracker
from failover_lambda.settings import Settings, SettingsError

if TYPE_CHECKING:
    from efs_ha_cli.verify import CommandRunner

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
# One attempt only: a throttled invoke must become a queued request at once, and a retried switchover
# would be a second switchover. The read timeout covers a switchover that has to wait for fencing.
LAMBDA_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5,
                       read_timeout=900)

# The checker's environment variable behind each stack output (failover_lambda.settings reads these names).
OUTPUT_ENV = {
    STATE_TABLE_NAME: "STATE_TABLE_NAME",
    NODE_NAMES: "NODE_NAMES",
    ROUTE_TABLE_IDS: "ROUTE_TABLE_IDS",
    VIRTUAL_IP: "VIP",
    ALARM_TOPIC_ARN: "TOPIC_ARN",
}


@dataclass
class Hooks:
    """Seams for tests (pass as `obj=` to CliRunner.invoke); anything left None is the real thing."""

    clock: Clock | None = None
    lambda_client: Any = None
    command_runner: Callable[[App], CommandRunner] | None = None
    poll_seconds: float = 2.0


class App:
    def __init__(self, stack_name: str, region: str | None, json_output: bool, hooks: Hooks | None = None) -> None:
        self.stack_name = stack_name
        self.requested_region = region
        self.json_output = json_output
        self.hooks = hooks or Hooks()
        self.clock: Clock = self.hooks.clock or SystemClock()
        self.settings_source = "defaults"
        self._clients: dict[str, Any] = {}
        self.route_table_names: dict[str, str] | None = None  # read once per run (efs_ha_cli.cluster)

    @cached_property
    def session(self) -> boto3.Session:
        # --region, then AWS_REGION (botocore itself reads only AWS_DEFAULT_REGION), then AWS_DEFAULT_REGION
        # and the profile's region through botocore.
        return boto3.Session(region_name=self.requested_region or os.environ.get("AWS_REGION") or None)

    @property
    def region(self) -> str:
        region = self.session.region_name
        if not region:
            raise NoRegionError()
        return region

    def client(self, service: str) -> Any:
        if service == "lambda" and self.hooks.lambda_client is not None:
            return self.hooks.lambda_client
        if service not in self._clients:  # reused: the wait loops poll every few seconds
            config = LAMBDA_CONFIG if service == "lambda" else CLIENT_CONFIG
            self._clients[service] = self.session.client(service, region_name=self.region, config=config)
        return self._clients[service]

    @cached_property
    def outputs(self) -> StackOutputs:
        return load_outputs(self.client("cloudformation"), self.stack_name, self.region)

    @cached_property
    def lease_tracker(self) -> LeaseTracker:
        """Lease renewals observed by this CLI run, on its own monotonic clock (never the nodes' clocks)."""
        settings = self.settings
        return LeaseTracker(self.clock, settings.heartbeat_stale_seconds, settings.lease_deadline_seconds)

    @cached_property
    def settings(self) -> Settings:
        """The checker's own settings (its thresholds decide 'healthy'), with resources from the outputs."""
        outputs = self.outputs
        outputs.require(*STATUS_OUTPUTS)
        env = {**self._checker_environment(),
               **{var: outputs.values[key] for key, var in OUTPUT_ENV.items() if key in outputs.values},
               # Nodes are tagged efs-ha:cluster=<stack name> (stacks/cluster_stack.py).
               "CLUSTER_ID": self.stack_name}
        try:
            settings = Settings.from_env(env)
        except SettingsError as error:
            output = next((key for key, var in OUTPUT_ENV.items() if var == error.variable), None)
            where = f"stack output {output}" if output else "the checker function's configuration"
            raise CliError(f"{where} is malformed: {error}") from None
        # The CLI never probes MinIO over HTTP: it runs outside the VPC.
        return replace(settings, http_probe=False)

    def _checker_environment(self) -> dict[str, str]:
        """The failover Lambda's environment (timings); defaults when it cannot be read (e.g. no permission)."""
        function = self.outputs.optional(FAILOVER_FUNCTION_NAME)
        if function is None:
            return {}
        try:
            config = self.client("lambda").get_function_configuration(FunctionName=function)
        except (ClientError, BotoCoreError):
            return {}
        variables = config.get("Environment", {}).get("Variables", {})
        if isinstance(variables, dict):
            self.settings_source = f"function {function}"
            return {str(k): str(v) for k, v in variables.items()}
        return {}
