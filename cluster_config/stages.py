"""Stages: several deployments of the cluster (dev, prod...) described by one app, and the CI access settings.

Both are optional CDK context keys, each either an object or the path of a JSON file holding it (relative to the
project root), e.g. `cdk synth -c stages=deploy/stages.json`. Without `stages` the app builds the single cluster
of cdk.json exactly as before. Each stage's config is cdk.json's context with the stage's overrides on top, built
and validated by cluster_config.load_config; a bad value names the stage and the key:
`config error: 'stages.prod.vip' ...`.

`python -m cluster_config.stages deploy/stages.json` prints the stages as JSON (name, stack, region, account) for
a CI job matrix.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster_config.model import DEFAULTS, ClusterConfig, ConfigError, ContextGetter, load_config

STAGES_KEY = "stages"
CI_ACCESS_KEY = "ci_access"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Stage names become stack-name suffixes and GitHub environment names.
_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
_STAGE_KEYS = ("account", "region", "config")
# GitHub's owner/repository naming: letters, digits, '-', '_' and '.'.
_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_QUALIFIER_RE = re.compile(r"^[a-z0-9]{1,10}$")  # cdk bootstrap --qualifier: at most 10 lower-case alphanumerics
_OIDC_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\.actions\.githubusercontent\.com$")
_STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")


@dataclass(frozen=True)
class Stage:
    name: str
    account: str | None  # None: the account of the deploying credentials (the stack stays env-agnostic)
    region: str | None  # None: the region of the deploying credentials
    config: ClusterConfig

    @property
    def stack_name(self) -> str:
        return self.config.stack_name

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.name, "stack": self.stack_name, "region": self.region or "",
                "account": self.account or ""}


@dataclass(frozen=True)
class CiAccessSettings:
    """Who may deploy from CI: the GitHub repository, the branch and environments of deploys, the CDK bootstrap."""

    stack_name: str
    repository: str  # owner/name
    deploy_branch: str
    # GitHub environments of the deploy jobs (one per stage); a job with `environment:` presents this subject.
    deploy_environments: tuple[str, ...]
    oidc_provider_arn: str | None  # reuse this account's existing provider; None: the stack creates one
    bootstrap_qualifier: str
    # Accounts whose bootstrap roles the CI roles may assume (default: the access stack's own account). Each
    # must be bootstrapped with `--trust <this account>`.
    target_accounts: tuple[str, ...]
    regions: tuple[str, ...]  # regions of the bootstrap roles; empty: the access stack's own region
    cluster_stack_names: tuple[str, ...]  # the stacks efs-ha status/verify may read

    @property
    def pull_request_subject(self) -> str:
        return f"repo:{self.repository}:pull_request"

    @property
    def deploy_subjects(self) -> tuple[str, ...]:
        """A job that declares `environment:` presents the environment's subject, not the branch's; so with
        environments configured only they are trusted (restrict each to the deploy branch in GitHub)."""
        if self.deploy_environments:
            return tuple(f"repo:{self.repository}:environment:{env}" for env in self.deploy_environments)
        return (f"repo:{self.repository}:ref:refs/heads/{self.deploy_branch}",)


def _error(key: str, problem: str) -> ConfigError:
    return ConfigError(key, problem)


def read_section(get_context: ContextGetter, key: str, project_root: Path = PROJECT_ROOT) -> Any:
    """The context value, or the JSON file it names; None when the key is not set (or empty)."""
    value = get_context(key)
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str) and not value.strip().startswith("{"):
        path = (project_root / value.strip()).resolve()
        try:
            return json.loads(path.read_text())
        except OSError as exc:
            raise _error(key, f"names {path}, which cannot be read ({exc.strerror}); give an object or the path "
                              "of a JSON file relative to the project root") from None
        except json.JSONDecodeError as exc:
            raise _error(key, f"file {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _error(key, f"is not valid JSON ({exc.msg})") from None
    return value


def load_stages(get_context: ContextGetter, *, project_root: Path = PROJECT_ROOT) -> list[Stage]:
    """Every stage, validated; an empty list when no stages are configured (the single-cluster flow)."""
    raw = read_section(get_context, STAGES_KEY, project_root)
    if raw is None:
        return []
    if not isinstance(raw, dict) or not raw:
        raise _error(STAGES_KEY, f"must be an object of stages, e.g. {{\"dev\": {{\"region\": \"eu-west-1\", "
                                 f"\"config\": {{...}}}}}}, got {raw!r}")
    base_name = _base_stack_name(get_context)
    stages = [_stage(name, spec, get_context, base_name, project_root) for name, spec in raw.items()]
    _distinct_stack_names(stages)
    return stages


def _base_stack_name(get_context: ContextGetter) -> str:
    name = get_context("stack_name")
    return name.strip() if isinstance(name, str) and name.strip() else str(DEFAULTS["stack_name"])


def _stage(name: Any, spec: Any, get_context: ContextGetter, base_name: str, project_root: Path) -> Stage:
    if not isinstance(name, str) or not _STAGE_NAME_RE.match(name):
        raise _error(f"{STAGES_KEY}.{name}", "stage names must be lower-case letters, digits and '-', starting "
                                             "with a letter, at most 20 characters (e.g. dev, prod)")
    key = f"{STAGES_KEY}.{name}"
    if not isinstance(spec, dict):
        raise _error(key, f"must be an object with account, region and config (all optional), got {spec!r}")
    unknown = sorted(set(spec) - set(_STAGE_KEYS))
    if unknown:
        raise _error(f"{key}.{unknown[0]}", f"is not a stage setting; a stage has {', '.join(_STAGE_KEYS)}")
    account = _optional_match(spec, "account", key, _ACCOUNT_RE, "must be a 12-digit AWS account id or empty")
    region = _optional_match(spec, "region", key, _REGION_RE, "must be an AWS region such as eu-west-1 or empty")
    overrides = spec.get("config") or {}
    if not isinstance(overrides, dict):
        raise _error(f"{key}.config", f"must be an object of config keys (as in cdk.json's context), got "
                                      f"{overrides!r}")
    for override in overrides:
        if override not in DEFAULTS:
            raise _error(f"{key}.{override}", "is not a config key; see the README's Configuration table")
    overrides = {"stack_name": f"{base_name}-{name}", **overrides}
    return Stage(name, account, region, _stage_config(name, overrides, get_context, project_root))


def _optional_match(spec: dict[str, Any], field: str, key: str, pattern: re.Pattern[str], rule: str) -> str | None:
    value = spec.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise _error(f"{key}.{field}", f"{rule}, got {value!r}")
    return value


def _stage_config(name: str, overrides: dict[str, Any], get_context: ContextGetter,
                  project_root: Path) -> ClusterConfig:
    def get(key: str) -> Any:
        return overrides[key] if key in overrides else get_context(key)

    try:
        return load_config(get, project_root=project_root)
    except ConfigError as error:
        raise _error(f"{STAGES_KEY}.{name}.{error.key}", _problem(error)) from None


def _problem(error: ConfigError) -> str:
    """The text after `config error: 'key' `, to re-issue the same message under the stage's key."""
    return str(error).split(f"'{error.key}' ", 1)[-1]


def _distinct_stack_names(stages: list[Stage]) -> None:
    seen: dict[str, str] = {}
    for stage in stages:
        if stage.stack_name in seen:
            raise _error(f"{STAGES_KEY}.{stage.name}.stack_name",
                         f"{stage.stack_name} is also stage {seen[stage.stack_name]}'s stack; every stage needs "
                         "its own stack name (drop the override: the default is <stack_name>-<stage>)")
        seen[stage.stack_name] = stage.name


# ----- CI access -----

_ACCESS_KEYS = ("stack_name", "repository", "deploy_branch", "deploy_environments", "oidc_provider_arn",
                "bootstrap_qualifier", "target_accounts", "regions")


def load_ci_access(get_context: ContextGetter, stages: list[Stage], *,
                   project_root: Path = PROJECT_ROOT) -> CiAccessSettings | None:
    """The CI access stack's settings; None when `ci_access` is not set (the stack is then not synthesized)."""
    raw = read_section(get_context, CI_ACCESS_KEY, project_root)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _error(CI_ACCESS_KEY, f"must be an object with at least repository, got {raw!r}")
    unknown = sorted(set(raw) - set(_ACCESS_KEYS))
    if unknown:
        raise _error(f"{CI_ACCESS_KEY}.{unknown[0]}", f"is not a CI access setting; known: {', '.join(_ACCESS_KEYS)}")
    field = _AccessFields(raw)
    return CiAccessSettings(
        stack_name=field.text("stack_name", "EfsHaCiAccess", _STACK_NAME_RE, "must be a CloudFormation stack name"),
        repository=field.text("repository", None, _REPOSITORY_RE, "must be the GitHub repository as owner/name"),
        deploy_branch=field.text("deploy_branch", "main", _BRANCH_RE, "must be a branch name such as main"),
        deploy_environments=field.names("deploy_environments", tuple(s.name for s in stages), _STAGE_NAME_RE,
                                        "must list GitHub environment names such as dev, prod"),
        oidc_provider_arn=field.text("oidc_provider_arn", "", _OIDC_ARN_RE, "must be the ARN of this account's "
                                     "token.actions.githubusercontent.com OIDC provider, or empty to create one")
        or None,
        bootstrap_qualifier=field.text("bootstrap_qualifier", "hnb659fds", _QUALIFIER_RE,
                                       "must be the cdk bootstrap --qualifier (default hnb659fds)"),
        target_accounts=field.names("target_accounts", (), _ACCOUNT_RE, "must list 12-digit AWS account ids"),
        regions=field.names("regions", tuple(sorted({s.region for s in stages if s.region})), _REGION_RE,
                            "must list AWS regions such as eu-west-1"),
        cluster_stack_names=tuple(s.stack_name for s in stages) or (_base_stack_name(get_context),),
    )


class _AccessFields:
    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw

    def text(self, field: str, default: str | None, pattern: re.Pattern[str], rule: str) -> str:
        value = self._raw.get(field, default)
        if value is None:
            raise _error(f"{CI_ACCESS_KEY}.{field}", f"is required: it {rule.removeprefix('must be ')}")
        if not isinstance(value, str) or (value and not pattern.match(value)) or (not value and default != ""):
            raise _error(f"{CI_ACCESS_KEY}.{field}", f"{rule}, got {value!r}")
        return value

    def names(self, field: str, default: tuple[str, ...], pattern: re.Pattern[str], rule: str) -> tuple[str, ...]:
        value = self._raw.get(field)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and pattern.match(v) for v in value):
            raise _error(f"{CI_ACCESS_KEY}.{field}", f"{rule}, got {value!r}")
        return tuple(value)


def main(argv: list[str] | None = None) -> int:
    """Print the stages of a stages file (or object) as a JSON list, for a CI job matrix."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cluster_config.stages STAGES_FILE", file=sys.stderr)
        return 64
    context: dict[str, Any] = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    context[STAGES_KEY] = args[0]
    try:
        stages = load_stages(context.get)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    print(json.dumps([stage.to_json() for stage in stages]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
