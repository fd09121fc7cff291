"""`efs-ha`: operate a deployed EFS HA cluster (status, switchover, maintenance, verify).

Every resource is found through the CloudFormation stack's outputs; status is computed locally from the
state table and EC2 with the checker's own code; actions go to the checker Lambda, or to the state table
when the Lambda cannot be invoked (throttled by a reservation or the account's limit; docs/failover-design.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError

from efs_ha_cli.ca_cert import MINIO_CA_SECRET_ARN, read_ca_certificate
from efs_ha_cli.checker_api import CheckerFunction, Throttled, set_maintenance_flag
from efs_ha_cli.cluster import read_full_status, read_status, state_store
from efs_ha_cli.confirm import DEFAULT_TIMEOUT_SECONDS as CONFIRM_TIMEOUT_SECONDS
from efs_ha_cli.confirm import FenceConfirmer
from efs_ha_cli.context import App, Hooks
from efs_ha_cli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    AwsAccessError,
    CliError,
    Refused,
    describe_aws_error,
    one_line_errors,
)
from efs_ha_cli.image import image as image_group
from efs_ha_cli.preflight import preflight as preflight_command
from efs_ha_cli.render import (
    print_json,
    progress_view,
    status_view,
    stdout_console,
    step_line,
    verify_summary,
)
from efs_ha_cli.stack import (
    CHECKER_OUTPUTS,
    FAILOVER_FUNCTION_NAME,
    MINIO_SECRET_ARN,
    VERIFY_OUTPUTS,
    _is_missing_stack,
    default_stack_name,
)
from efs_ha_cli.switchover import DEFAULT_TIMEOUT_SECONDS, Switcher, SwitchResult
from efs_ha_cli.verdict import UNKNOWN, seconds
from efs_ha_cli.verify import CommandRunner, SsmRunner, StepResult, Target, Verifier, new_bucket_name
from failover_lambda.aws import AwsUnavailable

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


JSON_REQUESTED = "efs_ha.json"
# `status --require-healthy --wait`: after a deploy that replaced nodes, boot, EFS mount and MinIO start take minutes.
GATE_WAIT_SECONDS = 900.0


class EfsHaGroup(click.Group):
    """Runs every command under one_line_errors: an operator never sees a traceback. Usage errors exit 64 (not
    click's 2, which `status` uses for DOWN); under `--json` every error is also a JSON object on stdout."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[JSON_REQUESTED] = "--json" in args
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            _json_error(ctx, _as_usage(error))
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with one_line_errors():
                return super().invoke(ctx)
        except click.UsageError as error:
            _json_error(ctx, _as_usage(error))
            raise
        except click.ClickException as error:
            _json_error(ctx, error)
            raise


def _as_usage(error: click.UsageError) -> click.UsageError:
    vars(error)["exit_code"] = EXIT_USAGE  # this instance only (click declares exit_code a class variable)
    return error


def _json_error(ctx: click.Context, error: click.ClickException) -> None:
    """`{"ok": false, "error": ..., "kind": ..., "exit_code": ...}` on stdout when JSON was asked for (the
    one-line message still goes to stderr); `status` adds `"verdict": "UNKNOWN"`."""
    app = ctx.obj if isinstance(ctx.obj, App) else None
    if not (ctx.meta.get(JSON_REQUESTED) or (app is not None and app.json_output)):
        return
    kind = "usage" if isinstance(error, click.UsageError) else getattr(error, "kind", "error")
    payload: dict[str, Any] = {"ok": False, "error": error.format_message(), "kind": kind,
                               "exit_code": error.exit_code}
    if ctx.invoked_subcommand == "status" or ctx.info_name == "status":
        payload["verdict"] = UNKNOWN
    print_json(payload)


def json_option(command: F) -> F:
    """`--json` after the command name too (`efs-ha status --json`), same as the global flag."""

    def enable(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(App).json_output = True

    return click.option("--json", "json_output", is_flag=True, expose_value=False, callback=enable,
                        help="Print machine-readable JSON instead of tables.")(command)


@click.group(cls=EfsHaGroup, context_settings=CONTEXT_SETTINGS)
@click.option("--stack-name", default=default_stack_name, metavar="NAME",
              show_default="context stack_name of ./cdk.json, else EfsHaCluster",
              help="CloudFormation stack of the cluster; all resources are found through its outputs.")
@click.option("--region", default=None, metavar="REGION",
              help="AWS region of the stack. Default: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's.")
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON instead of tables.")
@click.pass_context
def cli(ctx: click.Context, stack_name: str, region: str | None, json_output: bool) -> None:
    """Operate a deployed EFS HA cluster: status, planned switchover, maintenance mode, acceptance check.

    \b
    Exit codes:
      0   success (status: HEALTHY)
      1   the command failed (status: DEGRADED)
      2   status: DOWN
      3   status: UNKNOWN, cannot tell
      4   refused: by the checker, by a precheck, or not confirmed
      5   timed out waiting
      6   AWS access: credentials, region, permissions, throttling, AWS unreachable
      64  usage error
      130 interrupted (Ctrl-C)
    With --json every error is also printed to stdout as
    {"ok": false, "error": ..., "kind": ..., "exit_code": ...}.
    """
    hooks = ctx.obj if isinstance(ctx.obj, Hooks) else None
    ctx.obj = App(stack_name=stack_name, region=region, json_output=json_output, hooks=hooks)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C; the exit code is the last verdict's.")
@click.option("--interval", type=click.FloatRange(min=0.5), default=2.0, show_default=True, metavar="SECONDS",
              help="Seconds between refreshes with --watch.")
@click.option("--refreshes", type=click.IntRange(min=1), default=None, hidden=True,
              help="Stop --watch after this many refreshes (tests, scripts).")
@click.option("--require-healthy", is_flag=True,
              help="Deploy gate: exit 0 only when HEALTHY, else the code of the worst problem (below).")
@click.option("--wait", is_flag=True, help="With --require-healthy: re-read every --interval seconds until "
              "HEALTHY or --timeout, then exit with the last reading's code.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help=f"With --wait: give up after this many seconds.  [default: {GATE_WAIT_SECONDS:g}]")
@click.option("--if-deployed", is_flag=True,
              help="With --require-healthy: a stack that does not exist yet passes (a first deploy).")
@json_option
@click.pass_obj
def status(app: App, watch: bool, interval: float, refreshes: int | None, require_healthy: bool, wait: bool,
           timeout: float | None, if_deployed: bool) -> None:
    """A one-line verdict, then the active node, epoch and phase, maintenance, the checker's liveness, every
    node's health and the VIP route of every route table, with a next step for each problem.

    \b
    Verdicts and exit codes:
      0  HEALTHY   the active node serves, every VIP route points at it, a healthy
                   standby can take over, failover is on, the checker is probing
      1  DEGRADED  served, but the next failure would be an outage or needs you:
                   no failover target, maintenance on, checker silent, some
                   route tables drifted
      2  DOWN      not served now: no active node (takeover fencing), the active
                   node down or failing, or no route table points at it
      3  UNKNOWN   cannot tell: the checker has not initialised the cluster, the
                   VIP routes cannot be read, or status failed (stack, table)
      6  AWS access (credentials, region, permissions, throttling);
         64 usage error, 130 interrupted: as for every command (`efs-ha --help`)

    \b
    With --require-healthy (the deploy gate), instead of 1 and 2:
      0   HEALTHY
      10  takeover in progress (no active node, or the active node is shutting down)
      11  the active node down or failing, or no VIP route to it
      12  no healthy standby (no failover target)
      13  maintenance on
      14  checker silent (no automatic failover)
      15  some route tables send the VIP elsewhere
      3   cannot tell (not initialised, routes unreadable, status failed)
    The worst problem decides (the order above); --json adds
    "gate": {"exit_code": ..., "blocked_by": [...]} (always present).

    A node counts as up only while this machine sees its lease renewals (lease_seq growing, on this machine's
    clock; the first reading watches for about one renewal period). A node without one is shown `down` with
    its last report marked as such. A standby's stopped MinIO is normal. Route tables whose VIP route does not
    point at the active node's ENI are flagged DRIFT. Computed from the state table and EC2 directly (not by
    invoking the checker). --json keeps `ok` for "the call worked" and adds `verdict`, `reasons`, `hints`.
    """
    if require_healthy:
        if watch:
            raise click.UsageError("--watch and --require-healthy do not go together: --require-healthy --wait "
                                   "waits for HEALTHY")
        raise click.exceptions.Exit(_gate(app, wait, interval, timeout, if_deployed))
    for flag, given in (("--wait", wait), ("--timeout", timeout is not None), ("--if-deployed", if_deployed)):
        if given:
            raise click.UsageError(f"{flag} needs --require-healthy")
    count = 0
    code = EXIT_UNKNOWN
    try:
        while True:
            code = _show_status(app, watch=watch, clear=watch and count > 0)
            count += 1
            if not watch or (refreshes is not None and count >= refreshes):
                break
            app.clock.sleep(interval)
    except KeyboardInterrupt:
        if not watch or count == 0:
            raise
    raise click.exceptions.Exit(code)


class StatusUnknown(CliError):
    exit_code = EXIT_UNKNOWN


def _gate(app: App, wait: bool, interval: float, timeout: float | None, if_deployed: bool) -> int:
    """The deploy gate: the verdict's gate code, waiting for HEALTHY with --wait. Only the last reading is
    shown in full; each earlier one is a progress line on stderr."""
    if if_deployed and not _stack_exists(app):
        click.echo(f"efs-ha: stack {app.stack_name} is not deployed yet: nothing to protect, the gate passes",
                   err=True)
        return EXIT_OK
    limit = timeout if timeout is not None else GATE_WAIT_SECONDS
    start = app.clock.monotonic()
    while True:
        report, error = _gate_reading(app, wait)
        code = int(report["gate"]["exit_code"]) if report else EXIT_UNKNOWN
        waited = app.clock.monotonic() - start
        if code == EXIT_OK or not wait or waited >= limit:
            break
        line = report["verdict_line"] if report else f"cannot tell: {error}"
        click.echo(f"efs-ha: waiting for HEALTHY ({seconds(waited)} of {seconds(limit)}): {line}", err=True)
        app.clock.sleep(interval)
    if report is None:
        raise StatusUnknown(f"still cannot tell after {seconds(waited)}: {error}")
    _print_report(app, report, watch=False, clear=False)
    if code != EXIT_OK:
        late = f"still not healthy after {seconds(limit)}; " if wait else ""
        click.echo(f"efs-ha: {late}not healthy (exit {code}, {', '.join(report['gate']['blocked_by'])}): "
                   f"{report['verdict_line']}", err=True)
    return code


def _stack_exists(app: App) -> bool:
    try:
        app.client("cloudformation").describe_stacks(StackName=app.stack_name)
    except ClientError as error:
        if _is_missing_stack(error):
            return False
        raise AwsAccessError(describe_aws_error(error)) from error
    except BotoCoreError as error:
        raise AwsAccessError(describe_aws_error(error)) from error
    return True


def _gate_reading(app: App, wait: bool) -> tuple[dict[str, Any] | None, str | None]:
    """One status reading; with --wait a "cannot tell" failure (e.g. outputs missing mid-update) is retried."""
    try:
        return _read_report(app), None
    except StatusUnknown as error:
        if not wait:
            raise
        return None, error.message


def _read_report(app: App) -> dict[str, Any]:
    try:
        return read_full_status(app)
    except AwsAccessError:
        raise
    except CliError as error:
        if error.exit_code == EXIT_FAILED:  # a failed status is "cannot tell", never DEGRADED
            raise StatusUnknown(error.message) from error
        raise
    except (BotoCoreError, ClientError, AwsUnavailable) as error:
        raise AwsAccessError(describe_aws_error(error)) from error


def _show_status(app: App, watch: bool, clear: bool) -> int:
    report = _read_report(app)
    _print_report(app, report, watch, clear)
    return int(report["exit_code"])


def _print_report(app: App, report: dict[str, Any], watch: bool, clear: bool) -> None:
    if app.json_output:
        if watch:
            click.echo(json.dumps(report, sort_keys=True, default=str))  # --watch: one JSON object per line
        else:
            print_json(report)
    else:
        console = stdout_console()
        if clear and console.is_terminal:
            console.clear()
        console.print(status_view(report))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--to", "target", required=True, metavar="NODE", help="Node to make active (see `efs-ha status`).")
@click.option("--timeout", type=click.FloatRange(min=1), default=DEFAULT_TIMEOUT_SECONDS, show_default=True,
              help="Seconds to wait for the routes to move and the node to serve.")
@json_option
@click.pass_obj
def switchover(app: App, target: str, timeout: float) -> None:
    """Planned move of the active role (and the VIP) to NODE.

    Invokes the checker Lambda; if the invoke is throttled the request is queued in the state
    table for its next probe. Then waits until every route table points at NODE and NODE serves.
    """
    result = _switch(app, target, timeout)
    if app.json_output:
        print_json(result.to_json())
    else:
        how = " (queued request)" if result.queued else ""
        stdout_console().print(f"switched over {result.source} -> {result.target} in {result.seconds:.1f}s{how}")


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("state", type=click.Choice(["on", "off"]))
@json_option
@click.pass_obj
def maintenance(app: App, state: str) -> None:
    """Suspend (on) or resume (off) automatic failover; drift is not repaired while on."""
    enabled = state == "on"
    app.outputs.require(*CHECKER_OUTPUTS)
    function = CheckerFunction(app.client("lambda"), app.outputs.get(FAILOVER_FUNCTION_NAME))
    try:
        answer = function.call({"action": "maintenance", "enabled": enabled})
        via = "checker"
    except Throttled:
        # The probe loop holds the slot; the flag is read by it on its next cycle.
        set_maintenance_flag(state_store(app), enabled, app.clock.now())
        via = "state table"
        answer = {"ok": True, "maintenance": enabled}
    if answer.get("ok") is not True:
        raise Refused(f"maintenance {state} refused: {answer.get('reason', 'no reason given')}")
    if app.json_output:
        print_json({"ok": True, "maintenance": enabled, "via": via})
    else:
        effect = "automatic failover suspended" if enabled else "automatic failover resumed"
        stdout_console().print(f"maintenance {state}: {effect} (set via the {via})")


@cli.command("confirm-fenced", context_settings=CONTEXT_SETTINGS)
@click.argument("node", metavar="NODE")
@click.option("--yes", is_flag=True, help="Confirm that NODE is down (required: this overrides fencing).")
@click.option("--timeout", type=click.FloatRange(min=1), default=CONFIRM_TIMEOUT_SECONDS, show_default=True,
              help="Seconds to wait for a queued request to be run.")
@json_option
@click.pass_obj
def confirm_fenced(app: App, node: str, yes: bool, timeout: float) -> None:
    """Operator override: NODE, whose fencing cannot be confirmed (e.g. StopInstances keeps failing), is down.

    Power the node off (or cut it from EFS) by other means first. The checker refuses when the evidence says
    otherwise: a lease renewal of NODE seen while it watches for the lease deadline, or EC2 showing NODE's
    instance pending/running. Otherwise it completes the takeover and records your confirmation.
    """
    if not yes:
        raise Refused(f"confirm-fenced states that {node} no longer serves MinIO; if that is wrong, two nodes "
                       f"serve one EFS directory. Re-run with --yes once you are sure")
    with progress_view(timeout) as view:
        result = FenceConfirmer(app, on_progress=view.update).run(node, timeout)
    if app.json_output:
        print_json(result)
    else:
        how = " (queued request)" if result["queued"] else ""
        stdout_console().print(f"{node} confirmed fenced; {result['active']} is active at epoch {result['epoch']}{how}")


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--timeout", type=click.FloatRange(min=1), default=DEFAULT_TIMEOUT_SECONDS, show_default=True,
              help="Seconds each of the two switchovers may take.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@json_option
@click.pass_obj
def verify(app: App, timeout: float, yes: bool) -> None:
    """Acceptance check from inside the VPC, via SSM Run Command on the nodes.

    It performs TWO LIVE SWITCHOVERS (clients see a few seconds of errors each), so it asks for confirmation;
    --yes skips the question, and without a terminal it refuses unless --yes is given (exit 4).

    Writes a bucket and object through the VIP from a healthy standby (the client: the VPC route tables take
    the request to the active node), switches over to that standby, reads the object back through the VIP
    from the old active node and compares its sha256, then switches back. Exit 1 on any failure.
    """
    if not yes:
        _confirm_verify()
    app.outputs.require(*VERIFY_OUTPUTS)
    target = Target(vip=app.settings.vip, region=app.region, secret_arn=app.outputs.get(MINIO_SECRET_ARN),
                    bucket=new_bucket_name(), ca_secret_arn=app.outputs.optional(MINIO_CA_SECRET_ARN))
    console = stdout_console()

    def on_step(step: StepResult) -> None:
        if not app.json_output:
            console.print(step_line(step))

    def switch(node: str) -> str:
        result = _switch(app, node, timeout)
        return f"{result.source} -> {result.target} in {result.seconds:.1f}s" + (" (queued)" if result.queued else "")

    report = Verifier(target, _runner(app), lambda: read_status(app), switch, app.clock, on_step).run()
    if app.json_output:
        print_json(report.to_json())
    else:
        console.print(verify_summary(report))
    if not report.ok:
        raise click.exceptions.Exit(1)


def interactive() -> bool:
    """Whether a person can answer a question (stdin and stderr are terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _confirm_verify() -> None:
    question = ("efs-ha verify performs two live switchovers (active -> standby -> back); clients see a few "
                "seconds of errors each time")
    if not interactive():
        raise Refused(f"{question}. No terminal to confirm it on: re-run with --yes")
    if not click.confirm(f"{question}. Continue?", default=False, err=True):
        raise Refused("verify not confirmed; nothing was changed")


def _switch(app: App, target: str, timeout: float) -> SwitchResult:
    with progress_view(timeout) as view:
        return Switcher(app, on_progress=view.update).run(target, timeout)


cli.add_command(json_option(preflight_command))
image_group.add_command(json_option(image_group.commands.pop("pin")))
cli.add_command(image_group)


@cli.command("ca-cert", context_settings=CONTEXT_SETTINGS)
@json_option
@click.pass_obj
def ca_cert(app: App) -> None:
    """Print the cluster's MinIO CA certificate (PEM) for clients to verify MinIO's TLS certificate with.

    \b
      efs-ha ca-cert > minio-ca.pem
      aws s3 ls --endpoint-url https://VIP:9000 --ca-bundle minio-ca.pem
      mc alias set efs-ha https://VIP:9000 USER PASSWORD   (CA in ~/.mc/certs/CAs/)

    Read from the CA-only secret of the stack output MinioCaSecretArn; exit 1 when the stack has `tls: off`.
    --json adds the certificate's SHA-256 fingerprint and the MinIO endpoint.
    """
    certificate = read_ca_certificate(app.outputs, app.client("secretsmanager"))
    if app.json_output:
        print_json(certificate.to_json())
    else:
        click.echo(certificate.pem, nl=False)


def _runner(app: App) -> CommandRunner:
    if app.hooks.command_runner is not None:
        return app.hooks.command_runner(app)
    return SsmRunner(app.client("ssm"), app.clock)
