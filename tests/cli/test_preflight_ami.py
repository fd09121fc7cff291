"""The SSM parameters preflight reads (node image, CDK bootstrap version) are the ones the synthesized template
deploys with."""

from __future__ import annotations

import json
from typing import Any

from cluster_config.image import AL2023_PARAMETER
from efs_ha_cli.preflight_checks import AMI_PARAMETER, DEFAULT_BOOTSTRAP_QUALIFIER, MIN_BOOTSTRAP_VERSION


def test_preflight_asks_for_the_image_parameter_of_the_template(template_json: dict[str, Any]) -> None:
    # The template reads it once, at creation (constructs/node_image.py); `efs-ha image pin` reads it too.
    lookups = [r["Properties"]["Create"] for r in template_json["Resources"].values() if r["Type"] == "Custom::AWS"
               and "getParameter" in json.dumps(r["Properties"]["Create"])]

    assert len(lookups) == 1 and AMI_PARAMETER in json.dumps(lookups[0])
    assert AMI_PARAMETER == AL2023_PARAMETER


def test_preflight_asks_for_the_bootstrap_parameter_of_the_template(template_json: dict[str, Any]) -> None:
    bootstrap = template_json["Parameters"]["BootstrapVersion"]["Default"]
    rule = template_json["Rules"]["CheckBootstrapVersion"]["Assertions"][0]["AssertDescription"]

    assert bootstrap == f"/cdk-bootstrap/{DEFAULT_BOOTSTRAP_QUALIFIER}/version"
    assert f"version {MIN_BOOTSTRAP_VERSION} required" in rule
