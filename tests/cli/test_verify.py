"""`efs-ha verify`: scripts, output parsing and step sequencing (a fake runner plays the nodes)."""

from __future__ import annotations

import base64
import json
import re
import shlex
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from efs_ha_cli.context import App
from efs_ha_cli.verify import (
    CommandResult,
    SsmRunner,
    Target,
    cleanup_script,
    parse_markers,
    read_script,
    write_script,
)
from tests.cli.conftest import REGION, VIP, FakeClock, FakeCluster

TARGET = Target(vip=VIP, region="eu-west-1", bucket="efs-ha-verify-0123456789ab",
                secret_arn="arn:aws:secretsmanager:eu-central-1:123456789012:secret:minio-root-AbCdEf")


class FakeNodes:
    """Plays the nodes under SSM: the VIP is on every node's `lo`, so S3 requests reach that node's own
    MinIO, which answers only while serving; objects live on the shared EFS (one dict for both nodes)."""

    def __init__(self, cluster: FakeCluster, corrupt_reads: bool = False) -> None:
        self._cluster = cluster
        self._corrupt = corrupt_reads
        self.efs: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, _app: App) -> FakeNodes:
        return self

    def run(self, instance_id: str, script: str) -> CommandResult:
        agent = next(a for a in self._cluster.agents.values() if a.instance_id == instance_id)
        kind = "write" if "put_object=" in script else "read" if "get_object=" in script else "cleanup"
        self.calls.append((agent.node, kind))
        up = agent.serving
        code = "200" if up else "000"
        if kind == "write":
            match = re.search(r"--data-binary (.+?)\)\"$", script, re.M)
            assert match, script
            if up:
                self.efs["object"] = shlex.split(match[1])[0]
            return CommandResult("Success", f"EFSHA create_bucket={code}\nEFSHA put_object={code}\n")
        if kind == "read":
            body = self.efs.get("object", "") + (" corrupted" if self._corrupt else "") if up else ""
            b64 = base64.b64encode(body.encode()).decode()
            return CommandResult("Success", f"curl noise\nEFSHA get_object={code}\nEFSHA body_b64={b64}\n")
        if up:
            self.efs.pop("object", None)
        return CommandResult("Success", f"EFSHA delete_object={'204' if up else '000'}\n"
                                        f"EFSHA delete_bucket={'204' if up else '000'}\n")


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("PASS", "FAIL", "WARN"))]


def test_success_runs_every_step_on_the_right_node_and_restores_roles(cluster: FakeCluster) -> None:
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in _lines(result.stdout)] == [
        "PASS plan", "PASS write via VIP on node1", "PASS switch over node1 -> node2",
        "PASS read via VIP on node2", "PASS switch back node2 -> node1", "PASS clean up"]
    assert "content matches" in result.stdout
    assert re.search(r"verify passed in \d+\.\ds", result.stdout)
    assert nodes.calls == [("node1", "write"), ("node2", "read"), ("node1", "cleanup")]
    assert cluster.lambda_client.events == [{"action": "switchover", "target": "node2"},
                                            {"action": "switchover", "target": "node1"}]
    item = cluster.item("cluster")
    assert (item["active"], int(item["epoch"])) == ("node1", 3)
    assert set(cluster.routes().values()) == {cluster.agents["node1"].eni}


def test_content_mismatch_fails_but_still_switches_back(cluster: FakeCluster) -> None:
    nodes = FakeNodes(cluster, corrupt_reads=True)

    result = cluster.cli("--json", "verify", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [
        ("plan", True), ("write via VIP on node1", True), ("switch over node1 -> node2", True),
        ("read via VIP on node2", False), ("switch back node2 -> node1", True), ("clean up", True)]
    assert "content mismatch on node2" in report["steps"][3]["detail"]
    assert cluster.item("cluster")["active"] == "node1"


def test_no_healthy_standby_stops_before_touching_anything(cluster: FakeCluster) -> None:
    cluster.agents["node2"].efs_ok = False
    cluster.tick()
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    [only] = _lines(result.stdout)
    assert only.startswith("FAIL plan: node1 is active but no other node is healthy")
    assert nodes.calls == [] and cluster.lambda_client.events == []


def test_failed_write_skips_the_switchover(cluster: FakeCluster) -> None:
    cluster.agents["node1"].efs_ok = False  # node1 stops serving; still active in the table
    cluster.tick()
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    assert "FAIL write via VIP on node1: create bucket efs-ha-verify-" in result.stdout
    assert "HTTP 000 (MinIO not reachable)" in result.stdout
    assert "WARN clean up" in result.stdout
    assert cluster.lambda_client.events == []


def test_under_moto_ssm_the_real_runner_finds_no_result(cluster: FakeCluster) -> None:
    """moto accepts SendCommand and reports Success with empty output: the parser must call that a failure."""
    result = cluster.cli("verify")

    assert result.exit_code == 1
    node1 = cluster.agents["node1"].instance_id
    assert f"FAIL write via VIP on node1: command on node1 ({node1}) ended Success without a result" in result.stdout
    assert "verify FAILED" in result.stdout
    assert cluster.lambda_client.events == []


def test_ssm_runner_sends_the_script_to_the_active_instance(cluster: FakeCluster) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    sent: list[dict[str, Any]] = []
    # moto's ListCommands reports every instance for a command without targets, so record the request.
    ssm.meta.events.register("provide-client-params.ssm.SendCommand",
                             lambda params, **_: sent.append(dict(params)))

    cluster.cli("verify", hooks=cluster.hooks(command_runner=lambda app: SsmRunner(ssm, app.clock)))

    node1 = cluster.agents["node1"].instance_id
    assert [(c["InstanceIds"], c["DocumentName"]) for c in sent] == [([node1], "AWS-RunShellScript")] * 2
    script = "\n".join(sent[0]["Parameters"]["commands"])
    assert f"--aws-sigv4 aws:amz:{REGION}:s3" in script and f"http://{VIP}:9000" in script
    assert cluster.secret_arn in script and "put_object=" in script
    assert "delete_bucket=" in "\n".join(sent[1]["Parameters"]["commands"])


def test_scripts_sign_for_the_region_and_read_the_secret_in_its_own_region() -> None:
    for script in (write_script(TARGET, "hello world"), read_script(TARGET), cleanup_script(TARGET)):
        assert "set -euo pipefail" in script
        assert "--aws-sigv4 aws:amz:eu-west-1:s3" in script
        assert "--region eu-central-1" in script and TARGET.secret_arn in script
        assert "http://172.16.0.1:9000" in script
        assert "x-amz-content-sha256: UNSIGNED-PAYLOAD" in script
        # The credentials never leave the node: no command echoes them.
        assert not re.search(r"echo[^\n]*\$(user|pass)", script)
    assert "--data-binary 'hello world'" in write_script(TARGET, "hello world")
    assert "s3 GET /efs-ha-verify-0123456789ab/verify.txt" in read_script(TARGET)
    assert "s3 DELETE /efs-ha-verify-0123456789ab)" in cleanup_script(TARGET)


def test_parse_markers_keeps_only_marker_lines() -> None:
    output = "warning: x=y\nEFSHA get_object=200\n  EFSHA body_b64=aGk=  \nEFSHAX a=b\nEFSHA novalue\n"

    assert parse_markers(output) == {"get_object": "200", "body_b64": "aGk="}
    assert parse_markers("") == {}


class ScriptedSsm:
    """An SSM client whose invocation first does not exist, then runs, then succeeds."""

    def __init__(self, statuses: list[str]) -> None:
        self._statuses = statuses
        self.sent: list[dict[str, Any]] = []

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return {"Command": {"CommandId": "cmd-1"}}

    def get_command_invocation(self, **_: Any) -> dict[str, Any]:
        status = self._statuses.pop(0)
        if status == "missing":
            raise ClientError({"Error": {"Code": "InvocationDoesNotExist", "Message": ""}}, "GetCommandInvocation")
        return {"Status": status, "StandardOutputContent": "EFSHA get_object=200\n", "StandardErrorContent": ""}


def test_ssm_runner_polls_until_a_terminal_status() -> None:
    ssm = ScriptedSsm(["missing", "InProgress", "Success"])

    result = SsmRunner(ssm, FakeClock()).run("i-1", "echo a\necho b")

    assert result == CommandResult("Success", "EFSHA get_object=200\n", "")
    assert ssm.sent[0]["Parameters"] == {"commands": ["echo a", "echo b"]}
    assert ssm.sent[0]["DocumentName"] == "AWS-RunShellScript"


def test_ssm_runner_gives_up_at_its_timeout() -> None:
    ssm = ScriptedSsm(["InProgress"] * 100)

    result = SsmRunner(ssm, FakeClock(), timeout_seconds=5, poll_seconds=1).run("i-1", "true")

    assert result.status == "TimedOut"


@pytest.mark.parametrize("arn, region", [(TARGET.secret_arn, "eu-central-1"), ("not-an-arn", "eu-west-1")])
def test_secret_region_comes_from_the_arn(arn: str, region: str) -> None:
    assert Target(VIP, "eu-west-1", arn, "b").secret_region == region
