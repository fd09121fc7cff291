"""The SSM parameters preflight reads (node image, CDK bootstrap version) are the ones the synthesized template
deploys with."""

from __future__ import annotations

from typing import Any

from efs_ha_cli.preflight_checks import AMI_PARAMETER, DEFAULT_BOOTSTRAP_QUALIFIER, MIN_BOOTSTRAP_VERSION


def test_preflight_asks_for_the_image_parameter_of_the_template(template_json: dict[str, Any]) -> None:
    images = [parameter["Default"] for parameter in template_json["Parameters"].values()
              if parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"]

    assert images == [AMI_PARAMETER]


def test_preflight_asks_for_the_bootstrap_parameter_of_the_template(template_json: dict[str, Any]) -> None:
    bootstrap = template_json["Parameters"]["BootstrapVersion"]["Default"]
    rule = template_json["Rules"]["CheckBootstrapVersion"]["Assertions"][0]["AssertDescription"]

    assert bootstrap == f"/cdk-bootstrap/{DEFAULT_BOOTSTRAP_QUALIFIER}/version"
    assert f"version {MIN_BOOTSTRAP_VERSION} required" in rule
