"""`efs-ha verify`: scripts, output parsing and step sequencing (a fake runner plays the nodes)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from efs_ha_cli.context import App
from efs_ha_cli.verify import (
    CommandResult,
    SsmRunner,
    Target,
    Verifier,
    cleanup_script,
    parse_markers,
    read_script,
    write_script,
)
from tests.cli.conftest import REGION, VIP, Agent, FakeClock, FakeCluster

TARGET = Target(vip=VIP, region="eu-west-1", bucket="efs-ha-verify-0123456789ab",
                secret_arn="arn:aws:secretsmanager:eu-central-1:123456789012:secret:minio-root-AbCdEf")


class FakeNodes:
    """Plays the nodes under SSM. The VIP is on a node's `lo` only while its MinIO serves; from any other node
    a request to the VIP follows the VIP route of the route table associated with the node's subnet (node1's
    subnet -> the first table, node2's -> the second) to the node owning that ENI, whose MinIO answers only
    while serving. Objects live on the shared EFS (one dict for both nodes). `calls` records
    (client node, kind, node whose MinIO answered or None)."""

    def __init__(self, cluster: FakeCluster, corrupt_reads: bool = False) -> None:
        self._cluster = cluster
        self._corrupt = corrupt_reads
        self.efs: dict[str, str] = {}
        self.calls: list[tuple[str, str, str | None]] = []
        self.table_of: dict[str, str] = {}
        for agent, table in zip(cluster.agents.values(), cluster.route_tables, strict=False):
            subnet = cluster.ec2.describe_instances(InstanceIds=[agent.instance_id])[
                "Reservations"][0]["Instances"][0]["SubnetId"]
            cluster.ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
            self.table_of[agent.node] = table

    def __call__(self, _app: App) -> FakeNodes:
        return self

    def _server(self, client: Agent) -> Agent | None:
        """Whose MinIO a request from `client` to the VIP reaches, None when no MinIO answers."""
        if client.serving:  # the VIP is on its own lo
            return client
        eni = self._cluster.routes()[self.table_of[client.node]]
        server = next((a for a in self._cluster.agents.values() if a.eni == eni), None)
        return server if server is not None and server.serving else None

    def run(self, instance_id: str, script: str) -> CommandResult:
        client = next(a for a in self._cluster.agents.values() if a.instance_id == instance_id)
        assert f"http://{VIP}:9000" in script
        kind = "write" if "put_object=" in script else "read" if "get_object=" in script else "cleanup"
        server = self._server(client)
        self.calls.append((client.node, kind, server.node if server else None))
        code = "200" if server else "000"
        if kind == "write":
            match = re.search(r"--data-binary (.+?)\)\"$", script, re.M)
            assert match, script
            if server:
                self.efs["object"] = shlex.split(match[1])[0]
            return CommandResult("Success", f"EFSHA create_bucket={code}\nEFSHA put_object={code}\n")
        if kind == "read":
            assert "sha256sum" in script
            body = (self.efs.get("object", "") + (" corrupted" if self._corrupt else "")).encode() if server else b""
            return CommandResult("Success", f"curl noise\nEFSHA get_object={code}\n"
                                            f"EFSHA body_sha256={hashlib.sha256(body).hexdigest()}\n"
                                            f"EFSHA body_bytes={len(body)}\n"
                                            f"EFSHA body_head_b64={base64.b64encode(body[:64]).decode()}\n")
        if server:
            self.efs.pop("object", None)
        return CommandResult("Success", f"EFSHA delete_object={'204' if server else '000'}\n"
                                        f"EFSHA delete_bucket={'204' if server else '000'}\n")


WRITE = "write from client node2 through the VIP routes to node1"
READ = "read from client node1 through the VIP routes to node2"


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("PASS", "FAIL", "WARN"))]


def test_success_writes_from_the_standby_reads_from_the_origin_through_the_routes(cluster: FakeCluster) -> None:
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", "--yes", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in _lines(result.stdout)] == [
        "PASS plan", f"PASS {WRITE}", "PASS switch over node1 -> node2",
        f"PASS {READ}", "PASS switch back node2 -> node1", "PASS clean up"]
    assert "content matches (sha256 " in result.stdout
    assert "written from node2 through 172.16.0.1 (routes -> node1)" in result.stdout
    assert "read from node1 through 172.16.0.1 (routes -> node2)" in result.stdout
    assert re.search(r"verify passed in \d+\.\ds", result.stdout)
    # Every request came from a node without the VIP and was answered by the other node's MinIO.
    assert nodes.calls == [("node2", "write", "node1"), ("node1", "read", "node2"), ("node2", "cleanup", "node1")]
    assert nodes.efs == {}
    assert cluster.lambda_client.events == [{"action": "switchover", "target": "node2"},
                                            {"action": "switchover", "target": "node1"}]
    item = cluster.item("cluster")
    assert (item["active"], int(item["epoch"])) == ("node1", 3)
    assert set(cluster.routes().values()) == {cluster.agents["node1"].eni}


def test_content_mismatch_fails_but_still_switches_back(cluster: FakeCluster) -> None:
    nodes = FakeNodes(cluster, corrupt_reads=True)

    result = cluster.cli("--json", "verify", "--yes", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [
        ("plan", True), (WRITE, True), ("switch over node1 -> node2", True),
        (READ, False), ("switch back node2 -> node1", True), ("clean up", True)]
    detail = report["steps"][3]["detail"]
    assert detail.startswith("content mismatch read from node1: sha256 ")
    assert "corrupted" in detail
    assert nodes.calls[1] == ("node1", "read", "node2")
    assert cluster.item("cluster")["active"] == "node1"


def test_no_healthy_standby_stops_before_touching_anything(cluster: FakeCluster) -> None:
    cluster.agents["node2"].efs_ok = False
    cluster.tick()
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", "--yes", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    [only] = _lines(result.stdout)
    assert only.startswith("FAIL plan: node1 is active but no other node is healthy")
    assert nodes.calls == [] and cluster.lambda_client.events == []


def test_failed_write_skips_the_switchover(cluster: FakeCluster) -> None:
    cluster.agents["node1"].efs_ok = False  # node1 stops serving; still active in the table
    cluster.tick()
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", "--yes", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    assert f"FAIL {WRITE}: create bucket efs-ha-verify-" in result.stdout
    assert "from node2: HTTP 000 (MinIO not reachable from node2 through the VIP; active node1, routes -> node1)" \
        in result.stdout
    assert "WARN clean up" in result.stdout
    assert nodes.calls == [("node2", "write", None), ("node2", "cleanup", None)]
    assert cluster.lambda_client.events == []


def test_write_follows_the_route_table_of_the_clients_subnet(cluster: FakeCluster) -> None:
    """A VIP route in node2's table that points back at node2 (no VIP on its lo) reaches no MinIO: the write
    really depends on the route tables, and the detail says where they point."""
    nodes = FakeNodes(cluster)
    cluster.set_route(nodes.table_of["node2"], cluster.agents["node2"].eni)

    result = cluster.cli("verify", "--yes", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    assert f"FAIL {WRITE}: create bucket" in result.stdout
    assert "routes -> node1 x2, node2 x1" in result.stdout
    assert nodes.calls[0] == ("node2", "write", None)
    assert cluster.lambda_client.events == []


def test_a_standby_holding_the_vip_is_not_used_as_the_client(cluster: FakeCluster) -> None:
    """A standby that reports MinIO serving has the VIP on its own lo: its request would never reach the
    route tables, so nothing is sent and nothing is switched."""
    # (a serving node reports its watchdog armed: `ready` while serving is no standby the checker counts on)
    cluster.clock.on_sleep.append(lambda: cluster.heartbeat(cluster.agents["node2"], serving=True, seen_epoch=1,
                                                            watchdog="armed"))
    nodes = FakeNodes(cluster)

    result = cluster.cli("verify", "--yes", hooks=cluster.hooks(command_runner=nodes))

    assert result.exit_code == 1
    assert [line.split(":")[0] for line in _lines(result.stdout)] == ["PASS plan", f"FAIL {WRITE}"]
    assert "node2 reports MinIO serving, so the VIP is on its own lo" in result.stdout
    assert nodes.calls == [] and cluster.lambda_client.events == []


def test_under_moto_ssm_the_real_runner_finds_no_result(cluster: FakeCluster) -> None:
    """moto accepts SendCommand and reports Success with empty output: the parser must call that a failure."""
    result = cluster.cli("verify", "--yes")

    assert result.exit_code == 1
    node2 = cluster.agents["node2"].instance_id
    assert f"FAIL {WRITE}: command on node2 ({node2}) ended Success without a result" in result.stdout
    assert "verify FAILED" in result.stdout
    assert cluster.lambda_client.events == []


def test_ssm_runner_sends_the_write_to_the_standby_instance(cluster: FakeCluster) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    sent: list[dict[str, Any]] = []
    # moto's ListCommands reports every instance for a command without targets, so record the request.
    ssm.meta.events.register("provide-client-params.ssm.SendCommand",
                             lambda params, **_: sent.append(dict(params)))

    cluster.cli("verify", "--yes", hooks=cluster.hooks(command_runner=lambda app: SsmRunner(ssm, app.clock)))

    node2 = cluster.agents["node2"].instance_id
    assert [(c["InstanceIds"], c["DocumentName"]) for c in sent] == [([node2], "AWS-RunShellScript")] * 2
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
    assert 'body_sha256=$(sha256sum "$body" | cut -d\' \' -f1)' in read_script(TARGET)
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


# ---------------------------------------------------------------- the real scripts, in bash, over loopback
class StubS3(http.server.BaseHTTPRequestHandler):
    """A MinIO stand-in on 127.0.0.1: buckets and objects in memory, SigV4 requests from minio-admin only."""

    objects: dict[str, bytes]
    buckets: set[str]
    tamper: bool

    def _answer(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        auth = self.headers.get("Authorization", "")
        if "Credential=minio-admin/" not in auth or "/eu-west-1/s3/aws4_request" not in auth:
            return self._answer(403)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        bucket, _, key = self.path.lstrip("/").partition("/")
        store = type(self)
        if self.command == "PUT":
            if key:
                store.objects[self.path] = body
            else:
                store.buckets.add(bucket)
            return self._answer(200)
        if self.command == "GET":
            found = store.objects.get(self.path)
            return self._answer(404) if found is None else self._answer(200, found + (b"!" if store.tamper else b""))
        if self.command == "DELETE":
            if key:
                store.objects.pop(self.path, None)
            else:
                store.buckets.discard(bucket)
            return self._answer(204)
        return self._answer(405)

    do_PUT = do_GET = do_DELETE = _handle

    def log_message(self, *_: Any) -> None:
        pass


class BashRunner:
    """Runs each script with bash on this machine, as SSM would on a node (a stub `aws` on PATH)."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self.instances: list[str] = []

    def run(self, instance_id: str, script: str) -> CommandResult:
        self.instances.append(instance_id)
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=self._env, timeout=60)
        return CommandResult("Success" if done.returncode == 0 else "Failed", done.stdout, done.stderr)


@pytest.fixture
def loopback_s3(tmp_path: Any) -> Iterator[tuple[int, type[StubS3], dict[str, str]]]:
    store = type("Store", (StubS3,), {"objects": {}, "buckets": set(), "tamper": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), store)
    # A short poll interval: shutdown() waits for the next poll (0.5 s by default) in every teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    # Answers only the exact call the prelude makes (secret read in the secret's own region).
    aws.write_text(f"""#!/bin/bash
[ "$*" = "secretsmanager get-secret-value --region eu-central-1 --secret-id {TARGET.secret_arn} \\
--query SecretString --output text" ] || {{ echo "unexpected aws call: $*" >&2; exit 1; }}
echo '{{"username": "minio-admin", "password": "pw"}}'
""")
    aws.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    try:
        yield server.server_address[1], store, env
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _two_node_status(active: list[str]) -> Callable[[], dict[str, Any]]:
    def status() -> dict[str, Any]:
        nodes = {name: {"healthy": True, "instance_id": f"i-{name}", "serving": name == active[0]}
                 for name in ("node1", "node2")}
        routes = [{"route_table_id": "rtb-1", "target_eni": f"eni-{active[0]}", "target_node": active[0]}]
        return {"cluster": {"active": active[0], "phase": "stable"}, "nodes": nodes, "route_tables": routes}
    return status


@pytest.mark.parametrize("tamper", [False, True])
def test_the_real_scripts_over_loopback_compare_the_sha256(
        loopback_s3: tuple[int, type[StubS3], dict[str, str]], tamper: bool) -> None:
    port, store, env = loopback_s3
    store.tamper = tamper
    target = Target(vip="127.0.0.1", region=TARGET.region, secret_arn=TARGET.secret_arn, bucket=TARGET.bucket,
                    port=port)
    active = ["node1"]

    def switch(node: str) -> str:
        active[0] = node
        return f"-> {node}"

    runner = BashRunner(env)
    content = "efs-ha verify it's a \"quoted\" $HOME `x` test"
    report = Verifier(target, runner, _two_node_status(active), switch, FakeClock(), content=content).run()

    steps = {s.name.split(" ")[0]: s for s in report.steps}
    assert [s.ok for s in report.steps] == [True, True, True, not tamper, True, True], report.to_json()
    assert runner.instances == ["i-node2", "i-node1", "i-node2"]
    assert store.objects == {} and store.buckets == set()
    digest = hashlib.sha256(content.encode()).hexdigest()
    if tamper:
        assert steps["read"].detail.startswith(f"content mismatch read from node1: sha256 "
                                               f"{hashlib.sha256(content.encode() + b'!').hexdigest()[:12]} "
                                               f"({len(content) + 1} bytes, starts {content + '!'!r})")
    else:
        assert steps["read"].detail.endswith(f"content matches (sha256 {digest[:12]})")
