"""The real userdata/files/minio-tls.sh, rendered and run locally: a stand-in `aws` that keeps Secrets Manager's
version semantics (ClientRequestToken compare-and-set) in a JSON file, and test certificates made by the script's
own openssl commands (the ones the nodes run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from userdata.render import NodeUserDataInputs, render_file

TLS_SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:tls-AbCdEf"
CA_SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:tls-ca-AbCdEf"
VIP = "172.16.0.1"
PLACEHOLDER = json.dumps({"state": "pending", "nonce": "x" * 32})

# Secrets Manager's PutSecretValue rules for ClientRequestToken (AWS API reference): a new token makes a new
# AWSCURRENT version, the same token with the same value is ignored, with another value it fails.
FAKE_AWS = textwrap.dedent('''
    import json, os, sys
    args = sys.argv[1:]
    state_path = os.environ["FAKE_AWS_STATE"]
    with open(os.environ["FAKE_AWS_CALLS"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    def option(name):
        return args[args.index(name) + 1] if name in args else None
    with open(state_path) as handle:
        state = json.load(handle)
    secret = state["secrets"][option("--secret-id")]
    if args[:2] == ["secretsmanager", "get-secret-value"]:
        stale = state.get("stale_reads", 0)
        if stale:
            state["stale_reads"] = stale - 1
            version = secret["versions"][0]
        else:
            version = next(v for v in secret["versions"] if v["id"] == secret["current"])
        print(json.dumps({"ARN": option("--secret-id"), "VersionId": version["id"], "SecretString": version["value"]}))
    elif args[:2] == ["secretsmanager", "put-secret-value"]:
        token, source = option("--client-request-token"), option("--secret-string")
        assert source.startswith("file://"), "secret values are passed as files, never on the command line"
        with open(source[len("file://"):]) as handle:
            value = handle.read()
        existing = next((v for v in secret["versions"] if v["id"] == token), None)
        if existing is not None and existing["value"] != value:
            print("An error occurred (ResourceExistsException) when calling the PutSecretValue operation: "
                  "A resource with the ID you requested already exists.", file=sys.stderr)
            sys.exit(254)
        if existing is None:
            secret["versions"].append({"id": token, "value": value})
            secret["current"] = token
        print(json.dumps({"VersionId": token}))
    else:
        sys.exit("unexpected call: " + " ".join(args))
    with open(state_path, "w") as handle:
        json.dump(state, handle)
''')


def tls_inputs(**overrides: Any) -> NodeUserDataInputs:
    values: dict[str, Any] = dict(
        node_name="node1", file_system_id="fs-0123456789abcdef0", mount_point="/mnt/efs", vip=VIP,
        minio_source="https://example.invalid/minio", minio_sha256="a" * 64, agent_source="s3://bucket/agent.zip",
        region="us-east-1", secret_arn="arn:aws:secretsmanager:us-east-1:111122223333:secret:minio",
        state_table_name="state", heartbeat_interval_seconds=0.5, lease_seconds=1.5, watchdog="required",
        watchdog_timeout_seconds=2, systemd_watchdog_seconds=3, tls=True, tls_secret_arn=TLS_SECRET,
        tls_ca_secret_arn=CA_SECRET)
    values.update(overrides)
    return NodeUserDataInputs(**values)


@dataclass
class TlsNode:
    """One node's /run, an `aws` on PATH shared with the other nodes (one account), and the rendered script."""

    root: Path
    account: Path
    script: Path

    @property
    def certs_dir(self) -> Path:
        return self.root / "run/minio/certs"

    @property
    def ca_copy(self) -> Path:
        return self.root / "run/efs-ha/minio-ca.crt"

    def run(self, command: str, *, stale_reads: int = 0) -> subprocess.CompletedProcess[str]:
        state = json.loads((self.account / "state.json").read_text())
        state["stale_reads"] = stale_reads
        (self.account / "state.json").write_text(json.dumps(state))
        prelude = (f"source {self.script}\ncerts_dir={self.root}/run/minio/certs\n"
                   f"ca_copy={self.root}/run/efs-ha/minio-ca.crt\nwork_parent={self.root}/run/efs-ha\n"
                   f"owner=$(id -un)\n")
        env = {**os.environ, "PATH": f"{self.account / 'bin'}:{os.environ['PATH']}",
               "FAKE_AWS_STATE": str(self.account / "state.json"), "FAKE_AWS_CALLS": str(self.account / "calls")}
        return subprocess.run(["bash", "-c", f"set -euo pipefail\n{prelude}{command}"], capture_output=True,
                              text=True, env=env, timeout=60)

    def secret(self, arn: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.account / "state.json").read_text())["secrets"][arn]
        return result

    def current_value(self, arn: str) -> dict[str, Any]:
        secret = self.secret(arn)
        value = next(v["value"] for v in secret["versions"] if v["id"] == secret["current"])
        result: dict[str, Any] = json.loads(value)
        return result

    def calls(self) -> list[list[str]]:
        path = self.account / "calls"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def new_account(folder: Path) -> Path:
    """The fake account: both secrets as the deploy creates them (a placeholder without a certificate)."""
    (folder / "bin").mkdir(parents=True)
    fake = folder / "bin" / "aws"
    fake.write_text(f"#!{sys.executable}\n{FAKE_AWS}")
    fake.chmod(0o755)
    state = {"secrets": {arn: {"current": "v0-initial-version", "versions": [
        {"id": "v0-initial-version", "value": PLACEHOLDER}]} for arn in (TLS_SECRET, CA_SECRET)}}
    (folder / "state.json").write_text(json.dumps(state))
    return folder


def tls_node(folder: Path, account: Path, inputs: NodeUserDataInputs | None = None) -> TlsNode:
    folder.mkdir(parents=True)
    script = folder / "minio-tls"
    script.write_text(render_file("minio-tls.sh", (inputs or tls_inputs()).placeholders()))
    return TlsNode(folder, account, script)


def generated_material(folder: Path) -> dict[str, str]:
    """A CA and server certificate from the script's own `generate` (the secret's JSON: PEMs and server name)."""
    node = tls_node(folder / "node", new_account(folder / "account"))
    work = folder / "work"
    work.mkdir()
    result = node.run(f"generate {work}")
    assert result.returncode == 0, result.stderr
    material: dict[str, str] = json.loads((work / "secret.json").read_text())
    return material
