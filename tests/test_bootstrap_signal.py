"""bootstrap.sh's CloudFormation signalling, run as real bash against a stub `aws` (never the real one)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from constructs.cluster_node import BOOTSTRAP_TIMEOUT
from tests.test_userdata import sample_inputs
from userdata.render import NodeUserDataInputs, render_file

INPUTS = NodeUserDataInputs(**{**sample_inputs().__dict__, "stack_name": "efs-ha",
                                "signal_logical_id": "Node1GroupASG0123ABCD"})
INSTANCE_ID = "i-0123456789abcdef0"

# Fails the first $FAILS calls (with CloudFormation's message if $MESSAGE is set), then succeeds; one line per call.
STUB_AWS = """#!/bin/sh
dir=$(dirname "$0")
n=$(cat "$dir/calls" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$dir/calls"
printf '%s\\n' "$*" >> "$dir/args"
if [ "$n" -le "${FAILS:-0}" ]; then
  echo "${MESSAGE:-Could not connect to the endpoint URL}" >&2
  exit 255
fi
"""


class Node:
    """The rendered bootstrap.sh, sourced (main does not run) in bash with only the stub `aws` added to PATH."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.script = tmp_path / "bootstrap.sh"
        self.script.write_text(render_file("bootstrap.sh", INPUTS.placeholders()))
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        stub = self.bin / "aws"
        stub.write_text(STUB_AWS)
        stub.chmod(0o755)
        (tmp_path / "instance-id").write_text(INSTANCE_ID + "\n")
        self.state = tmp_path / "state"

    def run(self, commands: str, fails: int = 0, message: str | None = None) -> subprocess.CompletedProcess[str]:
        # Only the stub's directory and the basic system tools: no real `aws` can be found.
        assert shutil.which("aws", path=str(self.bin)) == str(self.bin / "aws")
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAILS": str(fails), "HOME": str(self.tmp)}
        if message is not None:
            env["MESSAGE"] = message
        prelude = (f"source {self.script}\nstate_dir={self.state}\ninstance_id_file={self.tmp / 'instance-id'}\n"
                   "signal_backoff_seconds=0\n")
        return subprocess.run(["bash", "-c", prelude + commands], capture_output=True, text=True, env=env,
                              timeout=60)

    @property
    def calls(self) -> list[str]:
        args = self.tmp / "bin" / "args"
        return args.read_text().splitlines() if args.exists() else []


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def _expected_call(status: str, unique_id: str = INSTANCE_ID) -> str:
    return (f"cloudformation signal-resource --region {INPUTS.region} --stack-name {INPUTS.stack_name} "
            f"--logical-resource-id {INPUTS.signal_logical_id} --unique-id {unique_id} --status {status}")


def test_stub_is_the_only_aws(node: Node) -> None:
    result = node.run("command -v aws")
    assert result.stdout.strip() == str(node.bin / "aws")


def test_success_signal_gets_through_after_two_failures(node: Node) -> None:
    result = node.run("cfn_signal SUCCESS; echo rc=$?", fails=2)
    assert result.stdout.splitlines()[-1] == "rc=0", result.stderr
    assert node.calls == [_expected_call("SUCCESS")] * 3
    assert result.stderr.count("failed: Could not connect") == 2


def test_success_signal_gives_up_after_the_limit_with_a_nonzero_exit(node: Node) -> None:
    result = node.run("cfn_signal SUCCESS", fails=100)
    assert result.returncode != 0
    assert node.calls == [_expected_call("SUCCESS")] * 5
    assert "try 5/5" in result.stderr


def test_backoff_doubles_between_tries(node: Node) -> None:
    # A `sleep` stub records the waits instead of waiting.
    (node.bin / "sleep").write_text(f"#!/bin/sh\necho \"$1\" >> {node.tmp}/sleeps\n")
    (node.bin / "sleep").chmod(0o755)
    node.run("signal_backoff_seconds=2; cfn_signal SUCCESS", fails=100)
    assert (node.tmp / "sleeps").read_text().split() == ["2", "4", "8", "16"]


def test_a_resource_that_no_longer_waits_is_not_retried(node: Node) -> None:
    message = ("An error occurred (ValidationError) when calling the SignalResource operation: Resource Node1 in "
               "stack arn:aws:cloudformation:us-east-1:111122223333:stack/s/x is in CREATE_COMPLETE state and "
               "cannot be signaled")
    result = node.run("cfn_signal SUCCESS", fails=1, message=message)
    assert result.returncode == 0 and len(node.calls) == 1


def test_signal_ready_fails_the_attempt_when_the_signal_never_gets_through(node: Node) -> None:
    result = node.run("mkdir -p \"$state_dir\"; signal_ready", fails=100)
    assert result.returncode != 0
    assert not (node.state / "signalled").exists()
    ok = node.run("signal_ready && signal_ready")  # once through, a re-run does not signal again
    assert ok.returncode == 0 and len(node.calls) == 6 and (node.state / "signalled").exists()


def _failing_attempt(node: Node, attempts_before: int, fails: int = 0) -> subprocess.CompletedProcess[str]:
    """One attempt whose setup step fails, run through the script's own attempt count and EXIT trap."""
    node.state.mkdir(exist_ok=True)
    if attempts_before:
        (node.state / "attempts").write_text(f"{attempts_before} {int(time.time())}\n")
    return node.run("begin_attempt; trap 'on_exit $?' EXIT; current_step=mount_efs; false", fails=fails)


def test_a_failed_attempt_before_the_last_is_left_to_systemd(node: Node) -> None:
    result = _failing_attempt(node, attempts_before=0)
    assert result.returncode == 1 and node.calls == []
    assert "systemd retries it" in result.stderr
    assert (node.state / "attempts").read_text().split()[0] == "1"


def test_the_last_failed_attempt_signals_failure_with_a_reason(node: Node) -> None:
    result = _failing_attempt(node, attempts_before=9, fails=1)
    reason = "mount_efs exit 1, attempt 10/10"
    assert result.returncode == 75, result.stderr
    # Retried too: the first FAILURE call failed.
    assert node.calls == [_expected_call("FAILURE", f"{INSTANCE_ID}: {reason}")] * 2
    assert "gave up: attempt 10 failed in mount_efs (exit 1)" in result.stderr
    # The longest step name still fits SignalResource's 64-character UniqueId whole.
    assert len(f"{INSTANCE_ID}: install_packages exit 255, attempt 10/10") <= 64


def test_an_attempt_after_the_time_budget_is_the_last(node: Node) -> None:
    node.state.mkdir()
    (node.state / "attempts").write_text("2 1000\n")  # first attempt long ago
    result = node.run("begin_attempt; trap 'on_exit $?' EXIT; current_step=install_packages; exit 3")
    assert result.returncode == 75
    assert node.calls and node.calls[0].endswith("--status FAILURE")


def test_the_unique_id_is_cut_to_signal_resources_64_characters(node: Node) -> None:
    node.run(f"cfn_signal FAILURE '{'x' * 100}'")
    unique_id = re.search(r"--unique-id (.+) --status FAILURE$", node.calls[0])
    assert unique_id and unique_id.group(1) == f"{INSTANCE_ID}: {'x' * 100}"[:64]


def test_the_budget_and_exit_status_match_the_unit_and_the_creation_policy() -> None:
    script = render_file("bootstrap.sh", INPUTS.placeholders())
    unit = render_file("efs-ha-bootstrap.service", INPUTS.placeholders())
    value = {m.group(1): int(m.group(2)) for m in re.finditer(r"^readonly (\w+)=(\d+)$", script, re.M)}
    assert f"RestartPreventExitStatus={value['exit_gave_up']}\n" in unit
    burst = int(re.search(r"^StartLimitBurst=(\d+)$", unit, re.M).group(1))  # type: ignore[union-attr]
    assert value["max_attempts"] < burst
    # An attempt that starts just before the budget ends still has minutes to fail before CloudFormation's timeout.
    assert value["give_up_after_seconds"] + 5 * 60 <= BOOTSTRAP_TIMEOUT.to_seconds()
    # main runs only when executed, never when sourced
    assert script.rstrip().endswith('if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then\n  main\nfi')


def test_a_rerun_after_a_lost_signal_only_signals_again(node: Node) -> None:
    # main itself, with each setup step stubbed to record that it ran
    steps = ("disable_source_dest_check install_packages mount_efs install_minio install_agent load_watchdog "
             "start_services")
    stubs = "".join(f"{step}() {{ echo {step} >> {node.tmp}/steps; }}\n" for step in steps.split())
    run_main = f"log_file={node.tmp}/bootstrap.log\n{stubs}main"
    first = node.run(run_main, fails=100)
    assert first.returncode == 1 and len(node.calls) == 5
    assert (node.tmp / "steps").read_text().split() == steps.split()
    second = node.run(run_main)
    assert second.returncode == 0, second.stderr
    assert (node.tmp / "steps").read_text().split() == [*steps.split(), "start_services"]
    assert node.calls[-1] == _expected_call("SUCCESS")
    assert "efs-ha bootstrap attempt 2/10" in (node.tmp / "bootstrap.log").read_text()
