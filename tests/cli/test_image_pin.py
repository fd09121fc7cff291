"""`efs-ha image pin`: the current AL2023 AMI of the region (moto's public SSM parameter) written into cdk.json's
node_image_ids, nothing else touched; idempotent; --dry-run writes nothing; errors name the key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cluster_config import load_config
from cluster_config.image import AL2023_PARAMETER
from cluster_config.image import KEY as CONFIG_KEY
from efs_ha_cli.image import KEY, pin_image
from tests.cli.conftest import REGION, invoke

REPO_CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


@pytest.fixture
def project(aws_env: None, tmp_path: Path) -> Iterator[Path]:
    """A copy of the repository's cdk.json as ./cdk.json (aws_env runs every test in tmp_path), in moto."""
    shutil.copy(REPO_CDK_JSON, tmp_path / "cdk.json")
    with mock_aws():
        yield tmp_path / "cdk.json"


def _published(region: str = REGION) -> str:
    return str(boto3.client("ssm", region_name=region).get_parameter(Name=AL2023_PARAMETER)["Parameter"]["Value"])


def _context(path: Path) -> dict[str, Any]:
    context: dict[str, Any] = json.loads(path.read_text())["context"]
    return context


def test_pin_writes_the_regions_current_al2023_image_and_nothing_else(project: Path) -> None:
    before = _context(project)
    result = invoke("image", "pin")

    assert result.exit_code == 0, result.output
    image = _published()
    assert image.startswith("ami-")
    after = _context(project)
    assert after[KEY] == {REGION: image}
    assert {k: v for k, v in after.items() if k != KEY} == {k: v for k, v in before.items() if k != KEY}
    assert f"{KEY}.{REGION} in {project}: not pinned" in result.output and f"-> {image}" in result.output
    assert "one at a time, node1 then node2" in result.output and "switchover, not a failover" in result.output
    # What synth then reads: the same map, validated by the stack's own config code
    config = load_config(after.get)
    assert config.node_images.for_region(REGION) == image


def test_a_second_pin_with_the_same_image_changes_nothing(project: Path) -> None:
    assert invoke("image", "pin").exit_code == 0
    text = project.read_text()
    result = invoke("image", "pin")

    assert result.exit_code == 0
    assert "nothing to do; a deploy replaces no node" in result.output
    assert project.read_text() == text


def test_pin_for_another_region_keeps_the_first(project: Path) -> None:
    assert invoke("image", "pin").exit_code == 0
    result = invoke("image", "pin", "--region", "us-east-1", "--json")

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["region"] == "us-east-1" and payload["previous"] is None and payload["written"] is True
    assert payload["replaces"] == ["node1", "node2"]
    assert _context(project)[KEY] == {"eu-west-1": _published(), "us-east-1": _published("us-east-1")}


def test_dry_run_shows_the_change_and_writes_nothing(project: Path) -> None:
    text = project.read_text()
    result = invoke("image", "pin", "--dry-run")

    assert result.exit_code == 0
    assert "(dry run: not written)" in result.output
    assert project.read_text() == text


def test_a_new_release_replaces_the_pinned_image(tmp_path: Path) -> None:
    path = tmp_path / "cdk.json"
    shutil.copy(REPO_CDK_JSON, path)
    first = pin_image(path, "eu-west-1", "ami-0123456789abcdef0", write=True)
    later = pin_image(path, "eu-west-1", "ami-0fedcba9876543210", write=True)

    assert (first.previous, first.changed) == (None, True)
    assert (later.previous, later.image_id, later.changed, later.written) == (
        "ami-0123456789abcdef0", "ami-0fedcba9876543210", True, True)
    assert _context(path)[KEY] == {"eu-west-1": "ami-0fedcba9876543210"}


def test_a_broken_map_in_cdk_json_is_one_error_naming_the_key(project: Path) -> None:
    document = json.loads(project.read_text())
    document["context"][KEY] = {"eu-west-1": "not-an-ami"}
    project.write_text(json.dumps(document, indent=2) + "\n")
    result = invoke("image", "pin")

    assert result.exit_code == 1
    assert f"'{KEY}' maps eu-west-1 to 'not-an-ami'" in result.output and "fix it by hand" in result.output


def test_the_cli_writes_the_key_the_stack_reads() -> None:
    assert KEY == CONFIG_KEY
