"""The README's interface-endpoint cost line is recomputed from the endpoints the network builds (us-east-1 list
price: $0.01 per endpoint per AZ-hour, AWS PrivateLink pricing); change the price here and in the README together."""

from __future__ import annotations

from pathlib import Path

from cluster_config.model import AZ_COUNT
from constructs import network  # a module from constructs/: the test runs on the worker that has CDK loaded

INTERFACE_ENDPOINT_SERVICES = network.INTERFACE_ENDPOINT_SERVICES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
ENDPOINT_AZ_HOUR = 0.01
MONTH_HOURS = 730


def test_the_interface_endpoint_line_follows_from_the_endpoints_and_the_zones() -> None:
    count = len(INTERFACE_ENDPOINT_SERVICES)
    line = next(row for row in README.splitlines() if row.startswith("| ") and " interface endpoints x " in row)
    assert line.startswith(f"| {count} interface endpoints x {AZ_COUNT} AZs (${ENDPOINT_AZ_HOUR:.2f} per endpoint")
    assert line.rstrip(" |").endswith(f"~${count * AZ_COUNT * ENDPOINT_AZ_HOUR * MONTH_HOURS:.1f}")
    assert f"~${round(count * AZ_COUNT * ENDPOINT_AZ_HOUR * MONTH_HOURS)}/month" in README  # the config table


def test_the_readme_endpoint_table_lists_exactly_the_endpoints_built() -> None:
    section = README.split("### Interface endpoints (`interface_endpoints`)", 1)[1].split("\n## ", 1)[0]
    listed = {row.split("`")[1] for row in section.splitlines() if row.startswith("| `")}
    assert listed == set(INTERFACE_ENDPOINT_SERVICES)
