"""Config model: every CDK context key is parsed and checked here, so constructs only ever see valid values."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from cluster_config.image import KEY as NODE_IMAGES_KEY
from cluster_config.image import ImageConfigError, NodeImages, parse_node_images

_N = TypeVar("_N", int, float)

# The stack is environment-agnostic: one public and one private subnet (a subnet pair, with its NAT gateway and
# private route table) in each of the first AZ_COUNT availability zones of the region (Fn::GetAZs), so it needs no
# lookup and no credentials. AZ_COUNT is the shipped layout; the subnet lists may name ZONE_COUNTS zones.
AZ_COUNT = 2
# Three zones survive the loss of any one with a standby elsewhere; more would add a NAT gateway (and its hourly
# cost) per zone for no further availability, and some regions offer only three zones.
ZONE_COUNTS = (2, 3)
# Nodes are placed round-robin across the private subnets, failover in node_names order; one node is no cluster.
MIN_NODES = 2

DEFAULTS: dict[str, Any] = {
    "stack_name": "EfsHaCluster",
    "vpc_cidr": "10.0.0.0/16",
    "public_subnet_cidrs": ["10.0.10.0/24", "10.0.20.0/24"],
    "private_subnet_cidrs": ["10.0.110.0/24", "10.0.120.0/24"],
    "vip": "172.16.0.1",
    "mount_point": "/mnt/efs",
    "instance_type": "t3.small",
    "client_cidrs": [],
    "node_names": ["node1", "node2"],
    "minio_version": "RELEASE.2025-09-07T16-13-09Z",
    "minio_url": (
        "https://github.com/minio/minio/releases/download/RELEASE.2025-09-07T16-13-09Z/"
        "minio.linux-amd64.RELEASE.2025-09-07T16-13-09Z"
    ),
    "minio_sha256": "7c5bd8512c6e966455b1d198209358b2d191c77a83ab377c4073281065fb855f",
    "minio_local_file": "",
    "probe_interval_seconds": 1,
    "failure_threshold": 3,
    "heartbeat_interval_seconds": 0.5,
    "heartbeat_stale_seconds": 2,
    "lease_seconds": 1.5,
    "lease_deadline_seconds": 4,
    "watchdog": "required",
    "watchdog_timeout_seconds": 1,
    "fence_timeout_seconds": 10,
    "alarm_email": "",
    "availability_zones": [],
    "interface_endpoints": False,
    "checker_reserved_concurrency": 0,
    "tls": "on",
    NODE_IMAGES_KEY: {},
}

# Mount points become systemd unit names and shell arguments; keep them to characters both carry verbatim.
_MOUNT_POINT_RE = re.compile(r"^(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")
_SYSTEM_DIRS = {"/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
                "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/mnt", "/media"}
_NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# Graviton families: a1, and a "g" right after the generation digit (t4g, m7g, c7gn, r8gd, x2gd, im4gn, is4gen).
_GRAVITON_RE = re.compile(r"^(a1|[a-z]+[0-9]+g[a-z]*)\.")
# us-east-1a, cn-north-1b, us-gov-west-1a (names differ per account) or use1-az3, cnn1-az1 (IDs are the same in
# every account: the form to use when a physical zone lacks something).
_AZ_NAME_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+[a-z]$")
_AZ_ID_RE = re.compile(r"^[a-z]{2,5}[0-9]+-az[0-9]+$")
TLS_MODES = ("on", "off")


class ConfigError(ValueError):
    """A context value is wrong; the message names the key, what is wrong and how to fix it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config error: '{key}' {problem}")
        self.key = key


@dataclass(frozen=True)
class MinioBinary:
    """Where the node gets the MinIO server binary; the sha256 is always checked on the node before install."""

    version: str
    sha256: str
    url: str | None = None
    local_file: Path | None = None


# Time from a watchdog's expiry (or the guard's kill) until MinIO can no longer write, plus the checker's own
# scheduling slack: softdog restarts the kernel from a timer at once, so this is a margin, not a measurement.
WATCHDOG_RESET_MARGIN_SECONDS = 0.5
WATCHDOG_MODES = ("required", "off")


@dataclass(frozen=True)
class FailoverTimings:
    """See docs/failover-design.md, "Lease, watchdog and one clock", for what each value bounds."""

    probe_interval_seconds: float
    failure_threshold: int
    heartbeat_interval_seconds: float  # P: the agent renews its lease this often
    heartbeat_stale_seconds: float  # S: no renewal seen this long (checker clock) fails a probe
    lease_seconds: float  # G: the agent serves only this long after its last renewal was sent
    lease_deadline_seconds: float  # D: the checker treats a silent node's lease as over after this
    watchdog: str  # "required": the active node arms a kernel watchdog; "off": fencing never trusts a lease alone
    watchdog_timeout_seconds: int  # W: softdog resets the node if not fed this long
    fence_timeout_seconds: float

    @property
    def watchdog_required(self) -> bool:
        return self.watchdog == "required"

    @property
    def systemd_watchdog_seconds(self) -> int:
        """The agent unit's WatchdogSec: a second layer that must also end before the checker's deadline."""
        return max(1, math.ceil(self.lease_deadline_seconds) - 1)


@dataclass(frozen=True)
class ClusterConfig:
    stack_name: str
    vpc_cidr: IPv4Network
    public_subnet_cidrs: tuple[IPv4Network, ...]
    private_subnet_cidrs: tuple[IPv4Network, ...]
    vip: IPv4Address
    mount_point: str
    instance_type: str
    client_cidrs: tuple[IPv4Network, ...]
    node_names: tuple[str, ...]
    minio: MinioBinary
    timings: FailoverTimings
    alarm_email: str | None
    # Empty: the region's first AZ_COUNT zones (Fn::GetAZs). Otherwise all names or all IDs, one per subnet pair.
    availability_zones: tuple[str, ...]
    interface_endpoints: bool  # VPC interface endpoints so failover and node start never depend on a NAT
    checker_reserved_concurrency: int  # 0: no reservation (the loop lease keeps one probe loop)
    tls: bool  # MinIO serves HTTPS with a per-cluster CA
    node_images: NodeImages  # the pinned AMI per region (cluster_config/image.py)

    @property
    def zone_count(self) -> int:
        """Subnet pairs, so zones (one NAT gateway and one private route table each)."""
        return len(self.private_subnet_cidrs)

    @property
    def availability_zones_are_ids(self) -> bool:
        return bool(self.availability_zones) and bool(_AZ_ID_RE.match(self.availability_zones[0]))


ContextGetter = Callable[[str], Any]


def load_config(get_context: ContextGetter, *, project_root: Path | None = None) -> ClusterConfig:
    """Build and validate the config; raises ConfigError on the first bad key."""
    raw = _Raw(get_context)
    vpc_cidr = _network(raw, "vpc_cidr")
    private = _subnets(raw, "private_subnet_cidrs", vpc_cidr)
    public = _subnets(raw, "public_subnet_cidrs", vpc_cidr)
    zones = _availability_zones(raw)
    _same_zone_counts(private, public, zones)
    _no_overlaps([("public_subnet_cidrs", s) for s in public] + [("private_subnet_cidrs", s) for s in private])
    vip = _vip(raw, vpc_cidr)
    client_cidrs = tuple(_parse_network("client_cidrs", c) for c in raw.list("client_cidrs")) or (vpc_cidr,)
    return ClusterConfig(
        stack_name=_matching(raw, "stack_name", _STACK_NAME_RE, "must start with a letter and hold only "
                             "letters, digits and hyphens (a CloudFormation stack name)"),
        vpc_cidr=vpc_cidr,
        public_subnet_cidrs=public,
        private_subnet_cidrs=private,
        vip=vip,
        mount_point=_mount_point(raw),
        instance_type=_instance_type(raw),
        client_cidrs=client_cidrs,
        node_names=_node_names(raw),
        minio=_minio(raw, project_root or Path.cwd()),
        timings=_timings(raw),
        alarm_email=_alarm_email(raw),
        availability_zones=zones,
        interface_endpoints=raw.boolean("interface_endpoints"),
        checker_reserved_concurrency=raw.integer("checker_reserved_concurrency", minimum=0, maximum=1000),
        tls=raw.choice("tls", TLS_MODES) == "on",
        node_images=_node_images(raw),
    )


def _node_images(raw: _Raw) -> NodeImages:
    try:
        return parse_node_images(raw.value(NODE_IMAGES_KEY))
    except ImageConfigError as error:
        raise ConfigError(NODE_IMAGES_KEY, error.problem) from None


class _Raw:
    """Reads context values, falling back to DEFAULTS, and coerces `-c key=value` strings."""

    def __init__(self, get_context: ContextGetter) -> None:
        self._get = get_context

    def value(self, key: str) -> Any:
        value = self._get(key)
        return DEFAULTS[key] if value is None else value

    def text(self, key: str) -> str:
        value = self.value(key)
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value.strip()

    def list(self, key: str) -> list[str]:
        value = self.value(key)
        if isinstance(value, str):
            value = _list_from_cli(key, value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, e.g. -c {key}=a,b (got {value!r})")
        return [v.strip() for v in value]

    def integer(self, key: str, *, minimum: int, maximum: int | None = None) -> int:
        value = self.value(key)
        try:
            number = int(value)
            if isinstance(value, float | bool) or str(number) != str(value).strip():
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be a whole number, got {value!r}") from None
        return self._bounded(key, number, minimum, maximum)

    def number(self, key: str, *, minimum: float, maximum: float) -> float:
        """Seconds may have a fraction (0.5); `-c key=0.5` arrives as a string."""
        value = self.value(key)
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be a number such as 0.5, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(key, f"must be a finite number, got {value!r}")
        return self._bounded(key, number, minimum, maximum)

    def boolean(self, key: str) -> bool:
        """JSON true/false in cdk.json; `-c key=true` arrives as a string."""
        value = self.value(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ConfigError(key, f"must be true or false, got {value!r}")

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key).lower()
        if value not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    @staticmethod
    def _bounded(key: str, number: _N, minimum: float, maximum: float | None) -> _N:
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum:g}" if maximum is not None else ""
            raise ConfigError(key, f"must be at least {minimum:g}{upper}, got {number:g}")
        return number


def _list_from_cli(key: str, value: str) -> list[str]:
    if value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, f"is not a valid JSON list: {value!r}") from None
        return parsed if isinstance(parsed, list) else [value]
    return [item for item in value.split(",") if item.strip()]


def _parse_network(key: str, text: str) -> IPv4Network:
    try:
        return IPv4Network(text, strict=True)
    except ValueError as exc:
        raise ConfigError(key, f"holds {text!r}, which is not an IPv4 CIDR block like 10.0.0.0/16 ({exc})") from None


def _network(raw: _Raw, key: str) -> IPv4Network:
    network = _parse_network(key, raw.text(key))
    if not 16 <= network.prefixlen <= 28:
        raise ConfigError(key, f"must be between /16 and /28 (a VPC limit), got /{network.prefixlen}")
    return network


def _subnets(raw: _Raw, key: str, vpc_cidr: IPv4Network) -> tuple[IPv4Network, ...]:
    subnets = tuple(_parse_network(key, text) for text in raw.list(key))
    if key == "private_subnet_cidrs" and len(subnets) not in ZONE_COUNTS:
        raise ConfigError(key, f"must list {' or '.join(map(str, ZONE_COUNTS))} CIDR blocks, one per availability "
                               f"zone used, got {len(subnets)}")
    for subnet in subnets:
        if not subnet.subnet_of(vpc_cidr):
            raise ConfigError(key, f"holds {subnet}, which lies outside vpc_cidr {vpc_cidr}")
    return subnets


def _same_zone_counts(private: tuple[IPv4Network, ...], public: tuple[IPv4Network, ...],
                      zones: tuple[str, ...]) -> None:
    """Subnet pair i (public i, private i) lies in zone i: the three lists must be equally long (zones may be empty).
    The error names the list that differs from private_subnet_cidrs (the one nodes are placed by) and every length."""
    counts = {"private_subnet_cidrs": len(private), "public_subnet_cidrs": len(public)}
    if zones:
        counts["availability_zones"] = len(zones)
    wrong = next((key for key, count in counts.items() if count != len(private)), None)
    if wrong is None:
        return
    others = [f"{key} {count}" for key, count in counts.items() if key != wrong]
    raise ConfigError(wrong, f"lists {counts[wrong]}, but {' and '.join(others)}: each list needs one entry per "
                             f"availability zone (subnet pair i lies in zone i), {' or '.join(map(str, ZONE_COUNTS))} "
                             "zones; availability_zones may also be empty (the region's first zones)")


def _no_overlaps(subnets: list[tuple[str, IPv4Network]]) -> None:
    for index, (_, first) in enumerate(subnets):
        for key, second in subnets[index + 1:]:
            if first.overlaps(second):
                raise ConfigError(key, f"subnet {second} overlaps subnet {first}; every public and private subnet "
                                       "needs its own CIDR block")


def _vip(raw: _Raw, vpc_cidr: IPv4Network) -> IPv4Address:
    text = raw.text("vip")
    try:
        vip = IPv4Address(text)
    except ValueError:
        raise ConfigError("vip", f"holds {text!r}, which is not an IPv4 address like 172.16.0.1") from None
    if vip in vpc_cidr:
        raise ConfigError("vip", f"{vip} lies inside vpc_cidr {vpc_cidr}; route-table failover only works for "
                                 "an address outside the VPC CIDR (e.g. 172.16.0.1)")
    if not vip.is_private or vip.is_loopback or vip.is_link_local or vip.is_multicast:
        raise ConfigError("vip", f"{vip} must be a private unicast address outside the VPC (e.g. 172.16.0.1)")
    return vip


def _mount_point(raw: _Raw) -> str:
    path = raw.text("mount_point")
    if not path.startswith("/"):
        raise ConfigError("mount_point", f"must be an absolute path such as /mnt/efs, got {path!r}")
    if not _MOUNT_POINT_RE.match(path) or any(part in {".", ".."} for part in path.split("/")):
        raise ConfigError("mount_point", f"{path!r} may hold only letters, digits, '_', '-' and '.' in "
                                         "normalised path components (no spaces, quotes, '//', '..' or trailing '/')")
    if path in _SYSTEM_DIRS:
        raise ConfigError("mount_point", f"{path} is a system directory; use a directory below it, e.g. /mnt/efs")
    return path


def _node_names(raw: _Raw) -> tuple[str, ...]:
    names = tuple(raw.list("node_names"))
    if len(names) < MIN_NODES:
        raise ConfigError("node_names", f"must name at least {MIN_NODES} nodes, in failover priority order (placed "
                                        f"round-robin across the private subnets), got {len(names)}")
    for name in names:
        if not _NODE_NAME_RE.match(name):
            raise ConfigError("node_names", f"{name!r} must be lower-case letters, digits and '-', starting with a "
                                            "letter (at most 31 characters)")
    if len(set(names)) != len(names):
        raise ConfigError("node_names", f"names must be unique, got {list(names)}")
    return names


def _availability_zones(raw: _Raw) -> tuple[str, ...]:
    zones = tuple(raw.list("availability_zones"))
    if not zones:
        return zones
    if len(set(zones)) != len(zones):
        raise ConfigError("availability_zones", f"zones must be different, got {list(zones)}")
    names = all(_AZ_NAME_RE.match(zone) for zone in zones)
    ids = all(_AZ_ID_RE.match(zone) for zone in zones)
    if not (names or ids):
        raise ConfigError("availability_zones", f"must be all zone names (us-east-1a) or all zone IDs (use1-az1), "
                                                f"got {list(zones)}; list the IDs with `aws ec2 describe-availability"
                                                "-zones --query 'AvailabilityZones[].[ZoneName,ZoneId]'`")
    return zones


def _instance_type(raw: _Raw) -> str:
    value = _matching(raw, "instance_type", _INSTANCE_TYPE_RE, "must be an EC2 instance type such as t3.small")
    if _GRAVITON_RE.match(value):
        raise ConfigError("instance_type", f"{value} is an arm64 (Graviton) type, but the node image and the MinIO "
                                           "binary are x86_64: choose an x86_64 type such as t3.small or m7i.large")
    return value


def _matching(raw: _Raw, key: str, pattern: re.Pattern[str], requirement: str) -> str:
    value = raw.text(key)
    if not pattern.match(value):
        raise ConfigError(key, f"{requirement}; got {value!r}")
    return value


def _minio(raw: _Raw, project_root: Path) -> MinioBinary:
    version = raw.text("minio_version")
    sha256 = raw.text("minio_sha256").lower()
    url = raw.text("minio_url")
    local = raw.text("minio_local_file")
    if not version:
        raise ConfigError("minio_version", "must name the MinIO release you install, e.g. RELEASE.2025-04-22T22-12-26Z")
    if not _SHA256_RE.match(sha256):
        raise ConfigError("minio_sha256", "must be the 64-hex-digit sha256 of the MinIO binary (sha256sum minio)")
    if bool(url) == bool(local):
        raise ConfigError("minio_url", "set exactly one of minio_url (an https download) or minio_local_file "
                                       "(a binary you built, shipped as a CDK asset)")
    if url:
        if not url.startswith("https://"):
            raise ConfigError("minio_url", f"must be an https:// URL, got {url!r}")
        return MinioBinary(version=version, sha256=sha256, url=url)
    return MinioBinary(version=version, sha256=sha256, local_file=_checked_local_binary(project_root, local, sha256))


def _checked_local_binary(project_root: Path, local: str, sha256: str) -> Path:
    path = (project_root / local).resolve()
    if not path.is_file():
        raise ConfigError("minio_local_file", f"{path} does not exist; build MinIO (see README) or fix the path")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ConfigError("minio_sha256", f"does not match {path} (its sha256 is {digest})")
    return path


def _timings(raw: _Raw) -> FailoverTimings:
    timings = FailoverTimings(
        probe_interval_seconds=raw.number("probe_interval_seconds", minimum=0.5, maximum=30),
        failure_threshold=raw.integer("failure_threshold", minimum=2, maximum=20),
        heartbeat_interval_seconds=raw.number("heartbeat_interval_seconds", minimum=0.2, maximum=10),
        heartbeat_stale_seconds=raw.number("heartbeat_stale_seconds", minimum=1, maximum=120),
        lease_seconds=raw.number("lease_seconds", minimum=0.6, maximum=60),
        lease_deadline_seconds=raw.number("lease_deadline_seconds", minimum=2, maximum=300),
        watchdog=raw.choice("watchdog", WATCHDOG_MODES),
        watchdog_timeout_seconds=raw.integer("watchdog_timeout_seconds", minimum=1, maximum=60),
        fence_timeout_seconds=raw.number("fence_timeout_seconds", minimum=2, maximum=600),
    )
    _check_timing_inequalities(timings)
    return timings


def silent_node_dead_after(lease_seconds: float, watchdog_timeout_seconds: float) -> float:
    """How long after its last renewal was sent a silent active node's MinIO is surely dead.

    The lease ends at G; a guard that checked the lease just before G and was then frozen can still feed the
    watchdog up to W later (check and feed are not atomic), and the kernel pings once more when the agent dies with
    the device open, so the last ping is < G + W and the reset comes < G + 2W; plus the reset margin.
    """
    return lease_seconds + 2 * watchdog_timeout_seconds + WATCHDOG_RESET_MARGIN_SECONDS


def _below(value: float, bound: float) -> bool:
    """value < bound, ignoring binary rounding (3 x 0.2 is 0.6000000000000001)."""
    return value < bound - 1e-9


def _check_timing_inequalities(t: FailoverTimings) -> None:
    """The safety and liveness inequalities of docs/failover-design.md; the first one broken names its key."""
    renewal = t.heartbeat_interval_seconds
    if _below(t.lease_seconds, 3 * renewal):
        raise ConfigError("lease_seconds", f"must be at least 3 x heartbeat_interval_seconds = {3 * renewal:g}, "
                                           "or one lost renewal would make the active node stop MinIO")
    stale_minimum = t.probe_interval_seconds + 2 * renewal
    if _below(t.heartbeat_stale_seconds, stale_minimum):
        raise ConfigError("heartbeat_stale_seconds", f"must be at least probe_interval_seconds + 2 x "
                          f"heartbeat_interval_seconds = {stale_minimum:g}, or a healthy node's probe could fail "
                          "between two renewals")
    dead_by = silent_node_dead_after(t.lease_seconds, t.watchdog_timeout_seconds)
    if _below(t.lease_deadline_seconds, dead_by):
        raise ConfigError("lease_deadline_seconds", f"must be at least lease_seconds + 2 x watchdog_timeout_seconds "
                          f"+ {WATCHDOG_RESET_MARGIN_SECONDS:g} = {dead_by:g}: a silent node's MinIO is only known to "
                          "be dead (stopped by its agent or reset by its watchdog) that long after its last renewal")
    if _below(t.fence_timeout_seconds, t.lease_deadline_seconds):
        raise ConfigError("fence_timeout_seconds", f"must be at least lease_deadline_seconds "
                          f"({t.lease_deadline_seconds:g}), or a node would be force-stopped before its lease "
                          "could have run out")


def _alarm_email(raw: _Raw) -> str | None:
    email = raw.text("alarm_email")
    if email and not _EMAIL_RE.match(email):
        raise ConfigError("alarm_email", f"must be an e-mail address or empty, got {email!r}")
    return email or None
