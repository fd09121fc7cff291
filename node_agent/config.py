"""Agent settings from the environment (/etc/efs-ha/agent.env), checked once at start."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"node agent: environment variable {variable} {problem}")
        self.variable = variable


@dataclass(frozen=True)
class AgentConfig:
    state_table_name: str
    node_name: str
    mount_point: str
    region: str
    heartbeat_interval_seconds: float = 1.0
    lease_seconds: float = 5.0
    lease_margin_seconds: float = 2.0
    minio_unit: str = "minio.service"
    minio_health_url: str = "http://127.0.0.1:9000/minio/health/live"
    instance_id: str | None = None
    efs_timeout_seconds: float = 2.0
    efs_require_mount: bool = True
    # A plain child process instead of a systemd unit (the local drill): the server's argv, and its log file.
    minio_command: tuple[str, ...] | None = None
    minio_log: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentConfig:
        source = os.environ if env is None else env

        def raw(name: str) -> str | None:
            value = source.get(name, "").strip()
            return value or None

        def required(name: str) -> str:
            value = raw(name)
            if value is None:
                raise ConfigError(name, "is required and missing or empty")
            return value

        def number(name: str, default: float) -> float:
            value = raw(name)
            if value is None:
                return default
            try:
                parsed = float(value)
            except ValueError:
                raise ConfigError(name, f"must be a number, got {value!r}") from None
            if parsed <= 0:
                raise ConfigError(name, f"must be > 0, got {value!r}")
            return parsed

        def command(name: str) -> tuple[str, ...] | None:
            value = raw(name)
            if value is None:
                return None
            problem = f'must be a non-empty JSON list of strings (e.g. ["/usr/bin/minio", "server", "/data"]), ' \
                      f"got {value!r}"
            try:
                parsed = json.loads(value)
            except ValueError:
                raise ConfigError(name, problem) from None
            if not isinstance(parsed, list) or not parsed or not parsed[0] \
                    or not all(isinstance(arg, str) for arg in parsed):
                raise ConfigError(name, problem)
            return tuple(parsed)

        interval = number("HEARTBEAT_INTERVAL_SECONDS", 1.0)
        lease = number("LEASE_SECONDS", 5.0)
        # Room for one missed tick plus the stop itself, so MinIO is down before the checker's lease ends.
        margin = number("LEASE_MARGIN_SECONDS", interval + 1.0)
        if margin >= lease:
            raise ConfigError("LEASE_MARGIN_SECONDS",
                              f"({margin:g}) must be smaller than LEASE_SECONDS ({lease:g})")
        require_mount = (raw("EFS_REQUIRE_MOUNT") or "true").lower()
        if require_mount not in ("true", "false"):
            raise ConfigError("EFS_REQUIRE_MOUNT", f"must be true or false, got {require_mount!r}")
        minio_command = command("MINIO_COMMAND")
        minio_log = raw("MINIO_LOG")
        if minio_log is not None and minio_command is None:
            raise ConfigError("MINIO_LOG", "is only used together with MINIO_COMMAND, which is not set")
        region = raw("AWS_REGION") or raw("AWS_DEFAULT_REGION")
        if region is None:
            raise ConfigError("AWS_REGION", "is required and missing or empty")
        return cls(
            state_table_name=required("STATE_TABLE_NAME"),
            node_name=required("NODE_NAME"),
            mount_point=required("MOUNT_POINT"),
            region=region,
            heartbeat_interval_seconds=interval,
            lease_seconds=lease,
            lease_margin_seconds=margin,
            minio_unit=raw("MINIO_UNIT") or "minio.service",
            minio_health_url=raw("MINIO_HEALTH_URL") or "http://127.0.0.1:9000/minio/health/live",
            instance_id=raw("INSTANCE_ID"),
            efs_timeout_seconds=number("EFS_TIMEOUT_SECONDS", 2.0),
            efs_require_mount=require_mount == "true",
            minio_command=minio_command,
            minio_log=minio_log,
        )
