"""Numbers the README and docs/failover-design.md state about the code, checked against the code."""

from __future__ import annotations

from pathlib import Path

from cluster_config.model import AZ_COUNT
from failover_lambda.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = " ".join((ROOT / "README.md").read_text().split())
DESIGN = " ".join((ROOT / "docs" / "failover-design.md").read_text().split())
DEFAULTS = Settings(state_table_name="t", cluster_id="c", node_names=("a", "b"), route_table_ids=("rtb-1",),
                    vip="172.16.0.1", topic_arn=None)


def test_both_documents_say_the_stack_builds_exactly_two_nodes() -> None:
    assert AZ_COUNT == 2
    assert "exactly two, one per AZ" in README
    assert "The stack builds exactly two nodes, one per AZ" in DESIGN
    assert "nothing assumes exactly two" not in README + DESIGN


def test_the_minio_start_grace_and_the_route_view_age_are_the_checker_defaults() -> None:
    grace = f"{DEFAULTS.minio_start_grace_seconds:g}"
    assert f"For {grace} s after a role change (`MINIO_START_GRACE_SECONDS`" in README
    assert f"(`MINIO_START_GRACE_SECONDS`, {grace} s, not a stack setting)" in DESIGN
    cache = f"{DEFAULTS.ec2_cache_seconds:g}"
    assert f"describes the route tables every {cache} s (`EC2_CACHE_SECONDS`)" in README
    assert f"(`EC2_CACHE_SECONDS`, {cache} s)" in DESIGN
