"""`efs-ha preflight`: every check's ok and problem path, on moto where it has the API (STS, EC2 zones, offerings,
addresses, NAT gateways, SSM parameters) and botocore Stubber where it does not (Lambda GetAccountSettings,
Service Quotas); the command's text, JSON and exit codes through click."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws

from efs_ha_cli.context import App
from efs_ha_cli.preflight_checks import OK, PROBLEM, SKIPPED, AccountChecks, Check, Zones
from efs_ha_cli.preflight_config import known_keys, load_project_config, parse_overrides
from tests.cli.conftest import REGION, invoke
from tests.cli.test_help import CONSOLE_SCRIPT

REPO_CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"
BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
EVERY_CHECK = ["config", "minio-source", "credentials", "cdk-bootstrap", "lambda-concurrency", "availability-zones",
               "instance-type", "lambda-vpc-zones", "interface-endpoints", "elastic-ips", "nat-gateways", "ami"]


# Built once per process (building a client costs more than most moto calls); moto hooks every client.
_CLIENTS: dict[tuple[str, str], Any] = {}


class Account:
    """A moto account with stubbed Lambda and Service Quotas clients; queue their answers before a run."""

    def __init__(self) -> None:
        self.stubs = {service: Stubber(self.client(service)) for service in ("lambda", "service-quotas")}
        for stub in self.stubs.values():
            stub.activate()
        self.client("ssm").put_parameter(Name=BOOTSTRAP_PARAMETER, Value="27", Type="String")

    def close(self) -> None:
        for stub in self.stubs.values():
            stub.deactivate()

    @staticmethod
    def client(service: str, region: str = REGION) -> Any:
        if (service, region) not in _CLIENTS:
            _CLIENTS[(service, region)] = boto3.Session(region_name=region).client(service)
        return _CLIENTS[(service, region)]

    def checks(self, region: str = REGION) -> AccountChecks:
        return AccountChecks(lambda service: self.client(service, region), region)

    def concurrency(self, total: int = 1000, unreserved: int = 1000) -> None:
        self.stubs["lambda"].add_response("get_account_settings", {
            "AccountLimit": {"ConcurrentExecutions": total, "UnreservedConcurrentExecutions": unreserved}}, {})

    def quotas(self, eips: float = 5, nat_per_zone: float = 5) -> None:
        """Both quotas, in the order a whole run asks for them."""
        self.quota("ec2", "L-0263D0A3", eips)
        self.quota("vpc", "L-FE5A380F", nat_per_zone)

    def quota(self, service: str, code: str, value: float) -> None:
        self.stubs["service-quotas"].add_response(
            "get_service_quota", {"Quota": {"ServiceCode": service, "QuotaCode": code, "Value": value}},
            {"ServiceCode": service, "QuotaCode": code})

    def ready(self) -> None:
        self.concurrency()
        self.quotas()

    def allocate_addresses(self, count: int) -> list[str]:
        ec2 = self.client("ec2")
        return [ec2.allocate_address(Domain="vpc")["AllocationId"] for _ in range(count)]

    def nat_gateway_in(self, zone: str) -> None:
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        ec2.create_nat_gateway(SubnetId=subnet, AllocationId=self.allocate_addresses(1)[0])


@pytest.fixture
def account(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    with mock_aws():
        fake = Account()
        # The CLI's clients are the account's (stubbed Lambda and Service Quotas, moto for the rest).
        monkeypatch.setattr(App, "client", lambda app, service: fake.client(service, app.region))
        yield fake
        fake.close()


def write_cdk_json(folder: Path, **context: Any) -> Path:
    """The repository's cdk.json with some context keys changed, in the folder the CLI runs from."""
    document = json.loads(REPO_CDK_JSON.read_text())
    document["context"].update(context)
    path = folder / "cdk.json"
    path.write_text(json.dumps(document))
    return path


def preflight(*args: str) -> tuple[int, dict[str, Any]]:
    result = invoke("preflight", "--json", *args)
    assert result.stderr == "", result.stderr
    return result.exit_code, json.loads(result.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def assert_problem(check: Check, *words: str) -> None:
    assert check.status == PROBLEM, check
    assert check.fix, "every problem carries its fix"
    for word in words:
        assert word in check.summary + " " + check.fix, check


EU_ZONES = Zones(("eu-west-1a", "eu-west-1b"), ("euw1-az3", "euw1-az1"), "test")


# ----- the whole command -----
def test_a_ready_account_passes_every_check_and_exits_0(account: Account, tmp_path: Path) -> None:
    write_cdk_json(tmp_path)
    account.ready()

    code, report = preflight()

    assert code == 0
    assert [check["name"] for check in report["checks"]] == EVERY_CHECK
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses.pop("interface-endpoints") == SKIPPED  # interface_endpoints is off by default
    assert set(statuses.values()) == {OK}
    assert report["ready"] is True and report["account"] == "123456789012" and report["region"] == REGION
    assert report["exit_code"] == 0 and report["problems"] == 0


def test_text_output_names_each_check_and_the_fix_of_a_problem(account: Account, tmp_path: Path) -> None:
    write_cdk_json(tmp_path, checker_reserved_concurrency=1)
    account.concurrency(total=10, unreserved=10)
    account.quotas()

    result = invoke("preflight")

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"efs-ha preflight: region {REGION}, account 123456789012"
    problem_line = next(i for i, line in enumerate(lines) if "lambda-concurrency" in line)
    assert lines[problem_line].lstrip().startswith("PROBLEM")
    assert "fix: deploy with -c checker_reserved_concurrency=0" in lines[problem_line + 1]
    assert lines[-1] == "not ready: 1 problem(s); fix them and run efs-ha preflight again"


def test_no_credentials_is_a_failed_check_not_a_crash(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    code, report = preflight()

    checks = by_name(report)
    assert code == 1 and report["ready"] is False
    assert checks["credentials"]["status"] == PROBLEM
    assert checks["credentials"]["summary"] == "no AWS credentials found"
    assert "aws configure" in checks["credentials"]["fix"]
    assert all(checks[name]["status"] == SKIPPED for name in EVERY_CHECK[3:])
    assert checks["config"]["status"] == OK  # the project's own checks still run


def test_context_overrides_reach_the_checks(account: Account, tmp_path: Path) -> None:
    write_cdk_json(tmp_path)
    account.ready()

    code, report = preflight("-c", "instance_type=t3.large", "--context", "availability_zones=euw1-az1,euw1-az2")

    checks = by_name(report)
    assert code == 0, report
    assert "t3.large" in checks["instance-type"]["summary"]
    assert checks["availability-zones"]["summary"].startswith("eu-west-1b (euw1-az1), eu-west-1c (euw1-az2)")


def test_an_invalid_config_is_a_problem_and_the_checks_needing_it_are_skipped(account: Account,
                                                                              tmp_path: Path) -> None:
    write_cdk_json(tmp_path, vip="10.0.5.5")
    account.ready()

    code, report = preflight()

    checks = by_name(report)
    assert code == 1
    assert checks["config"]["status"] == PROBLEM and "'vip'" in checks["config"]["summary"]
    assert checks["minio-source"]["status"] == OK  # validated on its own
    for name in ("lambda-concurrency", "availability-zones", "instance-type", "lambda-vpc-zones", "nat-gateways"):
        assert checks[name]["status"] == SKIPPED and "config" in checks[name]["summary"]
    for name in ("credentials", "cdk-bootstrap", "elastic-ips", "ami"):
        assert checks[name]["status"] == OK


def test_only_aws_access_problems_exit_6(account: Account, tmp_path: Path) -> None:
    write_cdk_json(tmp_path)
    account.concurrency()
    for _ in range(2):
        account.stubs["service-quotas"].add_client_error("get_service_quota", "AccessDeniedException", "denied")

    code, report = preflight()

    checks = by_name(report)
    assert code == 6 and report["exit_code"] == 6
    for name in ("elastic-ips", "nat-gateways"):
        assert checks[name]["status"] == PROBLEM and checks[name]["aws_error"] is True
        assert checks[name]["summary"].startswith("could not check: GetServiceQuota failed: AccessDeniedException")
        assert "servicequotas:GetServiceQuota" in checks[name]["fix"]


def test_a_real_problem_wins_over_an_aws_access_problem(account: Account, tmp_path: Path) -> None:
    write_cdk_json(tmp_path, checker_reserved_concurrency=5)
    account.concurrency(total=50, unreserved=50)
    account.stubs["service-quotas"].add_client_error("get_service_quota", "ThrottlingException", "slow down")
    account.stubs["service-quotas"].add_client_error("get_service_quota", "ThrottlingException", "slow down")

    code, _ = preflight()

    assert code == 1


@pytest.mark.parametrize("args, message", [
    (("-c", "instance_type"), "write it as -c key=value"),
    (("-c", "instance_typ=t3.small"), "-c instance_typ: not a config key of this project"),
])
def test_bad_overrides_are_usage_errors(aws_env: None, args: tuple[str, ...], message: str) -> None:
    result = invoke("--json", "preflight", *args)

    assert result.exit_code == 64
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["kind"] == "usage" and message in payload["error"]
    assert "Traceback" not in result.output


def test_no_region_is_an_aws_access_error(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    result = invoke("preflight", "--json")

    assert result.exit_code == 6
    assert json.loads(result.stdout)["error"].startswith("no AWS region configured: pass --region")


def test_region_option_wins(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # no AWS call gets past the credentials check
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    result = invoke("--region", "us-east-1", "preflight", "--json")

    assert json.loads(result.stdout)["region"] == "us-east-1"


# ----- credentials and bootstrap -----
def test_expired_credentials_are_a_problem_with_the_fix(account: Account) -> None:
    sts = account.client("sts")
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", "ExpiredToken", "The security token included in the request "
                                                                     "is expired")
        check, found = account.checks().credentials()

    assert found is None
    assert_problem(check, "ExpiredToken", "aws sso login")


class _Unreachable:
    """An STS client with no route to AWS."""

    def get_caller_identity(self) -> Any:
        raise EndpointConnectionError(endpoint_url="https://sts.eu-west-1.amazonaws.com/")


def test_aws_unreachable_is_not_a_credentials_problem(account: Account) -> None:
    checks = AccountChecks(lambda service: _Unreachable(), REGION)

    check, found = checks.credentials()

    assert found is None and check.status == PROBLEM and check.aws_error
    assert check.summary.startswith("could not check: cannot reach AWS")


def test_bootstrap_missing_or_too_old(account: Account) -> None:
    ssm = account.client("ssm")
    present = account.checks().bootstrap("hnb659fds")
    ssm.put_parameter(Name=BOOTSTRAP_PARAMETER, Value="5", Type="String", Overwrite=True)
    old = account.checks().bootstrap("hnb659fds")
    missing = account.checks().bootstrap("custom123")

    assert present.status == OK and "version 27" in present.summary
    assert_problem(old, "version 5 is older than the 6", "cdk bootstrap aws://<account>/eu-west-1")
    assert_problem(missing, "/cdk-bootstrap/custom123/version does not exist", "cdk bootstrap")


def test_bootstrap_qualifier_comes_from_the_context(account: Account, tmp_path: Path) -> None:
    write_cdk_json(tmp_path, **{"@aws-cdk/core:bootstrapQualifier": "custom123"})
    account.ready()

    code, report = preflight()

    assert code == 1 and "/cdk-bootstrap/custom123/version" in by_name(report)["cdk-bootstrap"]["summary"]


# ----- Lambda concurrency -----
@pytest.mark.parametrize("reservation, total, unreserved, status, words", [
    (0, 10, 10, OK, "no reservation asked"),
    (1, 10, 10, PROBLEM, "below Lambda's minimum of 10"),
    (1, 50, 50, PROBLEM, "below Lambda's minimum of 50"),
    (1, 1000, 100, PROBLEM, "leave 99 unreserved, below Lambda's minimum of 100"),
    (1, 1000, 1000, OK, "leaves 999 unreserved"),
    (5, 1000, 105, OK, "leaves 100 unreserved"),
])
def test_lambda_concurrency(account: Account, reservation: int, total: int, unreserved: int, status: str,
                            words: str) -> None:
    account.concurrency(total, unreserved)

    check = account.checks().lambda_concurrency(reservation)

    assert check.status == status and words in check.summary, check
    if status == PROBLEM:
        assert "checker_reserved_concurrency=0" in (check.fix or "")


def test_lambda_concurrency_access_denied_is_an_aws_error(account: Account) -> None:
    account.stubs["lambda"].add_client_error("get_account_settings", "AccessDeniedException", "no")

    check = account.checks().lambda_concurrency(1)

    assert check.aws_error and "lambda:GetAccountSettings" in (check.fix or "")


# ----- zones -----
def test_default_zones_are_the_first_two_by_name(account: Account) -> None:
    check, zones = account.checks().zones((), False, 2)

    assert zones == Zones(("eu-west-1a", "eu-west-1b"), ("euw1-az3", "euw1-az1"),
                          "Fn::GetAZs (zones with a default subnet)")
    assert check.status == OK


def test_default_zones_follow_the_default_subnets_like_fn_getazs(account: Account) -> None:
    ec2 = account.client("ec2")
    for subnet in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]},
                                                {"Name": "availability-zone", "Values": ["eu-west-1a"]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])

    _, zones = account.checks().zones((), False, 2)

    assert zones is not None and zones.names == ("eu-west-1b", "eu-west-1c")


def test_configured_zones_by_name_and_by_id(account: Account) -> None:
    _, by_name_zones = account.checks().zones(("eu-west-1c", "eu-west-1a"), False, 2)
    _, by_id_zones = account.checks().zones(("euw1-az2", "euw1-az3"), True, 2)

    assert by_name_zones == Zones(("eu-west-1c", "eu-west-1a"), ("euw1-az2", "euw1-az3"),
                                  "configured availability_zones")
    assert by_id_zones == by_name_zones


def test_configured_zones_from_another_region_are_a_problem(account: Account) -> None:
    check, zones = account.checks().zones(("us-east-1a", "us-east-1b"), False, 2)

    assert zones is None
    assert_problem(check, "us-east-1a, us-east-1b not found in eu-west-1", "eu-west-1a (euw1-az3)",
                   "-c availability_zones=")


def test_checks_needing_zones_are_skipped_without_them(account: Account, tmp_path: Path) -> None:
    write_cdk_json(tmp_path, availability_zones=["use1-az1", "use1-az2"])
    account.ready()

    code, report = preflight()

    checks = by_name(report)
    assert code == 1 and checks["availability-zones"]["status"] == PROBLEM
    for name in ("instance-type", "lambda-vpc-zones", "nat-gateways"):
        assert checks[name]["status"] == SKIPPED and "availability-zones" in checks[name]["summary"]


# ----- instance type -----
def test_instance_type_offered_in_the_zones(account: Account) -> None:
    by_names = account.checks().instance_type("t3.small", EU_ZONES, by_id=False)
    by_ids = account.checks().instance_type("t3.small", EU_ZONES, by_id=True)

    assert by_names.status == OK and by_ids.status == OK
    assert by_ids.summary == "t3.small (x86_64) offered in eu-west-1a (euw1-az3), eu-west-1b (euw1-az1)"


def test_instance_type_not_offered_in_a_zone_names_that_zone(account: Account) -> None:
    checks = account.checks("us-east-1")
    _, zones = checks.zones(("use1-az1", "use1-az3"), True, 2)
    assert zones is not None

    check = checks.instance_type("c5.large", zones, by_id=True)

    assert_problem(check, "c5.large is not offered in us-east-1e (use1-az3)", "availability_zones")


@pytest.mark.parametrize("instance_type, words", [
    ("m7g.large", "m7g.large is arm64, but the node image (AL2023 x86_64)"),
    ("t9.bogus", "t9.bogus is not an instance type in eu-west-1"),
])
def test_unusable_instance_types(account: Account, instance_type: str, words: str) -> None:
    check = account.checks().instance_type(instance_type, EU_ZONES, by_id=False)

    assert_problem(check, words, "-c instance_type=")


# ----- Lambda in a VPC -----
def test_lambda_vpc_zones(account: Account) -> None:
    checks = account.checks("us-east-1")
    _, zones = checks.zones(("us-east-1b", "us-east-1e"), False, 2)
    assert zones is not None

    refused = checks.lambda_vpc_zones(zones)
    fine = AccountChecks.lambda_vpc_zones(EU_ZONES)

    assert_problem(refused, "Lambda cannot run in a VPC subnet in us-east-1e (use1-az3)", "availability_zones")
    assert fine.status == OK and "there is no API to ask" in fine.summary


# ----- quotas -----
def test_elastic_ips(account: Account) -> None:
    account.quota("ec2", "L-0263D0A3", 5)
    account.quota("ec2", "L-0263D0A3", 5)
    account.allocate_addresses(3)
    room = account.checks().elastic_ips(2)
    account.allocate_addresses(1)
    full = account.checks().elastic_ips(2)

    assert room.status == OK and room.summary.startswith("3 of 5 in use, 2 needed")
    assert_problem(full, "4 of 5 Elastic IPs in use: the stack needs 2 more", "--quota-code L-0263D0A3",
                   "--desired-value 6")


def test_elastic_ip_quota_falls_back_to_the_default_value(account: Account) -> None:
    stub = account.stubs["service-quotas"]
    stub.add_client_error("get_service_quota", "NoSuchResourceException", "no applied value")
    stub.add_response("get_aws_default_service_quota",
                      {"Quota": {"ServiceCode": "ec2", "QuotaCode": "L-0263D0A3", "Value": 5.0}},
                      {"ServiceCode": "ec2", "QuotaCode": "L-0263D0A3"})

    check = account.checks().elastic_ips(2)

    assert check.status == OK and "0 of 5 in use" in check.summary


def test_nat_gateways_per_zone(account: Account) -> None:
    account.nat_gateway_in("eu-west-1a")
    account.quota("vpc", "L-FE5A380F", 2)
    account.quota("vpc", "L-FE5A380F", 1)
    room_check = account.checks().nat_gateways(EU_ZONES)
    full_check = account.checks().nat_gateways(EU_ZONES)

    assert room_check.status == OK and "eu-west-1a (euw1-az3) 1, eu-west-1b (euw1-az1) 0" in room_check.summary
    assert_problem(full_check, "no room for a NAT gateway in eu-west-1a (euw1-az3): 1 of 1",
                   "--quota-code L-FE5A380F")
    assert "eu-west-1b" not in full_check.summary


# ----- AMI -----
def test_ami_resolves_through_the_public_parameter(account: Account) -> None:
    check = account.checks().ami()

    assert check.status == OK and check.summary.startswith("ami-")


def test_ami_parameter_missing_is_a_problem(account: Account) -> None:
    ssm = account.client("ssm")
    with Stubber(ssm) as stub:
        stub.add_client_error("get_parameter", "ParameterNotFound", "not here")
        check = account.checks().ami()

    assert_problem(check, "al2023-ami-kernel-6.1-x86_64 does not exist in eu-west-1", "Amazon Linux 2023")


def test_a_pinned_image_must_exist_in_the_region(account: Account) -> None:
    image = account.client("ec2").register_image(Name="al2023-pinned", Architecture="x86_64",
                                                 RootDeviceName="/dev/xvda")["ImageId"]
    checks = account.checks()
    assert checks.ami({REGION: image}).summary == f"{image} (pinned in node_image_ids)"
    assert_problem(checks.ami({REGION: "ami-0123456789abcdef0"}), "ami-0123456789abcdef0 is not available",
                   f"efs-ha image pin --region {REGION}")
    assert_problem(checks.ami({"us-east-1": image}), "pins us-east-1 but not eu-west-1", "image pin")


# ----- the MinIO source and the config, read like `cdk synth` reads them -----
def _minio(tmp_path: Path, **context: Any) -> Check:
    write_cdk_json(tmp_path)
    return load_project_config({key: str(value) for key, value in context.items()}, cwd=tmp_path).minio_check


def test_minio_from_the_default_https_url(tmp_path: Path) -> None:
    check = _minio(tmp_path)

    assert check.status == OK
    assert "https download https://github.com/minio/minio/releases/download/" in check.summary
    assert "sha256 7c5bd8512c6e" in check.summary


def test_minio_from_a_local_file_present_and_matching(tmp_path: Path) -> None:
    binary = tmp_path / "build" / "minio"
    binary.parent.mkdir()
    binary.write_bytes(b"not really minio")
    digest = hashlib.sha256(b"not really minio").hexdigest()

    check = _minio(tmp_path, minio_url="", minio_local_file="build/minio", minio_sha256=digest)

    assert check.status == OK and f"local file {binary} (sha256 matches" in check.summary


@pytest.mark.parametrize("context, words", [
    ({"minio_url": "", "minio_local_file": "build/missing"}, "'minio_local_file'"),
    ({"minio_url": "", "minio_local_file": "cdk.json"}, "'minio_sha256' does not match"),
    ({"minio_url": "http://example.com/minio"}, "'minio_url' must be an https:// URL"),
    ({"minio_sha256": "abc"}, "'minio_sha256' must be the 64-hex-digit sha256"),
    ({"minio_local_file": "cdk.json"}, "set exactly one of minio_url"),
])
def test_minio_source_problems(tmp_path: Path, context: dict[str, str], words: str) -> None:
    check = _minio(tmp_path, **context)

    assert check.status == PROBLEM and words in check.summary, check
    assert check.fix is not None and "README 'MinIO binary'" in check.fix


def test_a_bad_minio_key_does_not_hide_the_rest_of_the_config(tmp_path: Path) -> None:
    write_cdk_json(tmp_path)

    project = load_project_config({"minio_sha256": "abc", "instance_type": "m7i.large"}, cwd=tmp_path)

    assert project.minio_check.status == PROBLEM and project.config_check.status == OK
    assert project.config is not None and project.config.instance_type == "m7i.large"


def test_the_cli_reads_cdk_json_of_the_folder_it_runs_from(tmp_path: Path) -> None:
    write_cdk_json(tmp_path, stack_name="Elsewhere")

    project = load_project_config({}, cwd=tmp_path)

    assert project.root == tmp_path and project.config is not None and project.config.stack_name == "Elsewhere"
    assert project.config_check.summary.startswith("stack Elsewhere, t3.small")


def test_override_values_stay_strings_like_the_cdk_cli_passes_them() -> None:
    overrides = parse_overrides(("checker_reserved_concurrency=2", "availability_zones=use1-az1,use1-az2",
                                 "@aws-cdk/core:bootstrapQualifier=abc"), known_keys())

    assert overrides == {"checker_reserved_concurrency": "2", "availability_zones": "use1-az1,use1-az2",
                         "@aws-cdk/core:bootstrapQualifier": "abc"}


# ----- help, through the installed console script -----
def test_console_script_preflight_help() -> None:
    assert CONSOLE_SCRIPT.exists(), "run `.venv/bin/pip install -e .` to install the efs-ha console script"
    result = subprocess.run([str(CONSOLE_SCRIPT), "preflight", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    top = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: efs-ha preflight [OPTIONS]")
    for words in ("-c, --context KEY=VALUE", "--json", "Exit codes:", "64  usage error"):
        assert words in result.stdout
    assert top.returncode == 0 and "preflight" in top.stdout


def test_three_zones_are_all_checked_and_need_three_addresses(account: Account, tmp_path: Path) -> None:
    """Issue 12: a three-zone config places a node, a NAT gateway and its address in each of three zones."""
    write_cdk_json(tmp_path, public_subnet_cidrs=["10.0.10.0/24", "10.0.20.0/24", "10.0.30.0/24"],
                   private_subnet_cidrs=["10.0.110.0/24", "10.0.120.0/24", "10.0.130.0/24"])
    account.ready()

    code, report = preflight()

    checks = by_name(report)
    assert code == 0, report
    assert checks["availability-zones"]["summary"].count("eu-west-1") == 3
    assert "3 needed" in checks["elastic-ips"]["summary"]


def test_interface_endpoints_are_checked_in_the_zones_only_when_asked_for(account: Account,
                                                                         tmp_path: Path) -> None:
    write_cdk_json(tmp_path)
    account.ready()
    _, report = preflight()
    assert by_name(report)["interface-endpoints"]["status"] == SKIPPED

    write_cdk_json(tmp_path, interface_endpoints=True)
    account.ready()
    code, report = preflight()
    check = by_name(report)["interface-endpoints"]
    assert code == 0 and check["status"] == OK, check
    assert "ec2, ssm, ec2messages, ssmmessages, sns, secretsmanager" in check["summary"]


def test_an_endpoint_service_missing_in_a_zone_is_a_problem_naming_both(account: Account) -> None:
    zones = Zones(("eu-west-1a", "eu-west-1z"), ("euw1-az1", "euw1-az9"), "configured availability_zones")
    check = account.checks().interface_endpoints(zones, {"ec2": f"com.amazonaws.{REGION}.ec2",
                                                         "sns": f"com.amazonaws.{REGION}.sns"})
    assert_problem(check, "eu-west-1z", "ec2", "sns", "availability_zones")
