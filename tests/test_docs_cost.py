"""The README's cost lines that follow from the shipped config are recomputed here, so they cannot drift from it.

Prices are us-east-1 list prices (DynamoDB on demand after the November 2024 reduction; public IPv4 addresses
since February 2024); change them here and in the README together.
"""

from __future__ import annotations

import re
from pathlib import Path

from cluster_config.model import AZ_COUNT, DEFAULTS
from failover_lambda.checker import PROBE_RECORD_SECONDS
from failover_lambda.loop_lease import LOOP_RENEW_SECONDS
from node_agent.table import NodeItem

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
MONTH_SECONDS = 730 * 3600
WRITE_PER_MILLION = 0.625
READ_PER_MILLION = 0.125
PUBLIC_IPV4_PER_HOUR = 0.005
LAMBDA_MEMORY_GB = 256 / 1024


def cost_line(starts_with: str) -> str:
    line = next((row for row in README.splitlines() if row.startswith(starts_with)), None)
    assert line is not None, f"no README line starts with {starts_with!r}"
    return line


def test_the_dynamodb_line_follows_from_the_renewal_period_and_the_probe_interval() -> None:
    nodes = len(DEFAULTS["node_names"])
    renewals_per_second = nodes / float(DEFAULTS["heartbeat_interval_seconds"])  # GetItem + PutItem each
    scans_per_second = 1 / float(DEFAULTS["probe_interval_seconds"])
    # The checker's probe record and the probe loop's lease renewal are one write each per period.
    writes = (renewals_per_second + 1 / PROBE_RECORD_SECONDS + 1 / LOOP_RENEW_SECONDS) * MONTH_SECONDS
    reads = (renewals_per_second + scans_per_second) * MONTH_SECONDS  # the checker's probe record is a write
    cost = writes / 1e6 * WRITE_PER_MILLION + reads / 1e6 * READ_PER_MILLION
    line = cost_line("| DynamoDB on demand")
    assert f"every {float(DEFAULTS['heartbeat_interval_seconds']):g} s" in line
    assert f"{writes / 1e6:.1f} M writes + {reads / 1e6:.1f} M reads = {(writes + reads) / 1e6:.1f} M requests" \
        in line
    assert line.rstrip(" |").endswith(f"~${cost:.1f}")
    assert f"= ${writes / 1e6 * WRITE_PER_MILLION:.2f}" in README
    assert f"= ${reads / 1e6 * READ_PER_MILLION:.2f}" in README


def test_a_renewal_is_one_write_unit_because_a_full_node_item_stays_under_1_kb() -> None:
    item = NodeItem(node="n" * 31, lease_seq=10**12, heartbeat_at=4_000_000_000.123, serving=True, seen_epoch=10**6,
                    stop_reason="watchdog_unavailable", efs_ok=True, minio_ok=True, watchdog="unavailable",
                    watchdog_timeout=60, instance_id="i-0123456789abcdef0", eni_id="eni-0123456789abcdef0",
                    private_ip="255.255.255.255", detail="x" * 1000, lease_seconds=60.0).to_item()

    def size(value: dict[str, str | bool]) -> int:
        (kind, raw), = value.items()
        if kind == "N":
            return (len(str(raw).replace(".", "").lstrip("0")) + 1) // 2 + 1
        return 1 if kind == "BOOL" else len(str(raw).encode())

    assert sum(len(name) + size(value) for name, value in item.items()) < 1024


def test_the_nat_address_and_lambda_lines_follow_from_the_stack() -> None:
    assert cost_line(f"| {AZ_COUNT} NAT gateway Elastic IPs").rstrip(" |").endswith(
        f"~${AZ_COUNT * PUBLIC_IPV4_PER_HOUR * 730:.1f}")
    gb_seconds = LAMBDA_MEMORY_GB * MONTH_SECONDS / 1e6
    assert f"~{gb_seconds:.2f} M GB-s" in cost_line("| Checker Lambda (256 MB")
    assert re.search(r"memory_size=256\b", (Path(__file__).resolve().parent.parent / "constructs" /
                                            "failover_manager.py").read_text())


def test_the_third_zone_line_follows_from_the_nat_address_and_node_lines() -> None:
    """A third zone adds one NAT gateway, its address and (with a third node) one node: the README's line says how
    much, from the same prices as the two-zone lines above it."""
    nat = float(re.search(r"at \$([0-9.]+)/h", cost_line(f"| {AZ_COUNT} NAT gateways")).group(1)) * 730  # type: ignore[union-attr]
    node, disk = (float(x) / AZ_COUNT for x in re.findall(r"~\$([0-9.]+)", cost_line(f"| {AZ_COUNT} x t3.small")))
    line = cost_line("Three zones (")
    assert f"~${nat:.1f} for its NAT gateway" in line
    assert f"~${PUBLIC_IPV4_PER_HOUR * 730:.2f} for its address" in line
    assert f"~${node:.1f} + ~${disk:.1f} for a third node" in line
