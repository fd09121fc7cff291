"""`efs-ha preflight`: before the first deploy, can this account and region run the stack as configured?

Reads the project's configuration (cdk.json + `-c` overrides, validated like `cdk synth`), then asks AWS one
question per check. Nothing is created or changed; no synthesis.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from efs_ha_cli.context import App
from efs_ha_cli.errors import EXIT_AWS, EXIT_FAILED, EXIT_OK
from efs_ha_cli.preflight_checks import (
    BOOTSTRAP_QUALIFIER_CONTEXT,
    DEFAULT_BOOTSTRAP_QUALIFIER,
    OK,
    PROBLEM,
    AccountChecks,
    Check,
    Zones,
    skipped,
)
from efs_ha_cli.preflight_config import ProjectConfig, known_keys, load_project_config, parse_overrides
from efs_ha_cli.render import print_json

if TYPE_CHECKING:
    from cluster_config import ClusterConfig

# The default zone count (cluster_config.AZ_COUNT; not imported here so that `efs-ha --help` never needs the project
# checkout): the stack places one NAT gateway and its Elastic IP in each zone the config names.
ZONE_COUNT = 2
SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class PreflightReport:
    region: str
    account: str | None
    checks: tuple[Check, ...]

    @property
    def exit_code(self) -> int:
        """1 when a check found a problem; 6 when the only problems are checks that AWS did not let us make."""
        problems = [check for check in self.checks if check.status == PROBLEM]
        if any(not check.aws_error for check in problems):
            return EXIT_FAILED
        return EXIT_AWS if problems else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "ready": self.exit_code == EXIT_OK, "region": self.region, "account": self.account,
                "problems": sum(check.status == PROBLEM for check in self.checks),
                "checks": [check.to_json() for check in self.checks], "exit_code": self.exit_code}


def run_preflight(clients: Callable[[str], Any], region: str, project: ProjectConfig) -> PreflightReport:
    aws = AccountChecks(clients, region)
    checks = [project.config_check, project.minio_check]
    credentials, account = aws.credentials()
    checks.append(credentials)
    if account is None:
        later = ("cdk-bootstrap", "lambda-concurrency", "availability-zones", "instance-type", "lambda-vpc-zones",
                 "interface-endpoints", "elastic-ips", "nat-gateways", "ami")
        checks += [skipped(name, "needs a passing credentials check (see credentials)") for name in later]
        return PreflightReport(region, None, tuple(checks))
    qualifier = str(project.context.get(BOOTSTRAP_QUALIFIER_CONTEXT) or DEFAULT_BOOTSTRAP_QUALIFIER)
    checks.append(aws.bootstrap(qualifier))
    checks += _config_checks(aws, project)
    checks.append(aws.ami(project.config.node_images.as_dict() if project.config is not None else None))
    return PreflightReport(region, account, tuple(checks))


def _config_checks(aws: AccountChecks, project: ProjectConfig) -> list[Check]:
    """The checks that depend on the configuration (reservation, zones, instance type) and on the zones."""
    config = project.config
    if config is None:
        why = "needs a valid config (see config)"
        needing = ("lambda-concurrency", "availability-zones", "instance-type", "lambda-vpc-zones",
                   "interface-endpoints")
        return [skipped(name, why) for name in needing] + [aws.elastic_ips(ZONE_COUNT), skipped("nat-gateways", why)]
    checks = [aws.lambda_concurrency(config.checker_reserved_concurrency)]
    zone_check, zones = aws.zones(config.availability_zones, config.availability_zones_are_ids, config.zone_count)
    checks.append(zone_check)
    checks += _zone_checks(aws, zones, config)
    return checks


def _zone_checks(aws: AccountChecks, zones: Zones | None, config: ClusterConfig) -> list[Check]:
    count = config.zone_count
    if zones is None:
        why = f"needs the {count} availability zones (see availability-zones)"
        return [skipped("instance-type", why), skipped("lambda-vpc-zones", why),
                skipped("interface-endpoints", why), aws.elastic_ips(count), skipped("nat-gateways", why)]
    return [aws.instance_type(config.instance_type, zones, config.availability_zones_are_ids),
            aws.lambda_vpc_zones(zones), _endpoints_check(aws, zones, config), aws.elastic_ips(count),
            aws.nat_gateways(zones)]


def _endpoints_check(aws: AccountChecks, zones: Zones, config: ClusterConfig) -> Check:
    if not config.interface_endpoints:
        return skipped("interface-endpoints", "interface_endpoints is off (the APIs go through the NATs)")
    # The config loaded, so the checkout's cluster_config is importable.
    endpoints = importlib.import_module("cluster_config.endpoints")
    services = {short: endpoints.service_name(aws.region, short) for short in endpoints.INTERFACE_ENDPOINT_SERVICES}
    return aws.interface_endpoints(zones, services)


def render_text(report: PreflightReport) -> str:
    width = max(len(check.name) for check in report.checks)
    lines = [f"efs-ha preflight: region {report.region}, account {report.account or 'unknown'}"]
    for check in report.checks:
        status = {OK: "ok", PROBLEM: "PROBLEM"}.get(check.status, check.status)
        lines.append(f"  {status:<8} {check.name:<{width}}  {check.summary}")
        if check.fix:
            lines.append(f"  {'':<8} {'':<{width}}  fix: {check.fix}")
    problems = sum(check.status == PROBLEM for check in report.checks)
    if report.exit_code == EXIT_OK:
        lines.append(f"ready: all {len(report.checks)} checks passed or do not apply; next: cdk deploy")
    else:
        lines.append(f"not ready: {problems} problem(s); fix them and run efs-ha preflight again")
    return "\n".join(lines)


@click.command("preflight", context_settings=SETTINGS)
@click.option("-c", "--context", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a cdk.json context key, as with `cdk deploy -c KEY=VALUE` (repeatable).")
@click.pass_obj
def preflight(app: App, overrides: tuple[str, ...]) -> None:
    """Before the first deploy: can this account and region run the stack as configured?

    Reads ./cdk.json (plus -c overrides) and validates it as `cdk synth` does, without synthesizing, then
    checks: credentials; the CDK bootstrap (SSM /cdk-bootstrap/<qualifier>/version, what cdk deploy reads);
    unreserved Lambda concurrency for checker_reserved_concurrency; the availability zones (configured, or the
    first two or three Fn::GetAZs gives); the instance type offered there and x86_64; zones known to refuse
    Lambda VPC networking; with interface_endpoints, the endpoint services offered in those zones; Elastic IP
    and per-zone NAT gateway quotas, one more per zone; the Amazon Linux 2023 image parameter; the MinIO source
    (https URL and sha256, or the local file present and matching).
    Each check prints ok, PROBLEM with a one-line fix, or skipped with why. Nothing is created or changed.

    \b
    Exit codes:
      0   every check passed (or does not apply)
      1   some check found a problem
      6   no problem found, but AWS refused or failed some check
          (permissions, throttling, network); no region configured
      64  usage error
    """
    project = load_project_config(parse_overrides(overrides, known_keys()))
    report = run_preflight(app.client, app.region, project)
    if app.json_output:
        print_json(report.to_json())
    else:
        click.echo(render_text(report))
    raise click.exceptions.Exit(report.exit_code)
