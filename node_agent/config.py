"""Agent settings from the environment (/etc/efs-ha/agent.env), checked once at start."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_WATCHDOG_DEVICE = "/dev/watchdog"
WATCHDOG_MODES = ("required", "off")
DEFAULT_RESET_INTENT_PATH = "/run/efs-ha/reset-pending"


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
    # P: the lease thread renews every P seconds; G: the lease is valid for G seconds from a renewal's send time.
    heartbeat_interval_seconds: float = 0.5
    lease_seconds: float = 1.5
    minio_unit: str = "minio.service"
    minio_health_url: str = "http://127.0.0.1:9000/minio/health/live"
    # MinIO over TLS: the cluster CA the local health check verifies MinIO's certificate against (None: plain HTTP).
    minio_ca_file: str | None = None
    # Identity from IMDS unless given (the drill gives them): reported so the checker can move routes without EC2.
    instance_id: str | None = None
    eni_id: str | None = None
    private_ip: str | None = None
    efs_timeout_seconds: float = 2.0
    efs_probe_interval_seconds: float = 1.0
    # watchdog: "required" (refuse the active role without it) or "off"; device path and timeout W.
    watchdog: str = "required"
    watchdog_device: str = DEFAULT_WATCHDOG_DEVICE
    watchdog_timeout_seconds: int = 1
    efs_require_mount: bool = True
    # A plain child process instead of a systemd unit (the local drill): the server's argv, and its log file.
    minio_command: tuple[str, ...] | None = None
    minio_log: str | None = None
    # A chosen watchdog reset survives an agent restart (tmpfs: the reset's reboot clears it).
    reset_intent_path: str = DEFAULT_RESET_INTENT_PATH
    # When the instance was launched (wall clock); None: its first boot, recorded on its root volume. The drill's
    # simulated nodes give theirs.
    launched_at: float | None = None

    @property
    def watchdog_required(self) -> bool:
        return self.watchdog == "required"

    @property
    def table_timeout_seconds(self) -> float:
        """Connect and read timeout of one state table call: a renewal slower than P does not count anyway."""
        return max(0.2, self.heartbeat_interval_seconds)

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

        def whole(name: str, default: int, minimum: int, maximum: int) -> int:
            value = raw(name)
            if value is None:
                return default
            try:
                parsed = int(value)
            except ValueError:
                raise ConfigError(name, f"must be a whole number of seconds, got {value!r}") from None
            if not minimum <= parsed <= maximum:
                raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value!r}")
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

        interval = number("HEARTBEAT_INTERVAL_SECONDS", 0.5)
        lease = number("LEASE_SECONDS", 1.5)
        # One lost renewal must not stop MinIO: the lease outlives at least two more renewal attempts.
        if lease < 3 * interval - 1e-9:  # 0.6 vs 3 x 0.2 = 0.6000000000000001 is fine
            raise ConfigError("LEASE_SECONDS", f"({lease:g}) must be at least 3 x HEARTBEAT_INTERVAL_SECONDS "
                                               f"({3 * interval:g})")
        watchdog = (raw("WATCHDOG") or "required").lower()
        if watchdog not in WATCHDOG_MODES:
            raise ConfigError("WATCHDOG", f"must be required or off, got {watchdog!r}")
        watchdog_timeout = whole("WATCHDOG_TIMEOUT_SECONDS", 1, 1, 60)
        watchdog_device = raw("WATCHDOG_DEVICE")
        require_mount = (raw("EFS_REQUIRE_MOUNT") or "true").lower()
        if require_mount not in ("true", "false"):
            raise ConfigError("EFS_REQUIRE_MOUNT", f"must be true or false, got {require_mount!r}")
        minio_command = command("MINIO_COMMAND")
        minio_log = raw("MINIO_LOG")
        if minio_log is not None and minio_command is None:
            raise ConfigError("MINIO_LOG", "is only used together with MINIO_COMMAND, which is not set")
        if minio_command is not None and watchdog == "required" and watchdog_device is None:
            # The local drill must never arm the watchdog of the machine it runs on: it names its simulator.
            raise ConfigError("WATCHDOG_DEVICE", "must be set (the drill's simulated device) when MINIO_COMMAND "
                                                 "is set and WATCHDOG is required")
        health_url = raw("MINIO_HEALTH_URL") or "http://127.0.0.1:9000/minio/health/live"
        if health_url.startswith("https://") != (raw("MINIO_CA_FILE") is not None):
            raise ConfigError("MINIO_CA_FILE", "must be set exactly when MINIO_HEALTH_URL is https (the cluster CA "
                                               f"that MinIO's certificate is verified against); URL {health_url!r}")
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
            minio_unit=raw("MINIO_UNIT") or "minio.service",
            minio_health_url=health_url,
            minio_ca_file=raw("MINIO_CA_FILE"),
            instance_id=raw("INSTANCE_ID"),
            eni_id=raw("ENI_ID"),
            private_ip=raw("PRIVATE_IP"),
            efs_timeout_seconds=number("EFS_TIMEOUT_SECONDS", 2.0),
            efs_probe_interval_seconds=number("EFS_PROBE_INTERVAL_SECONDS", 1.0),
            watchdog=watchdog,
            watchdog_device=watchdog_device or DEFAULT_WATCHDOG_DEVICE,
            watchdog_timeout_seconds=watchdog_timeout,
            efs_require_mount=require_mount == "true",
            minio_command=minio_command,
            minio_log=minio_log,
            reset_intent_path=raw("RESET_INTENT_FILE") or DEFAULT_RESET_INTENT_PATH,
            launched_at=number("LAUNCHED_AT", 0.0) or None,
        )
