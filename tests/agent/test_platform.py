"""Agent plumbing: config errors, systemd/process controllers, sd_notify, IMDSv2 token caching, main()."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from node_agent.agent import main
from node_agent.config import AgentConfig, ConfigError
from node_agent.imds import Imds, ImdsError
from node_agent.sdnotify import notify
from node_agent.service import ProcessController, SystemdController

ENV = {"STATE_TABLE_NAME": "t", "NODE_NAME": "node1", "MOUNT_POINT": "/mnt/efs", "AWS_REGION": "eu-west-1"}


def test_config_defaults() -> None:
    config = AgentConfig.from_env(ENV)
    assert (config.heartbeat_interval_seconds, config.lease_seconds) == (0.5, 1.5)
    assert (config.watchdog, config.watchdog_device, config.watchdog_timeout_seconds) == (
        "required", "/dev/watchdog", 1)
    assert (config.eni_id, config.private_ip) == (None, None)
    assert (config.minio_unit, config.minio_health_url) == ("minio.service",
                                                            "http://127.0.0.1:9000/minio/health/live")
    assert (config.instance_id, config.efs_require_mount) == (None, True)


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"NODE_NAME": ""}, "NODE_NAME"),
    ({"STATE_TABLE_NAME": " "}, "STATE_TABLE_NAME"),
    ({"LEASE_SECONDS": "soon"}, "LEASE_SECONDS"),
    ({"HEARTBEAT_INTERVAL_SECONDS": "0"}, "HEARTBEAT_INTERVAL_SECONDS"),
    ({"LEASE_SECONDS": "1.4"}, "LEASE_SECONDS"),  # < 3 x 0.5
    ({"HEARTBEAT_INTERVAL_SECONDS": "1", "LEASE_SECONDS": "2.9"}, "LEASE_SECONDS"),
    ({"WATCHDOG": "maybe"}, "WATCHDOG"),
    ({"WATCHDOG_TIMEOUT_SECONDS": "1.5"}, "WATCHDOG_TIMEOUT_SECONDS"),
    ({"WATCHDOG_TIMEOUT_SECONDS": "0"}, "WATCHDOG_TIMEOUT_SECONDS"),
    ({"MINIO_COMMAND": '["/bin/true"]'}, "WATCHDOG_DEVICE"),  # the drill never arms this machine's watchdog
    ({"EFS_REQUIRE_MOUNT": "perhaps"}, "EFS_REQUIRE_MOUNT"),
    ({"AWS_REGION": ""}, "AWS_REGION"),
])
def test_config_error_names_the_variable(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AgentConfig.from_env({**ENV, **overrides})
    assert caught.value.variable == variable and variable in str(caught.value)


def test_new_variables_are_read() -> None:
    config = AgentConfig.from_env({**ENV, "HEARTBEAT_INTERVAL_SECONDS": "1", "LEASE_SECONDS": "3",
                                   "WATCHDOG": "OFF", "WATCHDOG_TIMEOUT_SECONDS": "5", "WATCHDOG_DEVICE": "/tmp/wd",
                                   "ENI_ID": "eni-1", "PRIVATE_IP": "10.0.110.5"})
    assert (config.heartbeat_interval_seconds, config.lease_seconds) == (1, 3)
    assert (config.watchdog, config.watchdog_required, config.watchdog_timeout_seconds) == ("off", False, 5)
    assert (config.watchdog_device, config.eni_id, config.private_ip) == ("/tmp/wd", "eni-1", "10.0.110.5")
    drill = AgentConfig.from_env({**ENV, "MINIO_COMMAND": '["/bin/true"]', "WATCHDOG": "off"})
    assert drill.watchdog == "off"
    tight = AgentConfig.from_env({**ENV, "HEARTBEAT_INTERVAL_SECONDS": "0.2", "LEASE_SECONDS": "0.6"})
    assert tight.lease_seconds == 0.6  # exactly 3 x P is allowed


def test_main_prints_one_line_and_exits_2_on_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main({**ENV, "NODE_NAME": ""}) == 2
    err = capsys.readouterr().err.strip()
    assert err == "node agent: environment variable NODE_NAME is required and missing or empty"


class FakeSystemctl:
    def __init__(self, state: str = "active", tasks: str = "[not set]", cgroup: str = "") -> None:
        self.state = state
        self.tasks = tasks
        self.cgroup = cgroup
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        assert kwargs["timeout"] > 0 and kwargs["text"] is True
        return subprocess.CompletedProcess(argv, 0, stdout=f"ActiveState={self.state}\nTasksCurrent={self.tasks}\n"
                                                           f"ControlGroup={self.cgroup}\n")


class StoppingSystemctl(FakeSystemctl):
    """The unit stops `after` status reads once a SIGTERM/SIGKILL was sent (None: never)."""

    def __init__(self, after: int | None = 1) -> None:
        super().__init__("active", "1")
        self.after = after
        self.reads_since_signal: int | None = None

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if argv[1] == "kill":
            self.reads_since_signal = 0
        elif argv[1] == "show" and self.reads_since_signal is not None:
            self.reads_since_signal += 1
            if self.after is not None and self.reads_since_signal >= self.after:
                self.state, self.tasks = "inactive", "[not set]"
        return super().__call__(argv, **kwargs)


def test_systemd_controller_starts_without_waiting_and_stops_without_a_blocking_job() -> None:
    """At shutdown MinIO's stop job waits behind efs-ha-handover.service's stop (which waits for the role to move,
    which waits for this stop): a blocking `systemctl stop` would merge into that job and deadlock. So: enqueue
    the stop without waiting (a pending stop job also keeps Restart= from restarting MinIO), signal it now, and
    confirm by its state (review finding 1)."""
    systemctl = StoppingSystemctl()
    controller = SystemdController("minio.service", runner=systemctl, poll_seconds=0)
    controller.start()
    controller.stop()
    assert systemctl.calls[:3] == [["systemctl", "start", "--no-block", "minio.service"],
                                   ["systemctl", "stop", "--no-block", "minio.service"],
                                   ["systemctl", "kill", "--signal=SIGTERM", "minio.service"]]
    assert all(call[1] == "show" for call in systemctl.calls[3:])
    assert not any(call[1:3] == ["stop", "minio.service"] for call in systemctl.calls)  # never a blocking stop


def test_a_stop_that_does_not_end_in_time_raises_and_the_unit_counts_as_running() -> None:
    systemctl = StoppingSystemctl(after=None)
    controller = SystemdController("minio.service", runner=systemctl, poll_seconds=0, stop_timeout_seconds=0.05)
    with pytest.raises(TimeoutError, match=r"minio\.service still runs"):
        controller.stop()
    assert controller.is_running()
    # SIGTERM first, then SIGKILL as TimeoutStopSec would (it does not run while the stop job waits at shutdown)
    assert [call[2] for call in systemctl.calls if call[1] == "kill"] == ["--signal=SIGTERM", "--signal=SIGKILL"]


def test_a_minio_that_ignores_sigterm_is_killed_and_the_stop_succeeds() -> None:
    """Review: at shutdown MinIO's drain has no TimeoutStopSec over it (the stop job waits its turn)."""

    class IgnoresTerm(StoppingSystemctl):
        def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            if argv[1] == "kill" and argv[2] == "--signal=SIGTERM":
                self.calls.append(argv)
                return subprocess.CompletedProcess(argv, 0, stdout="")
            return super().__call__(argv, **kwargs)

    systemctl = IgnoresTerm(after=1)
    SystemdController("minio.service", runner=systemctl, poll_seconds=0, stop_timeout_seconds=0.05).stop()
    assert systemctl.state == "inactive"


def test_systemd_kill_sends_sigkill_and_a_stop_job_so_no_restart_follows() -> None:
    systemctl = FakeSystemctl()
    SystemdController("minio.service", runner=systemctl).kill()
    assert systemctl.calls == [["systemctl", "stop", "--no-block", "minio.service"],
                               ["systemctl", "kill", "--signal=SIGKILL", "minio.service"]]


def test_process_controller_kill_ignores_sigterm(tmp_path: Path) -> None:
    controller = ProcessController([sys.executable, "-c", "import signal, time; "
                                    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
                                   stop_timeout_seconds=5)
    controller.start()
    assert controller.is_running()
    controller.kill()
    assert controller.is_running() is False
    controller.kill()  # idempotent


@pytest.mark.parametrize(("state", "running"), [
    ("active", True), ("activating", True), ("deactivating", True), ("reloading", True),
    ("inactive", False), ("failed", False),
])
def test_systemd_is_running_is_false_only_when_surely_stopped(state: str, running: bool) -> None:
    assert SystemdController("minio.service", runner=FakeSystemctl(state)).is_running() is running


@pytest.mark.parametrize(("tasks", "running"), [("2", True), ("0", False), ("[not set]", False),
                                               ("18446744073709551615", False)])
def test_a_failed_unit_with_processes_left_in_its_cgroup_still_counts_as_running(tasks: str, running: bool) -> None:
    # A stop that timed out on a process stuck in NFS I/O leaves the unit "failed" with that process alive.
    assert SystemdController("minio.service", runner=FakeSystemctl("failed", tasks)).is_running() is running


@pytest.mark.parametrize(("procs", "running"), [("4242\n", True), ("", False), (None, False)])
def test_without_task_accounting_the_cgroup_itself_tells_whether_processes_are_left(
        tmp_path: Path, procs: str | None, running: bool) -> None:
    """TasksCurrent is "[not set]" when task accounting is off: a process stuck in NFS I/O must still count."""
    cgroup = "/system.slice/minio.service"
    if procs is not None:
        (tmp_path / "system.slice/minio.service").mkdir(parents=True)
        (tmp_path / "system.slice/minio.service/cgroup.procs").write_text(procs)
    controller = SystemdController("minio.service", runner=FakeSystemctl("failed", "[not set]", cgroup),
                                   cgroup_root=tmp_path)
    assert controller.is_running() is running


def test_an_unreadable_cgroup_counts_as_running(tmp_path: Path) -> None:
    (tmp_path / "system.slice/minio.service/cgroup.procs").mkdir(parents=True)  # reading it fails (a directory)
    controller = SystemdController("minio.service", runner=FakeSystemctl("failed", "[not set]",
                                                                         "/system.slice/minio.service"),
                                   cgroup_root=tmp_path)
    assert controller.is_running() is True


def test_systemd_is_running_assumes_running_when_systemctl_fails() -> None:
    def broken(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, 60)

    assert SystemdController("minio.service", runner=broken).is_running() is True


def test_process_controller_starts_and_stops_a_child(tmp_path: Path) -> None:
    log = tmp_path / "s3.log"
    controller = ProcessController([sys.executable, "-c", "import os,time; print(os.environ['GREETING'],"
                                    " flush=True); time.sleep(60)"], env={"GREETING": "hello"},
                                   cwd=str(tmp_path), log_path=str(log), stop_timeout_seconds=5)
    assert controller.is_running() is False
    controller.start()
    pid = controller.pid
    controller.start()  # idempotent: no second child
    assert controller.pid == pid and controller.is_running()
    for _ in range(500):  # the child got our environment and cwd, and writes to the log
        if "hello" in log.read_text():
            break
        time.sleep(0.01)
    assert "hello" in log.read_text()
    controller.stop()
    assert controller.is_running() is False
    controller.stop()  # stopping a stopped service is fine


def test_sd_notify_sends_a_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert notify("READY=1", {"NOTIFY_SOCKET": path}) is True
        assert server.recv(100) == b"READY=1"
    assert notify("WATCHDOG=1", {}) is False  # not under systemd
    assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


_IMDS_PATHS = {
    "/latest/meta-data/instance-id": "i-0abc",
    "/latest/meta-data/mac": "0a:1b:2c:3d:4e:5f",
    "/latest/meta-data/network/interfaces/macs/0a:1b:2c:3d:4e:5f/interface-id": "eni-0abc",
    "/latest/meta-data/local-ipv4": "10.0.110.7",
}


class _FakeImds(BaseHTTPRequestHandler):
    token_requests = 0
    revoke_next = False

    def do_PUT(self) -> None:
        assert self.path == "/latest/api/token"
        assert self.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"
        type(self).token_requests += 1
        self._reply(200, f"token-{type(self).token_requests}")

    def do_GET(self) -> None:
        if type(self).revoke_next:
            type(self).revoke_next = False
            self._reply(401, "")
        elif self.headers.get("X-aws-ec2-metadata-token", "").startswith("token-"):
            self._reply(200, _IMDS_PATHS.get(self.path, "x"))
        else:
            self._reply(401, "")

    def _reply(self, code: int, body: str) -> None:
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def imds_endpoint() -> Iterator[str]:
    _FakeImds.token_requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeImds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_imds_token_is_cached_until_near_expiry(imds_endpoint: str) -> None:
    now = [0.0]
    imds = Imds(imds_endpoint, monotonic=lambda: now[0])
    assert [imds.instance_id() for _ in range(3)] == ["i-0abc"] * 3
    assert _FakeImds.token_requests == 1
    now[0] = 21600 - 299  # within the refresh window
    imds.instance_id()
    assert _FakeImds.token_requests == 2


def test_imds_refetches_a_revoked_token_once(imds_endpoint: str) -> None:
    imds = Imds(imds_endpoint)
    imds.instance_id()
    _FakeImds.revoke_next = True
    assert imds.instance_id() == "i-0abc"
    assert _FakeImds.token_requests == 2


def test_imds_unreachable_raises_a_clear_error() -> None:
    with pytest.raises(ImdsError, match="IMDS"):
        Imds("http://127.0.0.1:9", timeout_seconds=0.5).instance_id()


def test_imds_primary_interface_is_the_eni_of_the_primary_mac(imds_endpoint: str) -> None:
    assert Imds(imds_endpoint).primary_interface() == ("eni-0abc", "10.0.110.7")


def test_identity_comes_from_imds_unless_the_environment_names_it(imds_endpoint: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from node_agent.agent import Identity, identity_from_imds

    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_endpoint)
    node = AgentConfig.from_env(ENV)
    assert identity_from_imds(node) == Identity("i-0abc", "eni-0abc", "10.0.110.7")
    overridden = AgentConfig.from_env({**ENV, "PRIVATE_IP": "10.9.9.9"})
    assert identity_from_imds(overridden) == Identity("i-0abc", "eni-0abc", "10.9.9.9")
    drill = AgentConfig.from_env({**ENV, "INSTANCE_ID": "i-drill", "ENI_ID": "eni-drill", "PRIVATE_IP": "10.0.0.9"})
    assert identity_from_imds(drill) == Identity("i-drill", "eni-drill", "10.0.0.9")
