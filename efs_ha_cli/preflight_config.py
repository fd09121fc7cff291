"""The project's own configuration for `efs-ha preflight`: cdk.json's context plus `-c key=value` overrides,
validated by cluster_config exactly as `cdk synth` does (app.py), without synthesizing anything."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from efs_ha_cli.errors import BadArgument, CliError
from efs_ha_cli.preflight_checks import Check, ok, problem
from efs_ha_cli.stack import REPO_ROOT

if TYPE_CHECKING:
    from cluster_config import ClusterConfig

# The keys of the MinIO source: checked on their own (minio-source), apart from the rest of the config.
MINIO_KEYS = frozenset({"minio_version", "minio_url", "minio_sha256", "minio_local_file"})


@dataclass(frozen=True)
class ProjectConfig:
    """What preflight knows of the configuration: the two checks, the context and (when valid) the config."""

    root: Path
    context: Mapping[str, Any]
    config_check: Check
    minio_check: Check
    # Every key but MinIO's validated (MinIO's at their defaults): what the AWS checks need. None when invalid.
    config: ClusterConfig | None


def parse_overrides(pairs: tuple[str, ...], known: frozenset[str]) -> dict[str, str]:
    """`-c key=value` as the CDK CLI takes it: the value stays a string (cluster_config converts it)."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadArgument(f"-c {pair!r}: write it as -c key=value, e.g. -c instance_type=m7i.large")
        if key not in known and not key.startswith("@"):
            raise BadArgument(f"-c {key}: not a config key of this project; the keys are in README "
                              "'Configuration' (cdk.json context)")
        overrides[key] = value
    return overrides


def project_root(cwd: Path | None = None) -> Path:
    """The folder whose cdk.json configures the stack: this one when it has one (the CLI runs from the project
    root), else the checkout the CLI was installed from."""
    here = cwd or Path.cwd()
    return here if (here / "cdk.json").is_file() else REPO_ROOT


def read_cdk_json(path: Path, missing: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cdk.json document and its context object; `missing` is the one-line error when there is no file."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(missing) from None
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read {path}: {error}") from None
    context = document.get("context", {}) if isinstance(document, dict) else None
    if not isinstance(context, dict):
        raise CliError(f"{path}: 'context' must be a JSON object")
    return document, context


def read_context(root: Path) -> dict[str, Any]:
    _, context = read_cdk_json(root / "cdk.json", f"no cdk.json in {root}: run efs-ha preflight from the project root")
    return context


def _cluster_config() -> Any:
    """cluster_config lives next to efs_ha_cli in the checkout but is not installed (pyproject: only the runtime
    packages are), so the console script finds it through the checkout's root."""
    try:
        return importlib.import_module("cluster_config")
    except ImportError:
        if str(REPO_ROOT) not in sys.path:
            sys.path.append(str(REPO_ROOT))
    try:
        return importlib.import_module("cluster_config")
    except ImportError:
        raise CliError(f"preflight needs the project checkout (cluster_config/ next to efs_ha_cli/ in {REPO_ROOT}); "
                       "install the CLI from it with `pip install -e .`") from None


def known_keys() -> frozenset[str]:
    _cluster_config()
    return frozenset(importlib.import_module("cluster_config.model").DEFAULTS)


def load_project_config(overrides: Mapping[str, str], cwd: Path | None = None) -> ProjectConfig:
    module = _cluster_config()
    root = project_root(cwd)
    context = {**read_context(root), **overrides}

    def getter(keys: Callable[[str], bool]) -> Callable[[str], Any]:
        return lambda key: context.get(key) if keys(key) else None

    def load(keys: Callable[[str], bool]) -> tuple[ClusterConfig | None, str | None]:
        try:
            return module.load_config(getter(keys), project_root=root), None
        except module.ConfigError as error:
            return None, str(error)

    # Each half is validated with the other half at its defaults, so one bad key never hides the other check.
    rest, rest_error = load(lambda key: key not in MINIO_KEYS)
    minio, minio_error = load(lambda key: key in MINIO_KEYS)
    return ProjectConfig(root, context, _config_check(root, rest, rest_error), _minio_check(minio, minio_error),
                         rest)


def _config_check(root: Path, config: ClusterConfig | None, error: str | None) -> Check:
    name = "config"
    if config is None:
        return problem(name, error or "invalid", f"fix that key in {root / 'cdk.json'} or its -c override")
    zones = ",".join(config.availability_zones) or "first two of the region"
    return ok(name, f"stack {config.stack_name}, {config.instance_type}, zones {zones}, checker reserved "
                    f"concurrency {config.checker_reserved_concurrency} ({root / 'cdk.json'})")


def _minio_check(config: ClusterConfig | None, error: str | None) -> Check:
    name = "minio-source"
    if config is None:
        return problem(name, error or "invalid", "fix minio_url / minio_local_file / minio_sha256 (README "
                                                 "'MinIO binary')")
    minio = config.minio
    where = (f"https download {minio.url}" if minio.url
             else f"local file {minio.local_file} (sha256 matches; shipped as a CDK asset)")
    return ok(name, f"{minio.version}: {where}; each node checks sha256 {minio.sha256[:12]}... before install")
