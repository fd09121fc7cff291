"""Config: one validated object; every bad value ends synthesis with one line naming the key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from cluster_config import ConfigError, load_config
from cluster_config.model import DEFAULTS, WATCHDOG_RESET_MARGIN_SECONDS
from tests.conftest import PROJECT_ROOT, cdk_json_context, context_getter


def test_cdk_json_and_built_in_defaults_agree() -> None:
    context = cdk_json_context()
    assert {key: context[key] for key in DEFAULTS} == DEFAULTS


def test_defaults_give_the_reference_architecture() -> None:
    config = load_config(context_getter())
    assert config.vip == IPv4Address("172.16.0.1")
    assert [str(c) for c in config.private_subnet_cidrs] == ["10.0.110.0/24", "10.0.120.0/24"]
    assert [str(c) for c in config.client_cidrs] == ["10.0.0.0/16"]  # empty client_cidrs means the VPC
    assert config.mount_point == "/mnt/efs"


def test_cli_style_string_values_are_parsed() -> None:
    config = load_config(context_getter(client_cidrs="10.1.0.0/16,192.168.0.0/24", failure_threshold="4"))
    assert [str(c) for c in config.client_cidrs] == ["10.1.0.0/16", "192.168.0.0/24"]
    assert config.timings.failure_threshold == 4
    config = load_config(context_getter(public_subnet_cidrs='["10.0.1.0/24", "10.0.2.0/24"]'))
    assert [str(c) for c in config.public_subnet_cidrs] == ["10.0.1.0/24", "10.0.2.0/24"]


@pytest.mark.parametrize(("override", "key", "fragment"), [
    ({"vip": "10.0.5.5"}, "vip", "inside vpc_cidr"),
    ({"vip": "172.16.0.300"}, "vip", "not an IPv4 address"),
    ({"vip": "8.8.8.8"}, "vip", "private unicast"),
    ({"vpc_cidr": "10.0.0.0/33"}, "vpc_cidr", "not an IPv4 CIDR"),
    ({"vpc_cidr": "10.0.0.1/16"}, "vpc_cidr", "host bits set"),
    ({"public_subnet_cidrs": ["10.0.10.0/24", "10.1.20.0/24"]}, "public_subnet_cidrs", "outside vpc_cidr"),
    ({"private_subnet_cidrs": ["10.0.110.0/24", "10.0.10.128/25"]}, "private_subnet_cidrs", "overlaps"),
    ({"public_subnet_cidrs": ["10.0.10.0/24", "10.0.10.0/25"]}, "public_subnet_cidrs", "overlaps"),
    ({"private_subnet_cidrs": ["10.0.110.0/24"], "public_subnet_cidrs": ["10.0.10.0/24"]},
     "private_subnet_cidrs", "2 or 3 CIDR blocks"),
    ({"private_subnet_cidrs": [f"10.0.{n}.0/24" for n in (110, 120, 130, 140)],
      "public_subnet_cidrs": [f"10.0.{n}.0/24" for n in (10, 20, 30, 40)]}, "private_subnet_cidrs", "got 4"),
    # Mismatched lengths: one error naming every list and its length, on the key that differs from the private one.
    ({"public_subnet_cidrs": ["10.0.10.0/24", "10.0.20.0/24", "10.0.30.0/24"]}, "public_subnet_cidrs",
     "lists 3, but private_subnet_cidrs 2: each list needs one entry per availability zone"),
    ({"private_subnet_cidrs": ["10.0.110.0/24", "10.0.120.0/24", "10.0.130.0/24"]}, "public_subnet_cidrs",
     "lists 2, but private_subnet_cidrs 3"),
    ({"availability_zones": ["us-east-1a", "us-east-1b", "us-east-1c"]}, "availability_zones",
     "lists 3, but private_subnet_cidrs 2 and public_subnet_cidrs 2"),
    ({"client_cidrs": ["10.0.0.0/8x"]}, "client_cidrs", "not an IPv4 CIDR"),
    ({"mount_point": "mnt/efs"}, "mount_point", "absolute"),
    ({"mount_point": "/mnt/my efs"}, "mount_point", "no spaces"),
    ({"mount_point": "/mnt/../etc"}, "mount_point", "'..'"),
    ({"mount_point": "/mnt/efs/"}, "mount_point", "trailing"),
    ({"mount_point": "/mnt/ef\\s"}, "mount_point", "may hold only"),
    ({"mount_point": "/etc"}, "mount_point", "system directory"),
    ({"node_names": ["node1"]}, "node_names", "at least 2 nodes"),
    ({"node_names": []}, "node_names", "at least 2 nodes"),
    ({"node_names": ["node1", "node1"]}, "node_names", "unique"),
    ({"node_names": ["Node_1", "node2"]}, "node_names", "lower-case"),
    ({"instance_type": "big"}, "instance_type", "instance type"),
    ({"instance_type": "t4g.small"}, "instance_type", "arm64"),
    ({"instance_type": "c7gn.large"}, "instance_type", "x86_64"),
    ({"instance_type": "a1.medium"}, "instance_type", "Graviton"),
    ({"failure_threshold": "1"}, "failure_threshold", "at least 2"),
    ({"lease_seconds": "soon"}, "lease_seconds", "must be a number"),
    ({"lease_seconds": "nan"}, "lease_seconds", "finite"),
    ({"heartbeat_stale_seconds": 1.5}, "heartbeat_stale_seconds", "probe_interval_seconds + 2 x"),
    ({"heartbeat_interval_seconds": 1}, "lease_seconds", "3 x heartbeat_interval_seconds"),
    ({"watchdog_timeout_seconds": 2}, "lease_deadline_seconds", "lease_seconds + 2 x watchdog_timeout_seconds"),
    ({"lease_deadline_seconds": 3.5}, "lease_deadline_seconds", "reset by its watchdog"),
    ({"fence_timeout_seconds": 3}, "fence_timeout_seconds", "at least lease_deadline_seconds"),
    ({"watchdog": "maybe"}, "watchdog", "one of required, off"),
    ({"watchdog_timeout_seconds": 1.5}, "watchdog_timeout_seconds", "whole number"),
    ({"minio_sha256": "abc"}, "minio_sha256", "64-hex-digit"),
    ({"minio_url": "http://insecure.example/minio"}, "minio_url", "https://"),
    ({"minio_local_file": "build/minio"}, "minio_url", "exactly one"),
    ({"minio_url": "", "minio_local_file": "no/such/minio"}, "minio_local_file", "does not exist"),
    ({"alarm_email": "ops"}, "alarm_email", "e-mail"),
    ({"availability_zones": ["us-east-1a"]}, "availability_zones", "subnet pair i lies in zone i"),
    ({"availability_zones": ["us-east-1a", "us-east-1a"]}, "availability_zones", "different"),
    ({"availability_zones": ["us-east-1a", "use1-az3"]}, "availability_zones", "all zone names"),
    ({"availability_zones": ["east", "west"]}, "availability_zones", "describe-availability-zones"),
    ({"interface_endpoints": "yes"}, "interface_endpoints", "true or false"),
    ({"checker_reserved_concurrency": -1}, "checker_reserved_concurrency", "at least 0"),
    ({"checker_reserved_concurrency": "one"}, "checker_reserved_concurrency", "whole number"),
    ({"tls": "maybe"}, "tls", "one of on, off"),
])
def test_bad_values_raise_one_clear_error_naming_the_key(override: dict[str, Any], key: str,
                                                         fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(context_getter(**override), project_root=PROJECT_ROOT)
    assert raised.value.key == key
    assert str(raised.value).startswith(f"config error: '{key}'")
    assert fragment in str(raised.value)


THREE_ZONES = {"public_subnet_cidrs": ["10.0.10.0/24", "10.0.20.0/24", "10.0.30.0/24"],
               "private_subnet_cidrs": ["10.0.110.0/24", "10.0.120.0/24", "10.0.130.0/24"]}


def test_three_zones_take_three_subnet_pairs_and_zones_by_name_or_id() -> None:
    config = load_config(context_getter(**THREE_ZONES, availability_zones="use1-az1,use1-az2,use1-az4"))
    assert [str(c) for c in config.public_subnet_cidrs] == THREE_ZONES["public_subnet_cidrs"]
    assert [str(c) for c in config.private_subnet_cidrs] == THREE_ZONES["private_subnet_cidrs"]
    assert config.zone_count == 3 and config.availability_zones_are_ids
    assert load_config(context_getter(**THREE_ZONES)).availability_zones == ()  # the region's first three
    assert load_config(context_getter()).zone_count == 2


@pytest.mark.parametrize(("zones", "names"), [
    (THREE_ZONES, ["node1", "node2", "node3"]),
    ({}, ["node1", "node2", "node3"]),  # more nodes than zones: round-robin, two share the first zone
    (THREE_ZONES, ["node1", "node2"]),  # fewer: the third zone has a NAT and a route table, clients, no node
    (THREE_ZONES, [f"node{n}" for n in range(1, 7)]),
])
def test_any_number_of_nodes_from_two_in_two_or_three_zones(zones: dict[str, Any], names: list[str]) -> None:
    config = load_config(context_getter(**zones, node_names=",".join(names)))
    assert list(config.node_names) == names  # failover priority order kept


def test_fractional_seconds_from_the_command_line_are_parsed() -> None:
    timings = load_config(context_getter(heartbeat_interval_seconds="0.25", lease_seconds="0.75",
                                         watchdog="OFF")).timings
    assert (timings.heartbeat_interval_seconds, timings.lease_seconds) == (0.25, 0.75)
    assert timings.watchdog == "off" and not timings.watchdog_required


@pytest.mark.parametrize(("zones", "are_ids"), [
    (["us-east-1a", "us-east-1c"], False),
    (["use1-az1", "use1-az3"], True),
    ("cn-north-1a,cn-north-1b", False),
    (["usgw1-az1", "usgw1-az2"], True),
    ([], False),
])
def test_availability_zones_take_names_or_ids(zones: Any, are_ids: bool) -> None:
    config = load_config(context_getter(availability_zones=zones))
    expected = zones.split(",") if isinstance(zones, str) else zones
    assert list(config.availability_zones) == expected
    assert config.availability_zones_are_ids is are_ids


@pytest.mark.parametrize("instance_type", ["t3.small", "m7i.large", "c6in.xlarge", "g4dn.xlarge", "m5a.large"])
def test_x86_64_instance_types_are_accepted(instance_type: str) -> None:
    assert load_config(context_getter(instance_type=instance_type)).instance_type == instance_type


def test_new_account_friendly_defaults() -> None:
    """No concurrency reservation (new accounts cannot grant one), TLS on, endpoints off (they cost money)."""
    config = load_config(context_getter())
    assert config.checker_reserved_concurrency == 0
    assert config.tls is True
    assert config.interface_endpoints is False
    flipped = load_config(context_getter(interface_endpoints="true", tls="OFF", checker_reserved_concurrency="2"))
    assert (flipped.interface_endpoints, flipped.tls, flipped.checker_reserved_concurrency) == (True, False, 2)


def test_shipped_timings_keep_the_safety_inequality() -> None:
    """A silent node is dead (agent's kill or watchdog reset) before the checker's deadline ends."""
    timings = load_config(context_getter()).timings
    assert timings.watchdog_required
    assert timings.lease_seconds + 2 * timings.watchdog_timeout_seconds + WATCHDOG_RESET_MARGIN_SECONDS \
        <= timings.lease_deadline_seconds
    assert timings.systemd_watchdog_seconds < timings.lease_deadline_seconds


@pytest.mark.parametrize("lease", [0.6, 1.5, 3.0])
@pytest.mark.parametrize("watchdog_timeout", [1, 2, 5])
@pytest.mark.parametrize("deadline", [2.5, 4.0, 6.0, 9.0])
def test_every_accepted_timing_keeps_the_safety_inequality(lease: float, watchdog_timeout: int,
                                                           deadline: float) -> None:
    overrides = {"heartbeat_interval_seconds": 0.2, "heartbeat_stale_seconds": 2, "lease_seconds": lease,
                 "watchdog_timeout_seconds": watchdog_timeout, "lease_deadline_seconds": deadline,
                 "fence_timeout_seconds": 10}
    try:
        timings = load_config(context_getter(**overrides)).timings
    except ConfigError as error:
        assert error.key == "lease_deadline_seconds"
        assert lease + 2 * watchdog_timeout + WATCHDOG_RESET_MARGIN_SECONDS > deadline
    else:
        assert lease + 2 * watchdog_timeout + WATCHDOG_RESET_MARGIN_SECONDS <= timings.lease_deadline_seconds


def test_local_minio_binary_is_checked_against_its_sha256(tmp_path: Path) -> None:
    binary = tmp_path / "minio"
    binary.write_bytes(b"not really minio")
    base = {"minio_url": "", "minio_local_file": str(binary)}
    with pytest.raises(ConfigError, match="does not match"):
        load_config(context_getter(**base), project_root=tmp_path)
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    config = load_config(context_getter(**base, minio_sha256=digest), project_root=tmp_path)
    assert config.minio.local_file == binary and config.minio.url is None


def _run_app(**overrides: Any) -> subprocess.CompletedProcess[str]:
    """Run app.py the way the CDK CLI does: context in CDK_CONTEXT_JSON, no AWS credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["CDK_CONTEXT_JSON"] = json.dumps({**cdk_json_context(), **overrides})
    # The Makefile's Node 22 (Node 20 makes jsii print an end-of-life banner on stderr).
    env["PATH"] = f"{PROJECT_ROOT / '.tools/node_modules/.bin'}:{env['PATH']}"
    return subprocess.run([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_app_exits_with_one_line_and_no_traceback_on_bad_config() -> None:
    result = _run_app(vip="10.0.5.5")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "config error: 'vip' 10.0.5.5 lies inside vpc_cidr 10.0.0.0/16; route-table failover only works for an "
        "address outside the VPC CIDR (e.g. 172.16.0.1)"]
