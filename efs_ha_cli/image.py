"""`efs-ha image pin`: pin the nodes' image to the current Amazon Linux 2023 AMI of a region, in cdk.json.

The stack never resolves "the latest" image at deploy time (constructs/node_image.py): updating the image is this
deliberate act, then a `cdk diff` that shows the two launch templates changing (each node group then replaces its
instance), then a `cdk deploy` that replaces the nodes one at a time.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from efs_ha_cli.context import App
from efs_ha_cli.errors import CliError
from efs_ha_cli.preflight_checks import AMI_PARAMETER as AL2023_PARAMETER
from efs_ha_cli.preflight_config import _cluster_config, project_root, read_cdk_json
from efs_ha_cli.render import print_json

# cluster_config.image.KEY; a literal here so that `efs-ha --help` never needs the checkout (tests pin the two).
KEY = "node_image_ids"

SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class PinResult:
    path: Path
    region: str
    image_id: str
    previous: str | None  # None: the region was not pinned (the image was looked up once at stack creation)
    written: bool
    node_names: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.previous != self.image_id

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "file": str(self.path), "region": self.region, "image_id": self.image_id,
                "previous": self.previous, "changed": self.changed, "written": self.written,
                "replaces": list(self.node_names) if self.changed else []}


def current_image(ssm: Any) -> str:
    """The AL2023 AMI the public parameter names today (the same parameter the stack reads at creation)."""
    try:
        return str(ssm.get_parameter(Name=AL2023_PARAMETER)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        raise CliError(f"{AL2023_PARAMETER} does not exist in this region: Amazon Linux 2023 is not published "
                       f"here; pass --region with a region that has it") from None


def pin_image(path: Path, region: str, image_id: str, *, write: bool) -> PinResult:
    """Set context.node_image_ids[region] in the cdk.json at `path`, keeping every other key as it was."""
    document, context = read_cdk_json(
        path, f"no cdk.json at {path}: run efs-ha image pin from the project root, or pass --file")
    _cluster_config()  # the checkout's cluster_config validates the map exactly as `cdk synth` does
    images = importlib.import_module("cluster_config.image")
    try:
        pinned = images.parse_node_images(context.get(KEY)).as_dict()
    except images.ImageConfigError as error:
        raise CliError(f"{path}: {error}; fix it by hand first") from None
    previous = pinned.get(region)
    pinned[region] = image_id
    context[KEY] = dict(sorted(pinned.items()))
    names = context.get("node_names")
    node_names = tuple(names) if isinstance(names, list) else ()
    written = write and previous != image_id
    if written:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return PinResult(path, region, image_id, previous, written, node_names)


def render_text(result: PinResult) -> str:
    where = f"{KEY}.{result.region} in {result.path}"
    if not result.changed:
        return (f"{where} is already {result.image_id}, the current Amazon Linux 2023 image: nothing to do; "
                f"a deploy replaces no node")
    before = result.previous or "not pinned (the image looked up once when the stack was created)"
    order = " then ".join(result.node_names) or "the nodes in node_names order"
    lines = [f"{where}: {before} -> {result.image_id}" + ("" if result.written else " (dry run: not written)"),
             "next: `cdk diff` lists each node's LaunchTemplate as modified (its group replaces the instance);",
             f"      `cdk deploy` replaces the nodes one at a time, {order}: each new instance starts and reports",
             "      ready before the old one is terminated; the active node's old instance hands the role over",
             "      at shutdown (a switchover, not a failover). Switch over first to choose which node serves."]
    return "\n".join(lines)


@click.group("image", context_settings=SETTINGS)
def image() -> None:
    """The nodes' image: pinned per region in cdk.json (node_image_ids), never resolved at deploy time."""


@image.command("pin", context_settings=SETTINGS)
@click.option("--region", default=None, metavar="REGION",
              help="Region to pin. Default: efs-ha's --region, then AWS_REGION, then AWS_DEFAULT_REGION.")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="cdk.json to update. Default: ./cdk.json, else the checkout's.")
@click.option("--dry-run", is_flag=True, help="Look the image up and show the change; write nothing.")
@click.pass_obj
def pin(app: App, region: str | None, path: Path | None, dry_run: bool) -> None:
    """Pin the nodes' image to the current Amazon Linux 2023 AMI of the region.

    Reads the public SSM parameter /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64 (the one
    the stack reads once at creation when the region is not pinned) and writes its AMI ID into
    context.node_image_ids of cdk.json. Nothing else changes until `cdk deploy`, which then replaces the nodes
    one at a time. Needs ssm:GetParameter.
    """
    if region:
        app.requested_region = region
    result = pin_image(path or project_root() / "cdk.json", app.region, current_image(app.client("ssm")),
                       write=not dry_run)
    if app.json_output:
        print_json(result.to_json())
    else:
        click.echo(render_text(result))
