"""`efs-ha verify`: the seed's acceptance check, run on the nodes through SSM Run Command.

The VIP is on a node's `lo` only while MinIO runs there (userdata efs-ha-vip.service BindsTo=minio.service), so
from a standby node a request to the VIP leaves through the VPC route tables to the active node, exactly like any
client in the VPC. Each S3 request therefore runs on the node that is NOT active, which plays the client:

1. plan: origin = the active node, standby = a healthy standby;
2. write a bucket and object from the standby (client) through the VIP routes to the origin;
3. switch over origin -> standby;
4. read the object from the origin (now the client, no VIP on its `lo`) through the routes to the new active node,
   and compare its sha256 with what was written;
5. switch back standby -> origin, then delete the object and bucket from whichever node is standby by then.

The object surviving the move is the proof that data lives on EFS, not on a node; both requests reaching MinIO
from the other node is the proof that the route tables send the VIP to the active node.

Three separable parts, so tests need no real instance: scripts (pure strings), `parse_markers` (pure), and
`Verifier` (sequencing) that talks to a `CommandRunner` (SSM in production, a fake in tests).
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from efs_ha_cli.errors import CliError, describe_aws_error
from failover_lambda.aws import AWS_ERRORS, AwsUnavailable
from failover_lambda.clock import Clock

MARKER = "EFSHA"
MINIO_PORT = 9000
BODY_HEAD_BYTES = 64
SSM_DOCUMENT = "AWS-RunShellScript"
_AWS_FAILURES: tuple[type[Exception], ...] = (*AWS_ERRORS, AwsUnavailable)
TERMINAL_STATUSES = frozenset({"Success", "Failed", "Cancelled", "TimedOut", "Cancelling", "Undeliverable",
                               "Terminated", "InvalidPlatform", "AccessDenied", "DeliveryTimedOut",
                               "ExecutionTimedOut"})


@dataclass(frozen=True)
class CommandResult:
    status: str
    stdout: str
    stderr: str = ""


class CommandRunner(Protocol):
    def run(self, instance_id: str, script: str) -> CommandResult: ...


@dataclass(frozen=True)
class Target:
    """Where the S3 requests go and how they are signed; the same for every script of one run."""

    vip: str
    region: str
    secret_arn: str
    bucket: str
    key: str = "verify.txt"
    port: int = MINIO_PORT
    # MinIO over TLS (stack output MinioCaSecretArn): requests use https and verify against this CA.
    ca_secret_arn: str | None = None

    @property
    def secret_region(self) -> str:
        return _arn_region(self.secret_arn, self.region)

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.ca_secret_arn else 'http'}://{self.vip}:{self.port}"


def _arn_region(arn: str, default: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else default


# ---------------------------------------------------------------- scripts (run as root by AWS-RunShellScript)
def _prelude(target: Target) -> str:
    """Credentials from the secret, read on the node with its instance role (never printed, never sent back)."""
    q = shlex.quote
    return f"""set -euo pipefail
secret_json=$(aws secretsmanager get-secret-value --region {q(target.secret_region)} \\
  --secret-id {q(target.secret_arn)} --query SecretString --output text)
user=$(SECRET_JSON="$secret_json" python3 -c 'import json,os; print(json.loads(os.environ["SECRET_JSON"])["username"])')
pass=$(SECRET_JSON="$secret_json" python3 -c 'import json,os; print(json.loads(os.environ["SECRET_JSON"])["password"])')
body=$(mktemp)
ca_file=$(mktemp)
trap 'rm -f "$body" "$ca_file"' EXIT
{_ca_lines(target)}s3() {{  # s3 METHOD PATH [curl args]: prints the HTTP status (000 = no connection)
  local method=$1 path=$2; shift 2
  curl -sS -o "$body" -w '%{{http_code}}' --max-time 20 -X "$method" \\
    --aws-sigv4 {q(f"aws:amz:{target.region}:s3")} --user "$user:$pass" {_tls_option(target)}\\
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@" {q(target.endpoint)}"$path" || true
}}
"""


def _ca_lines(target: Target) -> str:
    """The cluster CA from its CA-only secret (a standby has not installed it: MinIO never started there)."""
    if not target.ca_secret_arn:
        return ""
    q = shlex.quote
    region = _arn_region(target.ca_secret_arn, target.region)
    return f"""ca_json=$(aws secretsmanager get-secret-value --region {q(region)} \\
  --secret-id {q(target.ca_secret_arn)} --query SecretString --output text)
CA_JSON="$ca_json" python3 -c 'import json,os; print(json.loads(os.environ["CA_JSON"])["ca_certificate"])' > "$ca_file"
"""


def _tls_option(target: Target) -> str:
    # The certificate names the VIP, so https://VIP verifies as is; curl checks the chain and the name.
    return '--cacert "$ca_file" ' if target.ca_secret_arn else ""


def write_script(target: Target, content: str) -> str:
    path = f"/{target.bucket}/{target.key}"
    return _prelude(target) + f"""echo "{MARKER} create_bucket=$(s3 PUT /{target.bucket})"
echo "{MARKER} put_object=$(s3 PUT {shlex.quote(path)} --data-binary {shlex.quote(content)})"
"""


def read_script(target: Target) -> str:
    """The object's sha256 and size, plus its first bytes for a readable mismatch report."""
    path = f"/{target.bucket}/{target.key}"
    return _prelude(target) + f"""echo "{MARKER} get_object=$(s3 GET {shlex.quote(path)})"
echo "{MARKER} body_sha256=$(sha256sum "$body" | cut -d' ' -f1)"
echo "{MARKER} body_bytes=$(wc -c < "$body")"
echo "{MARKER} body_head_b64=$(head -c {BODY_HEAD_BYTES} "$body" | base64 -w0)"
"""


def cleanup_script(target: Target) -> str:
    path = f"/{target.bucket}/{target.key}"
    return _prelude(target) + f"""echo "{MARKER} delete_object=$(s3 DELETE {shlex.quote(path)})"
echo "{MARKER} delete_bucket=$(s3 DELETE /{target.bucket})"
"""


def parse_markers(stdout: str) -> dict[str, str]:
    """`EFSHA key=value` lines of a command's output; everything else (curl noise, warnings) is ignored."""
    markers: dict[str, str] = {}
    for line in stdout.splitlines():
        head, _, rest = line.strip().partition(" ")
        key, sep, value = rest.partition("=")
        if head == MARKER and sep and key:
            markers[key.strip()] = value.strip()
    return markers


# ---------------------------------------------------------------- SSM
class SsmRunner:
    """Runs a script with AWS-RunShellScript and polls until it ends. A missing output is left to the parser."""

    def __init__(self, ssm: Any, clock: Clock, timeout_seconds: float = 120.0, poll_seconds: float = 1.0) -> None:
        self._ssm = ssm
        self._clock = clock
        self._timeout = timeout_seconds
        self._poll = poll_seconds

    def run(self, instance_id: str, script: str) -> CommandResult:
        command = self._ssm.send_command(
            InstanceIds=[instance_id], DocumentName=SSM_DOCUMENT, Comment="efs-ha verify",
            Parameters={"commands": script.splitlines()}, TimeoutSeconds=int(self._timeout))["Command"]
        deadline = self._clock.now() + self._timeout
        while True:
            invocation = self._invocation(command["CommandId"], instance_id) or {}
            status = str(invocation.get("Status", "Pending"))
            if status in TERMINAL_STATUSES:
                return CommandResult(status, str(invocation.get("StandardOutputContent", "")),
                                     str(invocation.get("StandardErrorContent", "")))
            if self._clock.now() >= deadline:
                return CommandResult("TimedOut", "", f"no result from SSM within {self._timeout:.0f}s")
            self._clock.sleep(self._poll)

    def _invocation(self, command_id: str, instance_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except AWS_ERRORS as error:
            # Right after SendCommand the invocation may not exist yet.
            if getattr(error, "response", {}).get("Error", {}).get("Code") == "InvocationDoesNotExist":
                return None
            raise
        return result


# ---------------------------------------------------------------- sequencing
@dataclass(frozen=True)
class StepResult:
    name: str
    ok: bool
    detail: str
    seconds: float
    # A failed non-fatal step (cleanup) is reported but does not fail the check.
    fatal: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 3),
                "fatal": self.fatal}


@dataclass
class VerifyReport:
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok or not s.fatal for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": round(self.seconds, 3), "steps": [s.to_json() for s in self.steps]}


class StepFailed(Exception):
    """A step's outcome was wrong (status code, content); the message is the step's detail line."""


@dataclass(frozen=True)
class Plan:
    origin: str
    standby: str


class Verifier:
    """write from the standby -> switch over -> read from the old active node and compare -> switch back.

    Every S3 request runs on a node that is not active (the client), so it reaches MinIO through the VIP routes.
    `status()` returns failover_lambda's status report; `switch(node)` performs a switchover and returns a
    one-line summary (raising CliError on failure); `on_step` sees each step as soon as it ends.
    """

    def __init__(self, target: Target, runner: CommandRunner, status: Callable[[], dict[str, Any]],
                 switch: Callable[[str], str], clock: Clock,
                 on_step: Callable[[StepResult], None] | None = None, content: str | None = None) -> None:
        self._target = target
        self._runner = runner
        self._status = status
        self._switch = switch
        self._clock = clock
        self._on_step = on_step or (lambda _step: None)
        self._content = content or f"efs-ha verify {uuid.uuid4().hex}"
        self._sent_write = False

    def run(self) -> VerifyReport:
        report = VerifyReport()
        started = self._clock.now()
        planned = self._step(report, "plan", self._plan)
        if isinstance(planned, _PlanDetail):
            self._sequence(report, planned.plan)
        report.seconds = self._clock.now() - started
        return report

    def _sequence(self, report: VerifyReport, plan: Plan) -> None:
        def cleanup() -> str:
            return self._cleanup(plan)

        if self._step(report, f"write from client {plan.standby} through the VIP routes to {plan.origin}",
                      lambda: self._write(plan.standby)) is None:
            if self._sent_write:  # the bucket may exist even though the step failed
                self._step(report, "clean up", cleanup, fatal=False)
            return
        if self._step(report, f"switch over {plan.origin} -> {plan.standby}",
                      lambda: self._switch(plan.standby)) is None:
            self._step(report, "clean up", cleanup, fatal=False)
            return
        self._step(report, f"read from client {plan.origin} through the VIP routes to {plan.standby}",
                   lambda: self._read(plan.origin))
        # Always restore the original roles, whatever the read found.
        self._step(report, f"switch back {plan.standby} -> {plan.origin}", lambda: self._switch(plan.origin))
        self._step(report, "clean up", cleanup, fatal=False)

    def _step(self, report: VerifyReport, name: str, action: Callable[[], Any], fatal: bool = True) -> Any:
        """Run one step; its result, or None when it failed (the failure is recorded, never raised)."""
        started = self._clock.now()
        try:
            outcome = action()
            ok, detail = True, outcome.detail if isinstance(outcome, _PlanDetail) else str(outcome)
        except (StepFailed, CliError) as error:
            outcome, ok, detail = None, False, _message(error)
        except _AWS_FAILURES as error:
            outcome, ok, detail = None, False, describe_aws_error(error)
        step = StepResult(name, ok, detail, self._clock.now() - started, fatal)
        report.steps.append(step)
        self._on_step(step)
        return outcome

    def _plan(self) -> _PlanDetail:
        report = self._status()
        cluster = report["cluster"]
        origin = cluster["active"]
        if origin is None or cluster["phase"] != "stable":
            raise StepFailed(f"no stable active node (phase {cluster['phase']}); see `efs-ha status`")
        standby = next((name for name, node in report["nodes"].items()
                        if name != origin and node["healthy"]), None)
        if standby is None:
            raise StepFailed(f"{origin} is active but no other node is healthy; nothing to switch over to")
        return _PlanDetail(Plan(origin, standby), f"{origin} is active, {standby} is a healthy standby "
                                                  f"(the client for the write)")

    def _client(self, client: str, through_routes: bool = True) -> _Client:
        """Where a request from `client` goes. `through_routes`: it must be a node without the VIP on its `lo`,
        so that the VPC route tables, not its own MinIO, decide who answers (the cleanup does not care)."""
        report = self._status()
        active = report["cluster"]["active"]
        node = report["nodes"].get(client, {})
        instance = node.get("instance_id")
        if not instance:
            raise StepFailed(f"no instance for {client} to run the command on")
        if client == active:
            raise StepFailed(f"{client} is the active node now: a request from it would not go through the "
                             f"VPC route tables")
        if through_routes and node.get("serving"):
            raise StepFailed(f"{client} reports MinIO serving, so the VIP is on its own lo: a request from it "
                             f"would not go through the VPC route tables")
        return _Client(client, instance, active, _routes_note(report))

    def _run(self, client: _Client, script: str) -> dict[str, str]:
        result = self._runner.run(client.instance, script)
        markers = parse_markers(result.stdout)
        if result.status != "Success" or not markers:
            error = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise StepFailed(f"command on {client.node} ({client.instance}) ended {result.status} "
                             f"without a result: {error[0]}")
        return markers

    def _write(self, node: str) -> str:
        client = self._client(node)
        self._sent_write = True
        markers = self._run(client, write_script(self._target, self._content))
        tls = self._target.ca_secret_arn is not None
        _expect(markers, "create_bucket", f"create bucket {self._target.bucket}", client, tls)
        _expect(markers, "put_object", f"put object {self._target.key}", client, tls)
        return f"bucket {self._target.bucket}, object {self._target.key} ({len(self._content.encode())} bytes, " \
               f"sha256 {_sha256(self._content)[:12]}) written from {client.node} through " \
               f"{self._target.vip} ({client.routes})"

    def _read(self, node: str) -> str:
        client = self._client(node)
        markers = self._run(client, read_script(self._target))
        _expect(markers, "get_object", f"get object {self._target.key}", client, self._target.ca_secret_arn is not None)
        got = markers.get("body_sha256", "")
        if not got:
            raise StepFailed(f"no checksum of the object in the output from {client.node}")
        expected = _sha256(self._content)
        if got != expected:
            try:
                head = base64.b64decode(markers.get("body_head_b64", ""), validate=True).decode("utf-8", "replace")
            except ValueError:
                head = "?"
            raise StepFailed(f"content mismatch read from {client.node}: sha256 {got[:12]} "
                             f"({markers.get('body_bytes', '?')} bytes, starts {head!r}), expected {expected[:12]} "
                             f"({len(self._content.encode())} bytes, {self._content[:BODY_HEAD_BYTES]!r})")
        return f"object read from {client.node} through {self._target.vip} ({client.routes}), " \
               f"content matches (sha256 {got[:12]})"

    def _cleanup(self, plan: Plan) -> str:
        # From whichever node is standby now: the origin after a completed switchover, the standby otherwise.
        active = self._status()["cluster"]["active"]
        client = self._client(plan.origin if active == plan.standby else plan.standby, through_routes=False)
        markers = self._run(client, cleanup_script(self._target))
        codes = f"delete object {markers.get('delete_object', '?')}, delete bucket {markers.get('delete_bucket', '?')}"
        if not all(markers.get(k, "").startswith("2") for k in ("delete_object", "delete_bucket")):
            raise StepFailed(f"test bucket {self._target.bucket} may be left on EFS ({codes})")
        return f"test bucket removed from {client.node} through {self._target.vip} ({client.routes})"


@dataclass(frozen=True)
class _Client:
    node: str
    instance: str
    active: str | None
    routes: str


def _routes_note(report: dict[str, Any]) -> str:
    """Where the VIP route tables point, e.g. `routes -> node1` or `routes -> node1 x2, node2 x1`."""
    targets = Counter(r.get("target_node") or r.get("target_eni") or "nothing" for r in report.get("route_tables", []))
    if not targets:
        return "no VIP route tables"
    if len(targets) == 1:
        return f"routes -> {next(iter(targets))}"
    return "routes -> " + ", ".join(f"{name} x{count}" for name, count in sorted(targets.items()))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class _PlanDetail:
    plan: Plan
    detail: str


def _expect(markers: dict[str, str], key: str, what: str, client: _Client, tls: bool = False) -> None:
    code = markers.get(key, "")
    if not code.startswith("2"):
        certificate = ", or its TLS certificate did not verify against the cluster CA" if tls else ""
        unreachable = f" (MinIO not reachable from {client.node} through the VIP{certificate}; active " \
                      f"{client.active or 'none'}, {client.routes})" if code == "000" else ""
        raise StepFailed(f"{what} from {client.node}: HTTP {code or 'no answer'}{unreachable}")


def _message(error: Exception) -> str:
    return error.message if isinstance(error, CliError) else str(error)


def new_bucket_name() -> str:
    return f"efs-ha-verify-{uuid.uuid4().hex[:12]}"
