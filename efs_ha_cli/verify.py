"""`efs-ha verify`: the seed's acceptance check, run on the nodes through SSM Run Command.

Each node has the VIP on `lo` (userdata efs-ha-vip.service), so a request to the VIP from a node is answered
by that node's own MinIO: the write runs on the active node, the read on the node that is active after the
switchover. The object surviving the move is the proof that data lives on EFS, not on a node.

Three separable parts, so tests need no real instance: scripts (pure strings), `parse_markers` (pure), and
`Verifier` (sequencing) that talks to a `CommandRunner` (SSM in production, a fake in tests).
"""

from __future__ import annotations

import base64
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from efs_ha_cli.errors import CliError, describe_aws_error
from failover_lambda.aws import AWS_ERRORS, AwsUnavailable
from failover_lambda.clock import Clock

MARKER = "EFSHA"
MINIO_PORT = 9000
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

    @property
    def secret_region(self) -> str:
        parts = self.secret_arn.split(":")
        return parts[3] if len(parts) > 3 and parts[3] else self.region


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
trap 'rm -f "$body"' EXIT
s3() {{  # s3 METHOD PATH [curl args]: prints the HTTP status (000 = no connection)
  local method=$1 path=$2; shift 2
  curl -sS -o "$body" -w '%{{http_code}}' --max-time 20 -X "$method" \\
    --aws-sigv4 {q(f"aws:amz:{target.region}:s3")} --user "$user:$pass" \\
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@" {q(f"http://{target.vip}:{MINIO_PORT}")}"$path" || true
}}
"""


def write_script(target: Target, content: str) -> str:
    path = f"/{target.bucket}/{target.key}"
    return _prelude(target) + f"""echo "{MARKER} create_bucket=$(s3 PUT /{target.bucket})"
echo "{MARKER} put_object=$(s3 PUT {shlex.quote(path)} --data-binary {shlex.quote(content)})"
"""


def read_script(target: Target) -> str:
    path = f"/{target.bucket}/{target.key}"
    return _prelude(target) + f"""echo "{MARKER} get_object=$(s3 GET {shlex.quote(path)})"
echo "{MARKER} body_b64=$(base64 -w0 "$body")"
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
    """write on the active node -> switch over -> read on the new active node and compare -> switch back.

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

    def run(self) -> VerifyReport:
        report = VerifyReport()
        started = self._clock.now()
        planned = self._step(report, "plan", self._plan)
        if isinstance(planned, _PlanDetail):
            self._sequence(report, planned.plan)
        report.seconds = self._clock.now() - started
        return report

    def _sequence(self, report: VerifyReport, plan: Plan) -> None:
        if self._step(report, f"write via VIP on {plan.origin}", self._write) is None:
            self._step(report, "clean up", self._cleanup, fatal=False)
            return
        if self._step(report, f"switch over {plan.origin} -> {plan.standby}",
                      lambda: self._switch(plan.standby)) is None:
            self._step(report, "clean up", self._cleanup, fatal=False)
            return
        self._step(report, f"read via VIP on {plan.standby}", self._read)
        # Always restore the original roles, whatever the read found.
        self._step(report, f"switch back {plan.standby} -> {plan.origin}", lambda: self._switch(plan.origin))
        self._step(report, "clean up", self._cleanup, fatal=False)

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
        return _PlanDetail(Plan(origin, standby), f"{origin} is active, {standby} is a healthy standby")

    def _active_instance(self) -> tuple[str, str]:
        report = self._status()
        active = report["cluster"]["active"]
        instance = report["nodes"].get(active or "", {}).get("instance_id")
        if not active or not instance:
            raise StepFailed("no active node with an instance to run the command on")
        return active, instance

    def _run(self, script: str) -> tuple[str, dict[str, str]]:
        node, instance = self._active_instance()
        result = self._runner.run(instance, script)
        markers = parse_markers(result.stdout)
        if result.status != "Success" or not markers:
            error = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise StepFailed(f"command on {node} ({instance}) ended {result.status} without a result: {error[0]}")
        return node, markers

    def _write(self) -> str:
        node, markers = self._run(write_script(self._target, self._content))
        _expect(markers, "create_bucket", f"create bucket {self._target.bucket}")
        _expect(markers, "put_object", f"put object {self._target.key}")
        return f"bucket {self._target.bucket}, object {self._target.key} ({len(self._content)} bytes) " \
               f"written through {self._target.vip} on {node}"

    def _read(self) -> str:
        node, markers = self._run(read_script(self._target))
        _expect(markers, "get_object", f"get object {self._target.key}")
        try:
            body = base64.b64decode(markers.get("body_b64", ""), validate=True).decode("utf-8", "replace")
        except ValueError:
            raise StepFailed(f"unreadable object body from {node}") from None
        if body != self._content:
            raise StepFailed(f"content mismatch on {node}: expected {self._content!r}, got {body[:80]!r}")
        return f"object read through {self._target.vip} on {node}, content matches"

    def _cleanup(self) -> str:
        node, markers = self._run(cleanup_script(self._target))
        codes = f"delete object {markers.get('delete_object', '?')}, delete bucket {markers.get('delete_bucket', '?')}"
        if not all(markers.get(k, "").startswith("2") for k in ("delete_object", "delete_bucket")):
            raise StepFailed(f"test bucket {self._target.bucket} may be left on EFS ({codes})")
        return f"test bucket removed on {node}"


@dataclass(frozen=True)
class _PlanDetail:
    plan: Plan
    detail: str


def _expect(markers: dict[str, str], key: str, what: str) -> None:
    code = markers.get(key, "")
    if not code.startswith("2"):
        raise StepFailed(f"{what}: HTTP {code or 'no answer'}" + (" (MinIO not reachable)" if code == "000" else ""))


def _message(error: Exception) -> str:
    return error.message if isinstance(error, CliError) else str(error)


def new_bucket_name() -> str:
    return f"efs-ha-verify-{uuid.uuid4().hex[:12]}"
