"""MINIO_COMMAND / MINIO_LOG: the agent runs MinIO as its own child process instead of a systemd unit."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from node_agent.agent import build_agent, build_service, log_format, main
from node_agent.config import AgentConfig, ConfigError
from node_agent.service import ProcessController, SystemdController

ENV = {"STATE_TABLE_NAME": "t", "NODE_NAME": "node1", "MOUNT_POINT": "/mnt/efs", "AWS_REGION": "eu-west-1",
       "INSTANCE_ID": "i-0123456789abcdef0", "WATCHDOG_DEVICE": "/nonexistent/watchdog",
       # Given, so that building the agent never records a launch time on this machine (/var/lib/efs-ha).
       "LAUNCHED_AT": "1900000000"}
MINIO = ["/usr/local/bin/minio", "server", "--address", ":9000", "/mnt/efs/minio"]


def test_without_minio_command_the_agent_drives_the_systemd_unit() -> None:
    config = AgentConfig.from_env({**ENV, "MINIO_UNIT": "object-store.service"})
    assert (config.minio_command, config.minio_log) == (None, None)
    service = build_agent(config).service
    assert isinstance(service, SystemdController) and service.unit == "object-store.service"


def test_minio_command_runs_that_argv_as_a_child_process_logging_to_minio_log(tmp_path: Path) -> None:
    log = tmp_path / "minio.log"
    config = AgentConfig.from_env({**ENV, "MINIO_COMMAND": f"  {json.dumps(MINIO)} ", "MINIO_LOG": str(log)})
    assert (config.minio_command, config.minio_log) == (tuple(MINIO), str(log))
    service = build_agent(config).service
    assert isinstance(service, ProcessController) and service.argv == MINIO


def test_minio_log_is_optional() -> None:
    config = AgentConfig.from_env({**ENV, "MINIO_COMMAND": json.dumps(MINIO), "MINIO_LOG": " "})
    assert (config.minio_command, config.minio_log) == (tuple(MINIO), None)
    assert isinstance(build_service(config), ProcessController)


def test_the_built_service_starts_the_command_and_writes_its_output_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "minio.log"
    argv = [sys.executable, "-c", "import sys; print('serving', sys.argv[1])", "--with an argument"]
    service = build_service(AgentConfig.from_env({**ENV, "MINIO_COMMAND": json.dumps(argv),
                                                  "MINIO_LOG": str(log)}))
    service.start()
    for _ in range(1000):  # the child prints one line and exits
        if not service.is_running():
            break
        time.sleep(0.01)
    service.stop()
    assert service.is_running() is False
    assert log.read_text() == "serving --with an argument\n"


@pytest.mark.parametrize("value", [
    "/usr/local/bin/minio server /data",  # not JSON
    '["minio", "server"',  # broken JSON
    '"minio server /data"',  # a JSON string, not a list
    '{"argv": ["minio"]}',
    "[]",
    '[""]',
    '["minio", "server", 9000]',
    '["minio", null]',
    "null",
])
def test_a_bad_minio_command_is_one_clear_error_naming_it(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AgentConfig.from_env({**ENV, "MINIO_COMMAND": value})
    assert caught.value.variable == "MINIO_COMMAND"
    assert str(caught.value).startswith("node agent: environment variable MINIO_COMMAND must be a non-empty JSON "
                                        "list of strings")
    assert repr(value) in str(caught.value)


def test_minio_log_without_minio_command_is_an_error_not_silently_ignored() -> None:
    with pytest.raises(ConfigError) as caught:
        AgentConfig.from_env({**ENV, "MINIO_LOG": "/var/log/minio.log"})
    assert caught.value.variable == "MINIO_LOG" and "MINIO_COMMAND" in str(caught.value)


def test_main_prints_one_line_and_exits_2_on_a_bad_minio_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main({**ENV, "MINIO_COMMAND": "minio server /data"}) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert err.startswith("node agent: environment variable MINIO_COMMAND must be a non-empty JSON list")


def test_log_lines_carry_the_time_unless_the_journal_stamps_them() -> None:
    assert "%(asctime)s" in log_format({})
    assert "%(asctime)s" not in log_format({"JOURNAL_STREAM": "8:12345"})
