"""Drill constants and the shipped timings (read from cdk.json so the drill measures what a deployment runs)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VIP = "172.16.0.1"
S3_PORT = 9000
IDENTITY_PORT = 9999  # each node answers its name here, so the client can tell which node the VIP reached
MOTO_PORT = 5000
PROXY_PORT = 5001  # the checker talks to moto through this proxy (it can kill the checker mid-route-move)
# RFC 2544 benchmark range: only ever assigned inside the drill's own namespaces, never routed anywhere else.
LINK_PREFIX = "198.18.0"
AWS_ADDRESS = f"{LINK_PREFIX}.1"
CLIENT_ADDRESS = f"{LINK_PREFIX}.100"
NODE_NAMES = ("node1", "node2")  # every scenario's cluster, unless the scenario asks for more nodes
CLUSTER_ID = "EfsHaDrill"
TABLE_NAME = "efs-ha-drill-state"
REGION = "us-east-1"
BUCKET = "drill"
# Lambda: scheduled every minute, reserved concurrency 1 (constructs/failover_manager.py); its timeout and the
# loop's safety margin come from checker_budget().
SCHEDULE_SECONDS = 60.0
# Fake credentials everywhere: boto3 must never look for real ones (no IMDS, no files).
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "drill",
    "AWS_SECRET_ACCESS_KEY": "drill",
    "AWS_SESSION_TOKEN": "drill",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}

# Settings the checker and the agent read: never inherited from the caller's environment (a stray MAX_PROBES or
# LEASE_MARGIN_SECONDS would change what is measured); the drill sets the ones it means.
PRODUCT_VARIABLES = (
    "STATE_TABLE_NAME", "CLUSTER_ID", "NODE_NAMES", "ROUTE_TABLE_IDS", "VIP", "TOPIC_ARN", "PROBE_INTERVAL_SECONDS",
    "FAILURE_THRESHOLD", "HEARTBEAT_STALE_SECONDS", "LEASE_SECONDS", "FENCE_TIMEOUT_SECONDS", "MINIO_PORT",
    "HTTP_PROBE", "LOOP_SAFETY_MARGIN_SECONDS", "MAX_PROBES", "FENCE_COMMAND_DOCUMENT", "MINIO_UNIT",
    "EC2_CACHE_SECONDS", "MINIO_START_GRACE_SECONDS", "NODE_NAME", "MOUNT_POINT", "HEARTBEAT_INTERVAL_SECONDS",
    "LEASE_MARGIN_SECONDS", "MINIO_HEALTH_URL", "INSTANCE_ID", "EFS_TIMEOUT_SECONDS", "EFS_REQUIRE_MOUNT",
    "AWS_ENDPOINT_URL", "AWS_PROFILE", "NOTIFY_SOCKET", "LEASE_DEADLINE_SECONDS", "WATCHDOG", "WATCHDOG_DEVICE",
    "WATCHDOG_TIMEOUT_SECONDS", "ENI_ID", "PRIVATE_IP", "EFS_PROBE_INTERVAL_SECONDS", "MINIO_COMMAND", "MINIO_LOG",
    "DRILL_CLOCK_OFFSET_SECONDS",
)


def base_env() -> dict[str, str]:
    """The environment of every drill process: the caller's, minus product settings, plus fake credentials."""
    env = {k: v for k, v in os.environ.items() if k not in PRODUCT_VARIABLES and not k.startswith("AWS_ENDPOINT_URL")}
    return {**env, **FAKE_AWS_ENV, "PYTHONPATH": str(REPO_ROOT)}


def checker_budget(timings: Timings) -> tuple[float, float]:
    """(Lambda timeout, LOOP_SAFETY_MARGIN_SECONDS) as the stack sizes them: from failover_lambda/budget.py,
    the numbers the construct uses; a checker without that module had a 60 s timeout and a 3 s margin."""
    try:
        from failover_lambda import budget
    except ImportError:
        return 60.0, 3.0
    sizing = {"watchdog_required": timings.watchdog == "required", "lease_deadline": timings.lease_deadline_seconds,
              "fence_timeout": timings.fence_timeout_seconds}
    return (float(budget.invocation_timeout_seconds(**sizing)),  # type: ignore[arg-type]
            float(budget.loop_safety_margin_seconds(**sizing)))  # type: ignore[arg-type]


def node_names(count: int) -> tuple[str, ...]:
    """A drill cluster of `count` nodes, in failover priority order (node1 first, as the stack's default)."""
    return tuple(f"node{index}" for index in range(1, count + 1))


def node_address(index: int) -> str:
    return f"{LINK_PREFIX}.{11 + index}"


@dataclass(frozen=True)
class Timings:
    probe_interval_seconds: float
    failure_threshold: int
    heartbeat_interval_seconds: float
    heartbeat_stale_seconds: float
    lease_seconds: float
    fence_timeout_seconds: float
    lease_deadline_seconds: float = 4.0
    watchdog: str = "required"
    watchdog_timeout_seconds: int = 1

    @classmethod
    def shipped(cls, cdk_json: Path = REPO_ROOT / "cdk.json") -> Timings:
        context = json.loads(cdk_json.read_text())["context"]
        return cls(
            probe_interval_seconds=float(context["probe_interval_seconds"]),
            failure_threshold=int(context["failure_threshold"]),
            heartbeat_interval_seconds=float(context["heartbeat_interval_seconds"]),
            heartbeat_stale_seconds=float(context["heartbeat_stale_seconds"]),
            lease_seconds=float(context["lease_seconds"]),
            fence_timeout_seconds=float(context["fence_timeout_seconds"]),
            lease_deadline_seconds=float(context.get("lease_deadline_seconds", cls.lease_deadline_seconds)),
            watchdog=str(context.get("watchdog", cls.watchdog)),
            watchdog_timeout_seconds=int(context.get("watchdog_timeout_seconds", cls.watchdog_timeout_seconds)),
        )

    def describe(self) -> str:
        return (f"probe {self.probe_interval_seconds:g}s x{self.failure_threshold}, heartbeat "
                f"{self.heartbeat_interval_seconds:g}s, stale {self.heartbeat_stale_seconds:g}s, lease "
                f"{self.lease_seconds:g}s, lease deadline {self.lease_deadline_seconds:g}s, watchdog "
                f"{self.watchdog} {self.watchdog_timeout_seconds}s, fence timeout {self.fence_timeout_seconds:g}s")


@dataclass(frozen=True)
class Fleet:
    """What moto was populated with: the ids the checker and the agents are configured with."""

    route_table_ids: tuple[str, ...]
    instance_ids: dict[str, str]  # node -> instance id
    enis: dict[str, str]  # node -> primary ENI id
    topic_arn: str
    private_ips: dict[str, str]  # node -> primary private address (moto's 10.0.x.x: reported, never contacted)
