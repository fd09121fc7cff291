"""Checker settings: read from the environment once per cold start and validated in one place."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")
_ROUTE_TABLE_RE = re.compile(r"^rtb-[0-9a-f]+$")
_NODE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


WATCHDOG_REQUIRED = "required"
WATCHDOG_OFF = "off"
# R in the safety inequality G + 2W + R <= D: a reset (or SIGKILL) and scheduling margin.
RESET_MARGIN_SECONDS = 0.5
# Covers one slow cycle and the hand-over between two invocations (under 2 probe intervals, loop_lease.py).
FAILURE_AGE_SLACK_SECONDS = 5.0


class SettingsError(ValueError):
    """One environment variable is missing or malformed; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"environment variable {variable} {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    state_table_name: str
    cluster_id: str
    node_names: tuple[str, ...]
    route_table_ids: tuple[str, ...]
    vip: str
    topic_arn: str | None
    probe_interval_seconds: float = 1.0
    failure_threshold: int = 3
    # S: a node is fresh while a lease renewal was observed (checker clock) within this many seconds.
    heartbeat_stale_seconds: float = 2.0
    # P: the agents' renewal period (how often a live node's lease_seq grows).
    heartbeat_interval_seconds: float = 0.5
    # G: the node-side lease; only validated here (G + 2W + R <= D); each node also reports its own.
    lease_seconds: float = 1.5
    # D: no renewal observed for this long (checker clock) = lease expired.
    lease_deadline_seconds: float = 4.0
    # "required": lease expiry fences only a node whose watchdog is armed/ready with a timeout <= W;
    # "off": it never does (the node's stop report or a stopped instance is needed).
    watchdog: str = "required"
    watchdog_timeout_seconds: float = 1.0
    fence_timeout_seconds: float = 10.0
    minio_port: int = 9000
    http_probe: bool = True
    # MinIO over TLS: the HTTP probe verifies MinIO's certificate (for this name) against the CA in this secret.
    minio_tls: bool = False
    minio_ca_secret_arn: str | None = None
    minio_tls_server_name: str = "minio.efs-ha.internal"
    loop_safety_margin_seconds: float = 54.0
    max_probes: int | None = None
    fence_command_document: str = "AWS-RunShellScript"
    minio_unit: str = "minio.service"
    # Not in the design's list: how long an EC2 view (instances + route tables) is reused between probes.
    ec2_cache_seconds: float = 5.0
    # After a role change the new active node needs time to start MinIO: "MinIO down" is not counted yet.
    minio_start_grace_seconds: float = 15.0
    # A node that lost the role because MinIO itself failed there is no automatic failover target for this long,
    # so a MinIO that cannot run anywhere does not bounce the role between the nodes (Pacemaker's failcount).
    service_failure_hold_seconds: float = 600.0
    # A crashed MinIO that systemd is restarting in place (the node reports `minio_restarting` 1..this limit,
    # minio.service's StartLimitBurst) does not count as a failed probe, for at most the budget (checker wall
    # clock, from the first failed probe of the episode); then, or once the node reports 0, probes count again.
    minio_restart_limit: int = 3
    minio_restart_budget_seconds: float = 30.0

    @property
    def vip_cidr(self) -> str:
        return f"{self.vip}/32"

    @property
    def watchdog_required(self) -> bool:
        return self.watchdog == WATCHDOG_REQUIRED

    @property
    def failure_age_seconds(self) -> float:
        """A failure count whose last failed probe is older than this restarts at 1."""
        return 2 * self.probe_interval_seconds + FAILURE_AGE_SLACK_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        reader = _Reader(env)
        settings = cls(
            state_table_name=reader.required("STATE_TABLE_NAME"),
            cluster_id=reader.required("CLUSTER_ID"),
            node_names=reader.node_names("NODE_NAMES"),
            route_table_ids=reader.route_tables("ROUTE_TABLE_IDS"),
            vip=reader.vip("VIP"),
            topic_arn=env.get("TOPIC_ARN", "").strip() or None,
            probe_interval_seconds=reader.number("PROBE_INTERVAL_SECONDS", 1.0, float, minimum=0),
            failure_threshold=reader.number("FAILURE_THRESHOLD", 3, int, minimum=1),
            heartbeat_stale_seconds=reader.number("HEARTBEAT_STALE_SECONDS", 2.0, float, minimum=0.1),
            heartbeat_interval_seconds=reader.number("HEARTBEAT_INTERVAL_SECONDS", 0.5, float, minimum=0.05),
            lease_seconds=reader.number("LEASE_SECONDS", 1.5, float, minimum=0.1),
            lease_deadline_seconds=reader.number("LEASE_DEADLINE_SECONDS", 4.0, float, minimum=0.1),
            watchdog=reader.choice("WATCHDOG", WATCHDOG_REQUIRED, (WATCHDOG_REQUIRED, WATCHDOG_OFF)),
            watchdog_timeout_seconds=reader.number("WATCHDOG_TIMEOUT_SECONDS", 1.0, float, minimum=0.1),
            fence_timeout_seconds=reader.number("FENCE_TIMEOUT_SECONDS", 10.0, float, minimum=0),
            minio_port=reader.number("MINIO_PORT", 9000, int, minimum=1),
            http_probe=reader.boolean("HTTP_PROBE", True),
            minio_tls=reader.boolean("MINIO_TLS", False),
            minio_ca_secret_arn=reader.text("MINIO_CA_SECRET_ARN", "") or None,
            minio_tls_server_name=reader.text("MINIO_TLS_SERVER_NAME", "minio.efs-ha.internal"),
            loop_safety_margin_seconds=reader.number("LOOP_SAFETY_MARGIN_SECONDS", 54.0, float, minimum=0),
            max_probes=reader.optional_int("MAX_PROBES"),
            fence_command_document=reader.text("FENCE_COMMAND_DOCUMENT", "AWS-RunShellScript"),
            minio_unit=reader.text("MINIO_UNIT", "minio.service"),
            ec2_cache_seconds=reader.number("EC2_CACHE_SECONDS", 5.0, float, minimum=0),
            minio_start_grace_seconds=reader.number("MINIO_START_GRACE_SECONDS", 15.0, float, minimum=0),
            service_failure_hold_seconds=reader.number("SERVICE_FAILURE_HOLD_SECONDS", 600.0, float, minimum=0),
            minio_restart_limit=reader.number("MINIO_RESTART_LIMIT", 3, int, minimum=0),
            minio_restart_budget_seconds=reader.number("MINIO_RESTART_BUDGET_SECONDS", 30.0, float, minimum=0),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """The checker-side half of the safety argument (docs/failover-design.md); one error names the key."""
        if self.watchdog_required and (self.lease_seconds + 2 * self.watchdog_timeout_seconds + RESET_MARGIN_SECONDS
                                       > self.lease_deadline_seconds + 1e-9):
            raise SettingsError("LEASE_DEADLINE_SECONDS", (
                f"must be >= LEASE_SECONDS + 2 x WATCHDOG_TIMEOUT_SECONDS + {RESET_MARGIN_SECONDS} "
                f"({self.lease_seconds} + 2 x {self.watchdog_timeout_seconds} + {RESET_MARGIN_SECONDS}), "
                f"got {self.lease_deadline_seconds}: a frozen node could still serve when its lease counts as "
                f"expired"))
        if self.minio_tls and self.http_probe and not self.minio_ca_secret_arn:
            raise SettingsError("MINIO_CA_SECRET_ARN", "is required when MINIO_TLS is true: the secret holding the "
                                                       "CA that MinIO's certificate is verified against")
        if self.fence_timeout_seconds < self.lease_deadline_seconds:
            raise SettingsError("FENCE_TIMEOUT_SECONDS", f"must be >= LEASE_DEADLINE_SECONDS "
                                f"({self.lease_deadline_seconds}), got {self.fence_timeout_seconds}")


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        return value.strip() if value is not None and value.strip() else None

    def required(self, name: str) -> str:
        value = self._raw(name)
        if value is None:
            raise SettingsError(name, "is required and missing or empty")
        return value

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def _list(self, name: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in self.required(name).split(","))
        if any(not item for item in items):
            raise SettingsError(name, "must be a comma-separated list without empty items")
        if len(set(items)) != len(items):
            raise SettingsError(name, "lists an item twice")
        return items

    def node_names(self, name: str) -> tuple[str, ...]:
        names = self._list(name)
        bad = [item for item in names if not _NODE_NAME_RE.match(item)]
        if bad:
            raise SettingsError(name, f"has invalid node names {bad}")
        return names

    def route_tables(self, name: str) -> tuple[str, ...]:
        ids = self._list(name)
        bad = [item for item in ids if not _ROUTE_TABLE_RE.match(item)]
        if bad:
            raise SettingsError(name, f"has values that are not route table ids (rtb-...): {bad}")
        return ids

    def vip(self, name: str) -> str:
        value = self.required(name).removesuffix("/32")
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise SettingsError(name, f"must be an IPv4 address such as 172.16.0.1, got {value!r}") from None

    def number(self, name: str, default: _T, kind: Callable[[str], _T], *, minimum: float) -> _T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(name, f"must be a {kind.__name__}, got {raw!r}") from None
        if value < minimum:  # type: ignore[operator]
            raise SettingsError(name, f"must be >= {minimum}, got {raw!r}")
        return value

    def optional_int(self, name: str) -> int | None:
        if self._raw(name) is None:
            return None
        return self.number(name, 0, int, minimum=1)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() not in allowed:
            raise SettingsError(name, f"must be one of {', '.join(allowed)}, got {raw!r}")
        return raw.lower()

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise SettingsError(name, f"must be true or false, got {raw!r}")
