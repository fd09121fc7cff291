"""Pinned node image (issue 12, part 3): a deploy with no config change replaces nothing, ever.

The template holds no value that changes when Amazon Linux publishes a new image: no SSM parameter of type
AWS::EC2::Image::Id (resolved at every deploy, as before) and no dynamic reference. By default the image is looked
up once, at stack creation, by a create-only custom resource; with node_image_ids it is the pinned AMI."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from cluster_config import ConfigError, load_config
from cluster_config.image import AL2023_PARAMETER
from stacks.cluster_stack import EfsHaClusterStack
from tests.conftest import context_getter

PINNED = {"us-east-1": "ami-0fedcba9876543210", "eu-west-1": "ami-0123456789abcdef0"}


def _synth(**overrides: Any) -> dict[str, Any]:
    """One stack, no cdk-nag (the review gates run it on the real app): only what these tests compare."""
    app = cdk.App(context={k: v for k, v in overrides.items() if k.startswith("ssm:")})
    config = load_config(context_getter(**{k: v for k, v in overrides.items() if not k.startswith("ssm:")}))
    stack = EfsHaClusterStack(app, config.stack_name, config=config)
    template: dict[str, Any] = app.synth().get_stack_by_name(stack.stack_name).template
    return template


def _image_ids(template: dict[str, Any]) -> list[Any]:
    return [r["Properties"]["LaunchTemplateData"]["ImageId"] for r in template["Resources"].values()
            if r["Type"] == "AWS::EC2::LaunchTemplate"]


def _ssm_lookup_context(image: str) -> dict[str, str]:
    # What a synth-time lookup (MachineImage.lookup, valueFromLookup) would read: a different value each day.
    key = f"ssm:account=123456789012:parameterName={AL2023_PARAMETER}:region=eu-west-1"
    return {key: image}


def test_nothing_in_the_template_resolves_the_latest_image_at_deploy_time(template_json: dict[str, Any]) -> None:
    parameters = template_json.get("Parameters", {})
    assert all("AWS::EC2::Image::Id" not in p["Type"] and "ami" not in p.get("Default", "")
               for p in parameters.values())
    assert "resolve:ssm" not in json.dumps(template_json)


def test_by_default_both_nodes_run_the_image_looked_up_once_at_creation(template_json: dict[str, Any]) -> None:
    resources = template_json["Resources"]
    lookups = {k: r for k, r in resources.items() if r["Type"] == "Custom::AWS" and AL2023_PARAMETER in
               json.dumps(r["Properties"].get("Create", ""))}
    assert len(lookups) == 1
    (logical_id, lookup), = lookups.items()
    # Create only: no Update (CloudFormation keeps the first value), no Delete; fixed properties, so never updated.
    assert "Update" not in lookup["Properties"] and "Delete" not in lookup["Properties"]
    assert _image_ids(template_json) == [{"Fn::GetAtt": [logical_id, "Parameter.Value"]}] * 2


def test_two_synths_on_different_days_give_the_same_template(template_json: dict[str, Any]) -> None:
    # Given the public parameter named one AMI yesterday and another today
    yesterday = _synth(**_ssm_lookup_context("ami-0aaaaaaaaaaaaaaaa"))
    today = _synth(**_ssm_lookup_context("ami-0bbbbbbbbbbbbbbbb"))
    # Then the templates are identical (so CloudFormation sees no change and replaces no node)
    assert json.dumps(yesterday, sort_keys=True) == json.dumps(today, sort_keys=True)
    assert "ami-0aaaaaaaaaaaaaaaa" not in json.dumps(yesterday)


def test_a_pinned_map_is_a_mapping_read_for_the_stacks_region_and_a_rule_refuses_other_regions() -> None:
    template = _synth(node_image_ids=PINNED)
    ((name, mapping),) = template["Mappings"].items()
    assert mapping == {region: {"ami": ami} for region, ami in PINNED.items()}
    assert _image_ids(template) == [{"Fn::FindInMap": [name, {"Ref": "AWS::Region"}, "ami"]}] * 2
    assert not any(r["Type"] == "Custom::AWS" for r in template["Resources"].values())
    (rule,) = [r for k, r in template["Rules"].items() if k != "CheckBootstrapVersion"]
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Contains": [sorted(PINNED), {"Ref": "AWS::Region"}]}
    assert "node_image_ids" in assertion["AssertDescription"]
    assert "efs-ha image pin --region" in assertion["AssertDescription"]
    # The order the map was written in does not matter
    again = _synth(node_image_ids=dict(reversed(list(PINNED.items()))))
    assert json.dumps(again, sort_keys=True) == json.dumps(template, sort_keys=True)


@pytest.mark.parametrize(("value", "message"), [
    ({"eu-west-1": "ami-123"}, "maps eu-west-1 to 'ami-123', which is not an AMI ID"),
    ({"Europe": "ami-0123456789abcdef0"}, "has 'Europe', which is not a region name"),
    (["ami-0123456789abcdef0"], "must map region to AMI ID"),
    ("{not json", "is not a JSON object"),
])
def test_a_bad_pin_is_one_error_naming_the_key(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(context_getter(node_image_ids=value))
    assert str(raised.value).startswith("config error: 'node_image_ids' ")
    assert message in str(raised.value)


def test_the_pin_can_come_from_the_command_line_as_json() -> None:
    config = load_config(context_getter(node_image_ids='{"eu-west-1": "ami-0123456789abcdef0"}'))
    assert config.node_images.as_dict() == {"eu-west-1": "ami-0123456789abcdef0"}
    assert load_config(context_getter()).node_images.ids == ()


def test_a_new_pin_changes_only_the_launch_templates_so_cdk_diff_names_the_nodes() -> None:
    # Given a cluster pinned to one image, when `efs-ha image pin` writes the next release's
    before = _synth(node_image_ids={"eu-west-1": "ami-0123456789abcdef0"})
    after = _synth(node_image_ids={"eu-west-1": "ami-0fedcba9876543210"})
    # Then the only resources that differ are the nodes' launch templates: `cdk diff` shows
    # `[~] AWS::EC2::LaunchTemplate Node<N>LaunchTemplate...` per node (Fn::FindInMap alone is resolved only at
    # deploy time; the launch template data carries the pinned images as text, an instance tag)
    changed = sorted(k for k in before["Resources"] if before["Resources"][k] != after["Resources"].get(k))
    templates = sorted(k for k, r in after["Resources"].items() if r["Type"] == "AWS::EC2::LaunchTemplate")
    assert changed == templates and len(templates) == 2
    for logical_id in templates:
        assert _pin_tag(after, logical_id) == "node_image_ids eu-west-1=ami-0fedcba9876543210"
        assert _pin_tag(before, logical_id) == "node_image_ids eu-west-1=ami-0123456789abcdef0"
    (name,) = after["Mappings"]
    assert after["Mappings"][name] == {"eu-west-1": {"ami": "ami-0fedcba9876543210"}}


def _pin_tag(template: dict[str, Any], logical_id: str) -> str | None:
    data = template["Resources"][logical_id]["Properties"]["LaunchTemplateData"]
    (instance,) = [s for s in data["TagSpecifications"] if s["ResourceType"] == "instance"]
    return next((t["Value"] for t in instance["Tags"] if t["Key"] == "efs-ha:image-pin"), None)


def test_the_image_looked_up_at_creation_carries_no_pin_tag(template_json: dict[str, Any]) -> None:
    templates = [k for k, r in template_json["Resources"].items() if r["Type"] == "AWS::EC2::LaunchTemplate"]
    assert templates and all(_pin_tag(template_json, k) is None for k in templates)


def test_a_long_map_is_summarised_in_tag_safe_characters() -> None:
    from cluster_config.image import NodeImages
    from constructs.node_image import _pin_description

    many = NodeImages(tuple((f"xx-region-{n}", f"ami-{n:017x}") for n in range(12)))
    text = _pin_description(many)
    assert len(text) <= 256 and text.startswith("node_image_ids sha256:") and text.endswith("regions:12")
    assert all(c.isalnum() or c in " +-=._:/@" for c in text)
