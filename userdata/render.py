"""Renders the node user-data from the real files in userdata/files/ (the only place user-data is assembled)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

from userdata.systemd_names import mount_unit_name

FILES_DIR = Path(__file__).parent / "files"
_PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")
_HEREDOC_END = "EFS_HA_FILE_END"
# MinIO's --certs-dir: on tmpfs, so the server key never reaches a disk (userdata/files/minio-tls.sh writes it).
MINIO_CERTS_DIR = "/run/minio/certs"
# The CA alone, for the agent's local health check and `efs-ha verify` (root-only directory).
MINIO_CA_FILE = "/run/efs-ha/minio-ca.crt"
# The DNS name every client that connects by a node address verifies the certificate against (the checker's probe);
# the certificate also names the VIP, 127.0.0.1 and localhost.
TLS_SERVER_NAME = "minio.efs-ha.internal"


@dataclass(frozen=True)
class InstalledFile:
    template: str
    destination: str
    mode: str


# Written before bootstrap.sh runs; bootstrap.sh itself is installed too, run by efs-ha-bootstrap.service.
INSTALLED_FILES = (
    InstalledFile("minio.service", "/etc/systemd/system/minio.service", "0644"),
    InstalledFile("efs-ha-agent.service", "/etc/systemd/system/efs-ha-agent.service", "0644"),
    InstalledFile("efs-ha-vip.service", "/etc/systemd/system/efs-ha-vip.service", "0644"),
    InstalledFile("efs-ha-handover.service", "/etc/systemd/system/efs-ha-handover.service", "0644"),
    InstalledFile("minio-credentials.sh", "/opt/efs-ha/bin/minio-credentials", "0755"),
    InstalledFile("minio-tls.sh", "/opt/efs-ha/bin/minio-tls", "0755"),
    InstalledFile("agent.env", "/etc/efs-ha/agent.env", "0600"),
    InstalledFile("bootstrap.sh", "/opt/efs-ha/bin/bootstrap", "0755"),
    InstalledFile("efs-ha-bootstrap.service", "/etc/systemd/system/efs-ha-bootstrap.service", "0644"),
)


@dataclass(frozen=True)
class NodeUserDataInputs:
    """Every value the node files need. Values may be CDK tokens; they are resolved when the stack synthesizes."""

    node_name: str
    file_system_id: str
    mount_point: str
    vip: str
    minio_source: str
    minio_sha256: str
    agent_source: str
    region: str
    secret_arn: str
    state_table_name: str
    heartbeat_interval_seconds: float  # P
    lease_seconds: float  # G
    # The agent's kernel watchdog (docs/failover-design.md, "Lease, watchdog and one clock").
    # watchdog: "required" loads softdog with soft_margin=W; "off" loads nothing.
    watchdog: str
    watchdog_timeout_seconds: int  # W
    # The agent unit's WatchdogSec= (a second layer, < the checker's lease deadline); FailoverTimings computes it.
    systemd_watchdog_seconds: int
    watchdog_device: str = "/dev/watchdog"
    # MinIO over TLS (config `tls`): the secret with the server certificate and key, and the CA-only secret.
    tls: bool = False
    tls_secret_arn: str = ""
    tls_ca_secret_arn: str = ""
    # Filled in by the node construct: where the bootstrap reports success, the node's Auto Scaling group (its
    # CreationPolicy, and its rolling update's WaitOnResourceSignals).
    stack_name: str = ""
    signal_logical_id: str = ""

    def placeholders(self) -> dict[str, str]:
        values = {field.name.upper(): str(getattr(self, field.name)) for field in fields(self)}
        values["MOUNT_UNIT"] = mount_unit_name(self.mount_point)
        for name in ("heartbeat_interval_seconds", "lease_seconds"):
            value = getattr(self, name)
            if isinstance(value, (int, float)):
                values[name.upper()] = f"{value:g}"  # 0.5 -> "0.5", 2.0 -> "2"
        if self.watchdog not in ("required", "off"):
            raise ValueError(f"user-data value WATCHDOG={self.watchdog!r} must be required or off")
        values["WATCHDOG_REQUIRED"] = "true" if self.watchdog == "required" else "false"
        values.update(self._tls_placeholders())
        for name, value in values.items():
            # Values land inside single quotes and heredocs; config validation keeps them plain, this proves it.
            if any(bad in value for bad in ("'", "\n", _HEREDOC_END)):
                raise ValueError(f"user-data value {name}={value!r} cannot be embedded safely")
        return values

    def _tls_placeholders(self) -> dict[str, str]:
        if self.tls and not (self.tls_secret_arn and self.tls_ca_secret_arn):
            raise ValueError("user-data with tls needs TLS_SECRET_ARN and TLS_CA_SECRET_ARN")
        scheme = "https" if self.tls else "http"
        return {
            "TLS_ENABLED": "true" if self.tls else "false",
            "TLS_SERVER_NAME": TLS_SERVER_NAME,
            "MINIO_CERTS_DIR": MINIO_CERTS_DIR,
            # Empty with tls off: the agent then probes without a CA (node_agent/config.py).
            "MINIO_CA_FILE": MINIO_CA_FILE if self.tls else "",
            "MINIO_CA_COPY": MINIO_CA_FILE,
            "MINIO_HEALTH_URL": f"{scheme}://127.0.0.1:9000/minio/health/live",
        }


def render_file(template: str, values: dict[str, str]) -> str:
    """Fill in one file from userdata/files/; an unknown placeholder is a bug, never silently left in."""
    text = (FILES_DIR / template).read_text()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{template} uses {{{{{name}}}}}, which render.py does not provide")
        return values[name]

    return _PLACEHOLDER.sub(substitute, text)


def render_node_user_data(inputs: NodeUserDataInputs) -> str:
    """The whole user-data script: write every file, then start the bootstrap unit."""
    values = inputs.placeholders()
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", "umask 022"]
    for installed in INSTALLED_FILES:
        lines += [
            f"install -d -m 0755 {Path(installed.destination).parent}",
            f"cat > {installed.destination} <<'{_HEREDOC_END}'",
            render_file(installed.template, values).rstrip("\n"),
            _HEREDOC_END,
            f"chmod {installed.mode} {installed.destination}",
        ]
    # systemd runs (and retries) the bootstrap; cloud-init would run it only once.
    lines += ["systemctl daemon-reload", "systemctl start --no-block efs-ha-bootstrap.service"]
    return "\n".join(lines) + "\n"
