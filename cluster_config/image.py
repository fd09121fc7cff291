"""The node image pin (`node_image_ids`): which AMI the nodes run, per region, written by `efs-ha image pin`.

The template never asks SSM for "the latest" image at deploy time: that made every deploy after an Amazon Linux
release replace both nodes. With a region in the map, the nodes run exactly that AMI; with the region absent
(the checked-in default is an empty map), the stack looks the image up once, when it is first created, and keeps
it (constructs/node_image.py). Either way a deploy with no config change replaces nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEY = "node_image_ids"
# The public parameter the stack has always resolved, and the one `efs-ha image pin` reads.
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
_AMI_RE = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
# us-east-1, eu-central-2, ap-southeast-4, cn-north-1, us-gov-west-1, il-central-1.
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


class ImageConfigError(ValueError):
    """One bad entry of node_image_ids; the message names the key, the entry and the fix."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"config error: '{KEY}' {problem}")
        self.problem = problem


@dataclass(frozen=True)
class NodeImages:
    """region -> AMI ID, sorted by region so the template (a CfnMapping) never depends on input order."""

    ids: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, str]:
        return dict(self.ids)

    def for_region(self, region: str) -> str | None:
        return self.as_dict().get(region)


def parse_node_images(value: Any) -> NodeImages:
    """cdk.json gives a JSON object; `-c node_image_ids='{"eu-west-1": "ami-..."}'` gives it as a string."""
    if value is None or value == "":
        return NodeImages()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ImageConfigError(f"is not a JSON object such as {{\"eu-west-1\": \"ami-0123456789abcdef0\"}}: "
                                   f"{value!r}") from None
    if not isinstance(value, Mapping):
        raise ImageConfigError(f"must map region to AMI ID, e.g. {{\"eu-west-1\": \"ami-0123456789abcdef0\"}} "
                               f"(got {value!r}); `efs-ha image pin --region R` writes it")
    ids: dict[str, str] = {}
    for region, ami in value.items():
        if not isinstance(region, str) or not _REGION_RE.match(region):
            raise ImageConfigError(f"has {region!r}, which is not a region name such as eu-west-1")
        if not isinstance(ami, str) or not _AMI_RE.match(ami.strip()):
            raise ImageConfigError(f"maps {region} to {ami!r}, which is not an AMI ID such as "
                                   f"ami-0123456789abcdef0; `efs-ha image pin --region {region}` writes the "
                                   f"current Amazon Linux 2023 image")
        ids[region] = ami.strip()
    return NodeImages(tuple(sorted(ids.items())))
