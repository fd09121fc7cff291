"""A deployed cluster as moto sees it: a CloudFormation stack with the real output names, a VPC with three
route tables, two tagged node instances, the state table, the secret, the alarm topic and the checker
function; simulated node agents that follow the design's rules; a fake clock; and fake Lambda clients
(in-process checker, throttled, fixed answer) because moto cannot run a Lambda here.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result
from moto import mock_aws

from efs_ha_cli.context import Hooks
from efs_ha_cli.main import cli
from failover_lambda import handler as handler_module
from failover_lambda.aws import AwsClients
from failover_lambda.checker import PROBE_RECORD_SECONDS
from failover_lambda.runtime import Runtime
from failover_lambda.settings import Settings
from tests.support import FakeContext, vip_route_targets

REGION = "eu-west-1"
STACK = "EfsHaCluster"
VIP = "172.16.0.1"
VIP_CIDR = f"{VIP}/32"
TABLE = "EfsHaCluster-state"
FUNCTION = "EfsHaCluster-checker"
T0 = 1_900_000_000.0
NODES = ("node1", "node2")
# The deployed checker's environment; the CLI reads its thresholds from here (HEARTBEAT_STALE_SECONDS...).
CHECKER_ENV = {
    "PROBE_INTERVAL_SECONDS": "1",
    "FAILURE_THRESHOLD": "3",
    "HEARTBEAT_STALE_SECONDS": "2",
    "LEASE_SECONDS": "1.5",
    "FENCE_TIMEOUT_SECONDS": "10",
    "MINIO_START_GRACE_SECONDS": "5",
    "HTTP_PROBE": "false",
    "MAX_PROBES": "1",
}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
# botocore's service models, parsed once per process and shared by every session the CLI and the tests build.
_LOADER = botocore.loaders.create_loader()


class FakeClock:
    """Time moves only when someone sleeps; every sleep lets the node agents (and other hooks) act."""

    def __init__(self) -> None:
        self.t = T0
        self.on_sleep: list[Callable[[], None]] = []

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t - T0

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.01)
        for hook in list(self.on_sleep):
            hook()


@dataclass
class Agent:
    """One node's agent, simplified to the design's rule: serve only while active, stable and EFS writable."""

    node: str
    instance_id: str
    eni: str
    alive: bool = True
    efs_ok: bool = True
    serving: bool = False


_CLIENTS: dict[str, Any] = {}


def aws_client(service: str) -> Any:
    """A boto3 client for REGION, built once per process: building one costs more than most moto calls, and
    it works under every test's own mock_aws (moto hooks all botocore clients, whenever they were built)."""
    if service not in _CLIENTS:
        _CLIENTS[service] = boto3.Session(region_name=REGION).client(service)
    return _CLIENTS[service]


def checker_clients() -> AwsClients:
    """The in-process checker's clients (with the Lambda's client config), built once per process."""
    if "checker" not in _CLIENTS:
        _CLIENTS["checker"] = AwsClients.create(boto3.Session(region_name=REGION))
    clients: AwsClients = _CLIENTS["checker"]
    return clients


def throttled_error() -> ClientError:
    return ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."},
                        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}, "Invoke")


class FakeLambda:
    """Stands in for the Lambda client. `mode`: "inprocess" runs failover_lambda.handler.handler here,
    "throttled" raises TooManyRequestsException, "answer" returns `answer`. Other calls go to moto."""

    def __init__(self, cluster: FakeCluster) -> None:
        self._cluster = cluster
        self._moto = aws_client("lambda")
        self.mode = "inprocess"
        self.answer: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        assert FunctionName == FUNCTION and InvocationType == "RequestResponse"
        event = json.loads(Payload)
        self.events.append(event)
        if self.mode == "throttled":
            raise throttled_error()
        result = self.answer if self.mode == "answer" else self._cluster.run_checker(event)
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(result).encode())}

    def get_function_configuration(self, **kwargs: Any) -> Any:
        return self._moto.get_function_configuration(**kwargs)


@dataclass
class FakeCluster:
    clock: FakeClock = field(default_factory=FakeClock)
    agents: dict[str, Agent] = field(default_factory=dict)
    lease_seqs: dict[str, int] = field(default_factory=dict)
    # The deployed checker's probe loop, as far as status sees it: `checker.last_probe_at` (its clock) rewritten
    # every PROBE_RECORD_SECONDS while True. False: a checker that has stopped running.
    checker_probing: bool = True
    probe_recorded_at: float | None = None

    def __post_init__(self) -> None:
        self.ec2 = aws_client("ec2")
        self.ddb = aws_client("dynamodb")
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24")["Subnet"]["SubnetId"]
                   for n in (110, 120)]
        self.route_tables = [self.ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
                             for _ in range(3)]
        ami = "ami-12c6146b"  # any id: moto does not check it, and listing its AMIs costs seconds
        for node, subnet in zip(NODES, subnets, strict=True):
            tags = [{"Key": "efs-ha:cluster", "Value": STACK}, {"Key": "efs-ha:node", "Value": node}]
            instance = self.ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet,
                                              TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
                                              )["Instances"][0]
            self.agents[node] = Agent(node, instance["InstanceId"],
                                      instance["NetworkInterfaces"][0]["NetworkInterfaceId"])
        for table in self.route_tables:
            self.ec2.create_route(RouteTableId=table, DestinationCidrBlock=VIP_CIDR,
                                  NetworkInterfaceId=self.agents["node1"].eni)
        self.ddb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        self.topic_arn = aws_client("sns").create_topic(Name="alarms")["TopicArn"]
        self.secret_arn = aws_client("secretsmanager").create_secret(
            Name="minio-root", SecretString=json.dumps({"username": "minio-admin", "password": "pw"}))["ARN"]
        self._create_function()
        self.outputs = {
            "VirtualIp": VIP, "RouteTableIds": ",".join(self.route_tables), "NodeNames": ",".join(NODES),
            "NodeGroupNames": ",".join(f"EfsHaCluster-{name}-group" for name in NODES),
            "StateTableName": TABLE, "FileSystemId": "fs-0123456789abcdef0", "MountPoint": "/mnt/efs",
            "MinioSecretArn": self.secret_arn, "FailoverFunctionName": FUNCTION, "AlarmTopicArn": self.topic_arn,
        }
        self.create_stack(STACK, self.outputs)
        self.put({"pk": "cluster", "active": "node1", "active_instance": self.agents["node1"].instance_id,
                  "epoch": 1, "phase": "stable", "maintenance": False, "changed_at": T0 - 100,
                  "reason": "bootstrap"})
        self.clock.on_sleep.append(self.tick)
        self.tick()
        self.clock.on_sleep.append(self.checker_tick)
        self.checker_tick()
        self.lambda_client = FakeLambda(self)

    # ----- deployment -----
    def _create_function(self) -> None:
        role = aws_client("iam").create_role(
            RoleName="checker", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("index.py", "def handler(event, context):\n    return {}\n")
        aws_client("lambda").create_function(
            FunctionName=FUNCTION, Runtime="python3.12", Role=role, Handler="index.handler",
            Code={"ZipFile": code.getvalue()}, Environment={"Variables": self.checker_env()})

    def checker_env(self) -> dict[str, str]:
        return {**CHECKER_ENV, "STATE_TABLE_NAME": TABLE, "CLUSTER_ID": STACK, "NODE_NAMES": ",".join(NODES),
                "ROUTE_TABLE_IDS": ",".join(self.route_tables), "VIP": VIP}

    @staticmethod
    def create_stack(name: str, outputs: dict[str, str]) -> None:
        template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
        aws_client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))

    # ----- the checker, in process -----
    def run_checker(self, event: dict[str, Any]) -> dict[str, Any]:
        settings = Settings.from_env(self.checker_env())
        handler_module.use_runtime(Runtime(settings=settings, aws=checker_clients(), clock=self.clock))
        # The Lambda's logs and metrics (stdout) never reach the CLI.
        with contextlib.redirect_stdout(io.StringIO()):
            result: dict[str, Any] = handler_module.handler(event, FakeContext(self.clock))
        return result

    def probe(self) -> dict[str, Any]:
        """One scheduled probe cycle: executes a queued request, like the running checker would."""
        return self.run_checker({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})

    def checker_tick(self) -> None:
        """The running checker's liveness record (only `last_probe_at`: other checker attributes stay)."""
        now = self.clock.now()
        if not self.checker_probing or (self.probe_recorded_at is not None
                                        and now - self.probe_recorded_at < PROBE_RECORD_SECONDS):
            return
        self.probe_recorded_at = now
        self.ddb.update_item(TableName=TABLE, Key={"pk": {"S": "checker"}}, UpdateExpression="SET last_probe_at = :t",
                             ExpressionAttributeValues={":t": {"N": str(round(now, 3))}})

    # ----- the node agents -----
    def tick(self) -> None:
        cluster = self.item("cluster")
        for agent in self.agents.values():
            if not agent.alive:
                continue
            agent.serving = (cluster.get("active") == agent.node and cluster.get("phase") == "stable"
                             and agent.efs_ok)
            self.heartbeat(agent, seen_epoch=int(cluster.get("epoch", 0)))

    def heartbeat(self, agent: Agent, **overrides: Any) -> None:
        # Each write is a lease renewal (lease_seq + 1): status judges freshness only from its growth.
        self.lease_seqs[agent.node] = self.lease_seqs.get(agent.node, 0) + 1
        values = {"pk": f"node#{agent.node}", "heartbeat_at": self.clock.now(), "efs_ok": agent.efs_ok,
                  "minio_ok": agent.serving, "serving": agent.serving, "seen_epoch": 0,
                  "lease_seq": self.lease_seqs[agent.node], "watchdog": "armed" if agent.serving else "ready",
                  "watchdog_timeout": 1, "lease_seconds": 1.5, "eni_id": agent.eni, "instance_id": agent.instance_id,
                  "detail": "sim"}
        self.put({**values, **overrides})

    # ----- table and routes -----
    def put(self, values: dict[str, Any]) -> None:
        item = {k: Decimal(str(v)) if isinstance(v, float) else v for k, v in values.items()}
        self.ddb.put_item(TableName=TABLE, Item={k: _serializer.serialize(v) for k, v in item.items()})

    def item(self, key: str) -> dict[str, Any]:
        raw = self.ddb.get_item(TableName=TABLE, Key={"pk": {"S": key}}, ConsistentRead=True).get("Item", {})
        return {k: _deserializer.deserialize(v) for k, v in raw.items()}

    def update_cluster(self, **values: Any) -> None:
        self.put({**self.item("cluster"), **values})

    def routes(self) -> dict[str, str | None]:
        return vip_route_targets(self.ec2, self.route_tables, VIP_CIDR)

    def set_route(self, table: str, eni: str) -> None:
        self.ec2.replace_route(RouteTableId=table, DestinationCidrBlock=VIP_CIDR, NetworkInterfaceId=eni)

    # ----- the CLI -----
    def hooks(self, **overrides: Any) -> Hooks:
        return Hooks(**{"clock": self.clock, "lambda_client": self.lambda_client, "poll_seconds": 1.0,
                        **overrides})

    def cli(self, *args: str, hooks: Hooks | None = None) -> Result:
        return invoke(*args, obj=hooks or self.hooks())


def invoke(*args: str, obj: Any = None) -> Result:
    # Wide enough that rich never folds a cell the assertions look for.
    return CliRunner(env={"COLUMNS": "220"}).invoke(cli, list(args), obj=obj)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials and region, nothing from the developer's own AWS config, no endpoint override."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # moto's ~5000 built-in AMIs cost a quarter second per EC2 backend; the nodes' image id is never looked up.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    # Every CLI run builds its own boto3 session; one shared loader parses botocore's service JSON once.
    monkeypatch.setattr(botocore.session, "create_loader", lambda *args, **kwargs: _LOADER)
    # The default stack name must not depend on the directory pytest runs from.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cluster(aws_env: None) -> Iterator[FakeCluster]:
    """node1 active and serving (epoch 1, stable), node2 a healthy standby, every VIP route on node1."""
    with mock_aws():
        fake = FakeCluster()
        yield fake
        handler_module.use_runtime(None)
