"""The account- and region-level checks of `efs-ha preflight`: one AWS question each, answered ok / problem / skipped.

Every check catches its own AWS errors: one denied or throttled call makes that check a problem marked
`aws_error` (it could not be made), never a crash, and the other checks still run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from efs_ha_cli.errors import describe_aws_error
from failover_lambda.aws import AwsUnavailable

OK = "ok"
PROBLEM = "problem"
SKIPPED = "skipped"

# The template's BootstrapVersion parameter reads this SSM parameter (qualifier hnb659fds unless the context key
# below changes it), and its CheckBootstrapVersion rule fails the deploy below version 6; the CDK CLI reads the
# same parameter (bootstrapStackVersionSsmParameter in cdk.out/manifest.json), not the CDKToolkit stack's name.
DEFAULT_BOOTSTRAP_QUALIFIER = "hnb659fds"
BOOTSTRAP_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"
MIN_BOOTSTRAP_VERSION = 6

# ec2.MachineImage.latest_amazon_linux2023() in constructs/cluster_node.py resolves through this public parameter
# (the template's SsmParameterValue...al2023... parameter; tests/cli/test_preflight_ami.py pins the two together).
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
# That AMI and the MinIO release asset (linux-amd64) are x86_64 builds.
NODE_ARCHITECTURE = "x86_64"

# Service Quotas codes: EC2-VPC Elastic IPs per region, NAT gateways per Availability Zone.
EIP_QUOTA = ("ec2", "L-0263D0A3")
NAT_QUOTA = ("vpc", "L-FE5A380F")
NEW_NAT_GATEWAYS_PER_ZONE = 1  # constructs/network.py: one NAT gateway (and its Elastic IP) in each zone
# A NAT gateway counts against the per-AZ quota while pending, available or deleting.
COUNTED_NAT_STATES = ["pending", "available", "deleting"]

# Lambda keeps min(100, account limit) unreserved: "You can reserve up to the Unreserved account concurrency value
# minus 100" (Lambda developer guide, configuration-concurrency), and accounts with a limit of 10 or 50 get
# "decreases account's UnreservedConcurrentExecution below its minimum value of [10]" (or [50]) instead.
UNRESERVED_FLOOR = 100

# No API says where Lambda can place its VPC network interfaces: CreateFunction just fails with "The provided
# subnets contain availability zone Lambda doesn't support" (seen in us-east-1, keboola/developer-portal#81).
# use1-az3 is the zone this project's issue 11 names for it, the constrained us-east-1 zone that other services
# document exclusions for too (RDS Proxy, MSK). A known list, not an answer from AWS: the check says so.
# Zone IDs are the same in every account, names are not.
LAMBDA_VPC_UNSUPPORTED_ZONE_IDS = frozenset({"use1-az3"})


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, PROBLEM or SKIPPED
    summary: str  # what was found (ok, problem) or why the check does not apply (skipped)
    fix: str | None = None  # one line, for problems
    aws_error: bool = False  # a problem because an AWS call failed: this check could not be made

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "fix": self.fix,
                "aws_error": self.aws_error}


def ok(name: str, summary: str) -> Check:
    return Check(name, OK, summary)


def problem(name: str, summary: str, fix: str) -> Check:
    return Check(name, PROBLEM, summary, fix)


def skipped(name: str, why: str) -> Check:
    return Check(name, SKIPPED, why)


AWS_ERRORS = (BotoCoreError, ClientError, AwsUnavailable)


def aws_failure(name: str, error: Exception, permission: str) -> Check:
    """The check could not be made: say which call failed and what to grant or retry."""
    fix = (f"allow {permission} for these credentials (or retry if it was throttled or a network error)"
           if isinstance(error, ClientError) else "check the network path to AWS, then run preflight again")
    return Check(name, PROBLEM, f"could not check: {describe_aws_error(error)}", fix, aws_error=True)


def error_code(error: Exception) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) if isinstance(error, ClientError) else ""


@dataclass(frozen=True)
class Zones:
    """The two zones the stack will use, as names and IDs, and how they were chosen."""

    names: tuple[str, ...]
    ids: tuple[str, ...]
    chosen_by: str

    def labels(self) -> str:
        return ", ".join(f"{name} ({zone_id})" for name, zone_id in zip(self.names, self.ids, strict=True))

    def label(self, zone_id: str) -> str:
        return f"{self.names[self.ids.index(zone_id)]} ({zone_id})"


Clients = Callable[[str], Any]


class AccountChecks:
    """The AWS checks for one account and region; `clients(service)` returns a boto3 client."""

    def __init__(self, clients: Clients, region: str) -> None:
        self._client = clients
        self.region = region

    # ----- credentials and bootstrap -----
    def credentials(self) -> tuple[Check, str | None]:
        name = "credentials"
        try:
            identity = self._client("sts").get_caller_identity()
        except (NoCredentialsError, PartialCredentialsError):
            return problem(name, "no AWS credentials found",
                           "run `aws configure` (or `aws sso login`), or set AWS_PROFILE / AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY"), None
        except ClientError as error:  # STS answered: it rejects these credentials
            return problem(name, f"the credentials do not work: {describe_aws_error(error)}",
                           "refresh them (`aws sso login`, new session token) or pick another AWS_PROFILE"), None
        except AWS_ERRORS as error:  # no answer (network, endpoint): nothing known about the credentials
            return aws_failure(name, error, "sts:GetCallerIdentity"), None
        account = str(identity.get("Account", ""))
        return ok(name, f"account {account} as {identity.get('Arn', '?')}"), account

    def bootstrap(self, qualifier: str) -> Check:
        name = "cdk-bootstrap"
        parameter = f"/cdk-bootstrap/{qualifier}/version"
        fix = f"run `cdk bootstrap aws://<account>/{self.region}` with the project's CDK CLI (see README)"
        try:
            value = self._client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except AWS_ERRORS as error:
            if error_code(error) == "ParameterNotFound":
                return problem(name, f"{self.region} is not bootstrapped for CDK ({parameter} does not exist)", fix)
            return aws_failure(name, error, "ssm:GetParameter")
        version = int(value) if str(value).isdigit() else 0
        if version < MIN_BOOTSTRAP_VERSION:
            return problem(name, f"bootstrap version {value} is older than the {MIN_BOOTSTRAP_VERSION} the "
                                 "template requires", fix)
        return ok(name, f"bootstrapped, version {version} ({parameter})")

    # ----- Lambda -----
    def lambda_concurrency(self, reservation: int) -> Check:
        name = "lambda-concurrency"
        try:
            limits = self._client("lambda").get_account_settings()["AccountLimit"]
        except AWS_ERRORS as error:
            return aws_failure(name, error, "lambda:GetAccountSettings")
        total = int(limits.get("ConcurrentExecutions", 0))
        unreserved = int(limits.get("UnreservedConcurrentExecutions", 0))
        if reservation == 0:
            return ok(name, f"no reservation asked (checker_reserved_concurrency 0); account limit {total}, "
                            f"{unreserved} unreserved")
        floor = min(UNRESERVED_FLOOR, total)
        if unreserved - reservation >= floor:
            return ok(name, f"reserving {reservation} leaves {unreserved - reservation} unreserved "
                            f"(Lambda keeps at least {floor}; account limit {total})")
        return problem(name, f"reserving {reservation} would leave {unreserved - reservation} unreserved, below "
                             f"Lambda's minimum of {floor} (account limit {total}, {unreserved} unreserved)",
                       "deploy with -c checker_reserved_concurrency=0 (the loop lease keeps one probe loop), or "
                       "ask for a higher 'Concurrent executions' quota (Service Quotas, lambda L-B99A9384)")

    # ----- zones -----
    def zones(self, configured: tuple[str, ...], configured_are_ids: bool, count: int) -> tuple[Check, Zones | None]:
        name = "availability-zones"
        ec2 = self._client("ec2")
        try:
            listed = [zone for zone in ec2.describe_availability_zones()["AvailabilityZones"]
                      if zone.get("ZoneType", "availability-zone") == "availability-zone"]
            if not configured:
                return self._get_azs_zones(ec2, listed, count)
        except AWS_ERRORS as error:
            return aws_failure(name, error, "ec2:DescribeAvailabilityZones and ec2:DescribeSubnets"), None
        key = "ZoneId" if configured_are_ids else "ZoneName"
        by_key = {zone[key]: zone for zone in listed}
        missing = [zone for zone in configured if zone not in by_key]
        if missing:
            known = ", ".join(f"{z['ZoneName']} ({z['ZoneId']})" for z in sorted(listed, key=lambda z: z["ZoneName"]))
            return problem(name, f"{', '.join(missing)} not found in {self.region} for this account "
                                 f"(zones: {known or 'none'})",
                           "set -c availability_zones= to zones listed here, or deploy to the region they are "
                           "in"), None
        chosen = [by_key[zone] for zone in configured]
        zones = Zones(tuple(z["ZoneName"] for z in chosen), tuple(z["ZoneId"] for z in chosen),
                      "configured availability_zones")
        return self._zones_state(name, chosen, zones)

    def _get_azs_zones(self, ec2: Any, listed: list[dict[str, Any]], count: int) -> tuple[Check, Zones | None]:
        """Fn::GetAZs: zones in alphabetical order, only those with a default subnet unless none has one
        (CloudFormation template reference, Fn::GetAZs); the stack takes the first `count`."""
        name = "availability-zones"
        defaults = {subnet["AvailabilityZone"] for subnet in ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]}
        ordered = sorted(listed, key=lambda zone: zone["ZoneName"])
        candidates = [zone for zone in ordered if zone["ZoneName"] in defaults] or ordered
        if len(candidates) < count:
            return problem(name, f"Fn::GetAZs gives {len(candidates)} zone(s) in {self.region}; the stack needs "
                                 f"{count}",
                           "set -c availability_zones= to two zones of this region (names or IDs)"), None
        chosen = candidates[:count]
        how = "Fn::GetAZs" + (" (zones with a default subnet)" if defaults else "")
        zones = Zones(tuple(z["ZoneName"] for z in chosen), tuple(z["ZoneId"] for z in chosen), how)
        return self._zones_state(name, chosen, zones)

    @staticmethod
    def _zones_state(name: str, chosen: list[dict[str, Any]], zones: Zones) -> tuple[Check, Zones | None]:
        impaired = [f"{zone['ZoneName']} is {zone.get('State')}" for zone in chosen
                    if zone.get("State", "available") != "available"]
        if impaired:
            return problem(name, "; ".join(impaired), "choose other zones with -c availability_zones="), zones
        return ok(name, f"{zones.labels()}, chosen by {zones.chosen_by}"), zones

    def instance_type(self, instance_type: str, zones: Zones, by_id: bool) -> Check:
        name = "instance-type"
        ec2 = self._client("ec2")
        try:
            found = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
            architectures = found[0]["ProcessorInfo"]["SupportedArchitectures"] if found else []
            offered = self._offered_zones(ec2, instance_type, zones, by_id)
        except AWS_ERRORS as error:
            if error_code(error) == "InvalidInstanceType":
                return problem(name, f"{instance_type} is not an instance type in {self.region}",
                               "set -c instance_type= to an x86_64 type such as t3.small")
            return aws_failure(name, error, "ec2:DescribeInstanceTypes and ec2:DescribeInstanceTypeOfferings")
        if NODE_ARCHITECTURE not in architectures:
            return problem(name, f"{instance_type} is {'/'.join(architectures) or 'of unknown architecture'}, but the "
                                 f"node image (AL2023 {NODE_ARCHITECTURE}) and MinIO binary are {NODE_ARCHITECTURE}",
                           "set -c instance_type= to an x86_64 type such as t3.small or m7i.large")
        missing = [zone_id for zone_id in zones.ids if zone_id not in offered]
        if missing:
            return problem(name, f"{instance_type} is not offered in {', '.join(zones.label(z) for z in missing)}",
                           "choose another instance_type, or zones that offer it with -c availability_zones= "
                           "(aws ec2 describe-instance-type-offerings --location-type availability-zone-id)")
        return ok(name, f"{instance_type} ({NODE_ARCHITECTURE}) offered in {zones.labels()}")

    @staticmethod
    def _offered_zones(ec2: Any, instance_type: str, zones: Zones, by_id: bool) -> set[str]:
        """Zone IDs offering the type; asked in the form the config uses (names or IDs)."""
        location_type = "availability-zone-id" if by_id else "availability-zone"
        locations = list(zones.ids if by_id else zones.names)
        offerings = ec2.describe_instance_type_offerings(
            LocationType=location_type,
            Filters=[{"Name": "instance-type", "Values": [instance_type]},
                     {"Name": "location", "Values": locations}])["InstanceTypeOfferings"]
        offered = {offering["Location"] for offering in offerings}
        if by_id:
            return offered
        return {zone_id for zone_name, zone_id in zip(zones.names, zones.ids, strict=True) if zone_name in offered}

    @staticmethod
    def lambda_vpc_zones(zones: Zones) -> Check:
        name = "lambda-vpc-zones"
        unsupported = [zone_id for zone_id in zones.ids if zone_id in LAMBDA_VPC_UNSUPPORTED_ZONE_IDS]
        if unsupported:
            where = ", ".join(zones.label(zone_id) for zone_id in unsupported)
            return problem(name, f"Lambda cannot run in a VPC subnet in {where} (the checker runs in both private "
                                 "subnets)",
                           "choose two other zones with -c availability_zones= (zone IDs are the same in every "
                           "account)")
        return ok(name, f"{zones.labels()} not among the zones known to refuse Lambda VPC networking "
                        f"({', '.join(sorted(LAMBDA_VPC_UNSUPPORTED_ZONE_IDS))}; there is no API to ask)")

    # ----- quotas -----
    def elastic_ips(self, needed: int) -> Check:
        name = "elastic-ips"
        try:
            quota = self._quota(*EIP_QUOTA)
            used = len(self._client("ec2").describe_addresses()["Addresses"])
        except AWS_ERRORS as error:
            return aws_failure(name, error, "servicequotas:GetServiceQuota and ec2:DescribeAddresses")
        free = quota - used
        if free >= needed:
            return ok(name, f"{used} of {quota:g} in use, {needed} needed (one per NAT gateway)")
        return problem(name, f"{used} of {quota:g} Elastic IPs in use: the stack needs {needed} more",
                       f"release unused addresses, or request more: aws service-quotas "
                       f"request-service-quota-increase --service-code {EIP_QUOTA[0]} --quota-code {EIP_QUOTA[1]} "
                       f"--desired-value {used + needed:g}")

    def nat_gateways(self, zones: Zones) -> Check:
        name = "nat-gateways"
        try:
            quota = self._quota(*NAT_QUOTA)
            used = self._nat_gateways_per_zone()
        except AWS_ERRORS as error:
            return aws_failure(name, error, "servicequotas:GetServiceQuota, ec2:DescribeNatGateways and "
                                            "ec2:DescribeSubnets")
        full = [f"{zones.label(zone_id)}: {used[zone_id]} of {quota:g}" for zone_id in zones.ids
                if quota - used[zone_id] < NEW_NAT_GATEWAYS_PER_ZONE]
        if full:
            return problem(name, f"no room for a NAT gateway in {'; '.join(full)}",
                           f"delete unused NAT gateways there, choose other zones, or request more: aws "
                           f"service-quotas request-service-quota-increase --service-code {NAT_QUOTA[0]} "
                           f"--quota-code {NAT_QUOTA[1]} --desired-value {quota + 1:g}")
        counts = ", ".join(f"{zones.label(zone_id)} {used[zone_id]}" for zone_id in zones.ids)
        return ok(name, f"room for one NAT gateway per zone (quota {quota:g} per zone; in use: {counts})")

    def _nat_gateways_per_zone(self) -> Counter[str]:
        ec2 = self._client("ec2")
        gateways = ec2.describe_nat_gateways(
            Filters=[{"Name": "state", "Values": COUNTED_NAT_STATES}])["NatGateways"]
        subnet_ids = sorted({gateway["SubnetId"] for gateway in gateways if gateway.get("SubnetId")})
        if not subnet_ids:
            return Counter()
        zone_of = {subnet["SubnetId"]: subnet["AvailabilityZoneId"]
                   for subnet in ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]}
        return Counter(zone_of.get(gateway.get("SubnetId", ""), "") for gateway in gateways)

    def _quota(self, service: str, code: str) -> float:
        """The applied quota; its default where no applied value exists (GetServiceQuota: NoSuchResource)."""
        quotas = self._client("service-quotas")
        try:
            return float(quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
        except ClientError as error:
            if error_code(error) != "NoSuchResourceException":
                raise
        return float(quotas.get_aws_default_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])

    # ----- interface endpoints -----
    def interface_endpoints(self, zones: Zones, services: Mapping[str, str]) -> Check:
        """Every endpoint service `interface_endpoints: true` creates (short name -> service name) must be offered
        in every zone the stack uses, or the deploy fails on that zone's endpoint."""
        name = "interface-endpoints"
        fix = ("choose zones that offer every endpoint service (-c availability_zones=), or deploy with -c "
               "interface_endpoints=false (the checker then calls those APIs through the NAT of its zone)")
        try:
            details = self._client("ec2").describe_vpc_endpoint_services(
                ServiceNames=list(services.values()))["ServiceDetails"]
        except AWS_ERRORS as error:
            if error_code(error) == "InvalidServiceName":
                return problem(name, f"an endpoint service is not offered in {self.region}: "
                                     f"{describe_aws_error(error)}", fix)
            return aws_failure(name, error, "ec2:DescribeVpcEndpointServices")
        offered = {detail["ServiceName"]: set(detail.get("AvailabilityZones", [])) for detail in details}
        gaps = {zone: [short for short, full in services.items() if zone not in offered.get(full, set())]
                for zone in zones.names}
        lacking = "; ".join(f"{zone} lacks {', '.join(missing)}" for zone, missing in gaps.items() if missing)
        if lacking:
            return problem(name, f"endpoint services not offered in every zone: {lacking}", fix)
        return ok(name, f"{', '.join(services)} offered in {', '.join(zones.names)}")

    # ----- image -----
    def ami(self, pinned: Mapping[str, str] | None = None) -> Check:
        """With `node_image_ids` (the pin), the image pinned for this region must exist here; else the public
        Amazon Linux 2023 parameter the stack reads once at creation must resolve."""
        name = "ami"
        if pinned:
            return self._pinned_ami(name, pinned)
        try:
            image = self._client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        except AWS_ERRORS as error:
            if error_code(error) in ("ParameterNotFound", "InvalidParameter"):
                return problem(name, f"{AMI_PARAMETER} does not exist in {self.region}: the node image cannot "
                                     "be resolved", "deploy to a region that publishes Amazon Linux 2023 images")
            return aws_failure(name, error, "ssm:GetParameter")
        return ok(name, f"{image} (Amazon Linux 2023, {AMI_PARAMETER})")

    def _pinned_ami(self, name: str, pinned: Mapping[str, str]) -> Check:
        fix = f"run `efs-ha image pin --region {self.region}` (it writes this region's current image into cdk.json)"
        image = pinned.get(self.region)
        if image is None:
            return problem(name, f"node_image_ids pins {', '.join(sorted(pinned))} but not {self.region}: the "
                                 "template's rule refuses the deploy", fix)
        try:
            images = self._client("ec2").describe_images(ImageIds=[image])["Images"]
        except AWS_ERRORS as error:
            if error_code(error) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"):
                images = []
            else:
                return aws_failure(name, error, "ec2:DescribeImages")
        if not images or images[0].get("State", "available") != "available":
            return problem(name, f"the pinned image {image} is not available in {self.region} (deregistered, or "
                                 "pinned for another region)", fix)
        return ok(name, f"{image} (pinned in node_image_ids)")
