"""The checker's Lambda asset: the failover_lambda package plus its pinned dependencies, built locally (no Docker).

Powertools used to come from AWS's public layer, whose ARN names a commercial-partition account and whose versions
exist only in some regions; bundled, the function deploys in any partition and region. The dependencies are
installed once per requirements file into a cache outside the project (pip with the Lambda runtime's Python version
and platform, wheels only) and copied into each bundle, so repeated synths (the test suite makes several) cost a
copy, not an install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

RUNTIME = lambda_.Runtime.PYTHON_3_13
# The Lambda runtime's interpreter and platform, for pip's wheel selection (not this machine's).
PYTHON_VERSION = "3.13"
PLATFORM = "manylinux2014_x86_64"
REQUIREMENTS = "requirements.txt"


class BundleError(RuntimeError):
    """The dependencies could not be installed; the message says what to do."""


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "efs-ha-cluster" / "checker-deps"


def dependencies_dir(requirements: Path, root: Path | None = None) -> Path:
    """The installed dependencies for exactly this requirements file and target (installed on first use)."""
    key = hashlib.sha256(f"{PYTHON_VERSION} {PLATFORM}\n".encode() + requirements.read_bytes()).hexdigest()[:16]
    target = (root or cache_root()) / key
    if not (target / ".complete").exists():
        _install(requirements, target)
    return target


def _install(requirements: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Installed beside the target and renamed into place: a concurrent or interrupted synth never sees half.
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--target", str(staging), "--requirement", str(requirements), "--only-binary=:all:",
               "--platform", PLATFORM, "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(f"could not install the checker's dependencies ({requirements}) with pip: "
                          f"{result.stderr.strip()[-600:]} -- synth needs a reachable package index once "
                          f"(pip's usual config: PIP_INDEX_URL, a proxy), then uses the cache in {target.parent}")
    (staging / ".complete").write_text("ok\n")
    try:
        staging.rename(target)
    except OSError:  # another synth finished the same install first
        shutil.rmtree(staging, ignore_errors=True)


@jsii.implements(ILocalBundling)
class _LocalBundle:
    def __init__(self, package: Path) -> None:
        self._package = package

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        # jsii passes the bundling options positionally; a local bundle needs none of them.
        out = Path(output_dir)
        shutil.copytree(dependencies_dir(self._package / REQUIREMENTS), out, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".complete", "__pycache__", "*.pyc", "bin"))
        shutil.copytree(self._package, out / self._package.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", REQUIREMENTS))
        return True


def checker_code(package: Path) -> lambda_.Code:
    """The asset's hash covers the package directory, requirements file included: an unchanged package keeps its
    hash (and CDK skips a bundle it already staged), a new pin gives a new asset."""
    return lambda_.Code.from_asset(str(package), exclude=["__pycache__", "*.pyc"], bundling=BundlingOptions(
        image=RUNTIME.bundling_image, local=_LocalBundle(package)))
