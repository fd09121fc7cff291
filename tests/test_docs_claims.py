"""Numbers the README and docs/failover-design.md state about the code, checked against the code."""

from __future__ import annotations

from pathlib import Path

from cluster_config.model import AZ_COUNT, MIN_NODES, ZONE_COUNTS
from failover_lambda.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = " ".join((ROOT / "README.md").read_text().split())
DESIGN = " ".join((ROOT / "docs" / "failover-design.md").read_text().split())
DEFAULTS = Settings(state_table_name="t", cluster_id="c", node_names=("a", "b"), route_table_ids=("rtb-1",),
                    vip="172.16.0.1", topic_arn=None)


def test_both_documents_state_the_zone_and_node_counts_the_config_accepts() -> None:
    assert (AZ_COUNT, ZONE_COUNTS, MIN_NODES) == (2, (2, 3), 2)
    assert "two or three zones" in README and "two by default" in README
    assert "at least two, placed round-robin across the private subnets" in README
    assert "The stack builds the nodes `node_names` lists (at least two; two by default), placed round-robin" in DESIGN
    assert "exactly two nodes" not in README + DESIGN and "exactly two, one per AZ" not in README


def test_the_readme_config_rows_say_what_the_config_checks() -> None:
    rows = _config_rows()
    assert "2 or 3" in rows["private_subnet_cidrs"]
    assert "node i goes into the (i mod zones)-th" in rows["private_subnet_cidrs"]
    assert "as many as `private_subnet_cidrs`" in rows["public_subnet_cidrs"]
    assert "at least two" in rows["node_names"] and "priority order" in rows["node_names"]
    assert "as many as the subnet lists" in rows["availability_zones"]


def _config_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration (`cdk.json` context", 1)[1].split("\n## ", 1)[0]
    return {row.split("|")[1].strip(" `"): row for row in section.splitlines() if row.startswith("| `")}


def test_the_minio_start_grace_and_the_route_view_age_are_the_checker_defaults() -> None:
    grace = f"{DEFAULTS.minio_start_grace_seconds:g}"
    assert f"For {grace} s after a role change (`MINIO_START_GRACE_SECONDS`" in README
    assert f"(`MINIO_START_GRACE_SECONDS`, {grace} s, not a stack setting)" in DESIGN
    cache = f"{DEFAULTS.ec2_cache_seconds:g}"
    assert f"describes the route tables every {cache} s (`EC2_CACHE_SECONDS`)" in README
    assert f"(`EC2_CACHE_SECONDS`, {cache} s)" in DESIGN
