"""Shared fixtures: each distinct app configuration is synthesized once per test session (synth costs seconds,
assertions do not). Also: which tests are slow gates (`make test-fast` skips them) and how the suite is laid
out on pytest-xdist workers (`make test` runs it on three).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from cluster_config import ClusterConfig, load_config

if TYPE_CHECKING:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from stacks.cluster_stack import EfsHaClusterStack

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# One alternative configuration that differs from cdk.json in every key a test needs to vary: it is
# synthesized once (`variant_template_json`) instead of once per test that varies a key.
VARIANT_CONTEXT: dict[str, Any] = {"alarm_email": "oncall@example.com", "mount_point": "/srv/efs-data",
                                   "probe_interval_seconds": 2, "heartbeat_stale_seconds": 3}

# Slow gates: `make test` (and so CI) runs them, `make test-fast` deselects them (-m "not slow_gate").
SLOW_GATES = {
    # `python app.py` exactly as `cdk synth` runs it (another Python and Node.js process): cdk-nag, cfn-lint.
    "tests/test_review_gates.py::test_cdk_nag_reports_no_unacknowledged_errors_or_warnings",
    "tests/test_review_gates.py::test_cfn_lint_finds_no_errors_or_warnings_in_any_synthesized_template",
    # One real failover in network namespaces against a moto server.
    "tests/drill/test_drill_smoke.py::test_kill_of_the_active_node_loses_nothing_and_never_serves_twice",
}
# The session fixtures that hold an in-process synthesized app.
CDK_FIXTURES = {"app", "stack", "template", "template_json", "variant_template_json"}


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    return context


def context_getter(**overrides: Any) -> Callable[[str], Any]:
    """A CDK-context lookalike: cdk.json values with `-c key=value`-style overrides on top."""
    context = {**cdk_json_context(), **overrides}
    return context.get


@pytest.fixture(scope="session")
def config() -> ClusterConfig:
    return load_config(context_getter(), project_root=PROJECT_ROOT)


# aws_cdk is imported where it is used: importing it starts a Node.js process and loads the CDK library into
# it, which the xdist controller (it loads this file too, but runs no test) never needs.

@pytest.fixture(scope="session")
def app() -> cdk.App:
    """The real app exactly as app.py builds it, cdk-nag included."""
    import aws_cdk as cdk

    from app import build_app

    return build_app(cdk.App(context=cdk_json_context()))


@pytest.fixture(scope="session")
def stack(app: cdk.App, config: ClusterConfig) -> EfsHaClusterStack:
    from stacks.cluster_stack import EfsHaClusterStack

    found = app.node.find_child(config.stack_name)
    assert isinstance(found, EfsHaClusterStack)
    return found


@pytest.fixture(scope="session")
def template(stack: EfsHaClusterStack) -> Template:
    from aws_cdk.assertions import Template

    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def template_json(template: Template) -> dict[str, Any]:
    result: dict[str, Any] = template.to_json()
    return result


@pytest.fixture(scope="session")
def variant_template_json(config: ClusterConfig) -> dict[str, Any]:
    """The template of the app built from cdk.json with VARIANT_CONTEXT on top (cdk-nag included)."""
    import aws_cdk as cdk

    from app import build_app

    variant = build_app(cdk.App(context={**cdk_json_context(), **VARIANT_CONTEXT}))
    result: dict[str, Any] = variant.synth().get_stack_by_name(config.stack_name).template
    return result


# ----- slow gates and the layout on xdist workers -----

def xdist_group(item: pytest.Item) -> str | None:
    """Tests of one group run on one worker, one after the other; ungrouped tests are balanced one by one.
    "cdk": every test that uses CDK in process (one jsii runtime; the app, and each variant, synthesized once
    per run instead of once per worker). "slow-gates": the `python app.py` synth and the drill smoke, which
    mostly wait for other processes, on the other worker meanwhile."""
    if item.nodeid in SLOW_GATES:
        return "slow-gates"
    if CDK_FIXTURES & set(getattr(item, "fixturenames", ())) or _module_uses_cdk(getattr(item, "module", None)):
        return "cdk"
    return None


def _module_uses_cdk(module: ModuleType | None) -> bool:
    """The test module imported CDK (aws_cdk, the app, its stacks or constructs), e.g. to build an app."""
    for value in vars(module).values() if module is not None else ():
        origin = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        if isinstance(origin, str) and origin.split(".")[0] in {"aws_cdk", "app", "stacks", "constructs"}:
            return True
    return False


# pytest-xdist 3.8's --dist loadgroup tells the controller a test's group by appending "@group" to its node id
# in the worker; pytest 9.2's structured node ids ignore that (pytest-xdist issue 1386), and loadgroup silently
# degrades to plain load balancing. So here each worker writes the groups it collected to a file, and the
# controller's scheduler reads them: the same LoadScopeScheduling underneath (biggest group first, a group
# never split), and test ids stay as they are.
_GROUPS_DIR = "efs_ha_xdist_groups_dir"
_groups_dir_key = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    from tests.moto_speedup import install

    install()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups: dict[str, str] = {}
    for item in items:
        if item.nodeid in SLOW_GATES:
            item.add_marker(pytest.mark.slow_gate)
        group = xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            groups[item.nodeid] = group
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _GROUPS_DIR in workerinput:
        (Path(workerinput[_GROUPS_DIR]) / f"{workerinput['workerid']}.json").write_text(json.dumps(groups))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller side, once per worker before it starts: where the worker writes its groups."""
    config: pytest.Config = node.config
    if _groups_dir_key not in config.stash:
        config.stash[_groups_dir_key] = tempfile.mkdtemp(prefix="xdist-groups-")
        config.add_cleanup(lambda: shutil.rmtree(config.stash[_groups_dir_key], ignore_errors=True))
    node.workerinput[_GROUPS_DIR] = config.stash[_groups_dir_key]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        groups: dict[str, str]

        def schedule(self) -> None:
            # Called once every worker has collected (each wrote its groups by then), before the first split.
            if not hasattr(self, "groups"):
                self.groups = {}
                for path in sorted(Path(config.stash[_groups_dir_key]).glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)
