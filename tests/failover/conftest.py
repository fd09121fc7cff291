"""A fake VPC in moto with two simulated node agents, a fake clock, and invariant checks on every test.

The simulated agents reconcile with the real node_agent.decision.decide(), so the checker is tested against the
rules the nodes follow: every tick (each sleep of the fake clock) a live agent renews its lease (`lease_seq` + 1)
and serves only while the table names it active at a stable phase, bound to its instance, with EFS writable. Their
`heartbeat_at` is their own wall clock (`clock_skew`). Invariants checked during and after every test:
  S1  at most one node serves at a time, with an honest model of a node that stops renewing:
      - cut off from the table (`alive=False`): its guard kills MinIO when its lease ends (last renewal + G);
      - frozen agent (`frozen=True`): nothing on the node runs but MinIO; with a watchdog armed it is reset at
        last renewal + G + W, without one it serves until its instance is stopped;
  S2  the epoch never decreases;
  S3  a VIP route is only written while the table is stable with an active node that owns the target ENI,
      and no other node may still be serving.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import threading
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
from moto.sns.models import Subscription

from failover_lambda import handler as handler_module
from failover_lambda.aws import AwsClients
from failover_lambda.runtime import Runtime
from failover_lambda.settings import Settings
from failover_lambda.telemetry import Telemetry, metrics
from node_agent.decision import Action, ClusterView, Observation, decide
from tests.support import FakeContext, mocked_aws, vip_route_targets

REGION = "eu-west-1"
VIP = "172.16.0.1"
VIP_CIDR = f"{VIP}/32"
T0 = 1_900_000_000.0
LEASE = 1.5  # G
WATCHDOG_TIMEOUT = 1.0  # W
LEASE_DEADLINE = 4.0  # D
# The fake monotonic clock is far from the wall clock: code that mixes the two fails the tests.
MONOTONIC_OFFSET = -T0 + 1_000.0
AMI = "ami-12c6146b"  # one of moto's built-in images (describe_images costs a second per test)
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
SCHEDULED_EVENT: dict[str, Any] = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}

BASE_ENV = {
    "NODE_NAMES": "node1,node2",
    "VIP": VIP,
    "PROBE_INTERVAL_SECONDS": "1",
    "FAILURE_THRESHOLD": "3",
    "HEARTBEAT_STALE_SECONDS": "2",
    "HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "LEASE_SECONDS": str(LEASE),
    "LEASE_DEADLINE_SECONDS": str(LEASE_DEADLINE),
    "WATCHDOG": "required",
    "WATCHDOG_TIMEOUT_SECONDS": str(WATCHDOG_TIMEOUT),
    "FENCE_TIMEOUT_SECONDS": "10",
    "HTTP_PROBE": "false",
    "LOOP_SAFETY_MARGIN_SECONDS": "54",
    "MAX_PROBES": "6",
    "MINIO_START_GRACE_SECONDS": "5",
}


_LOADER = botocore.loaders.create_loader()
_SERIAL = itertools.count(1)


@dataclass
class _SharedClients:
    """boto3 clients built once per process: building an EC2 client costs more than most tests.
    They work under each test's own mock_aws (moto hooks every botocore client); the checker's clients
    forward their call hooks to whichever Harness is current."""

    session: boto3.Session
    ec2: Any
    ddb: Any
    sqs: Any
    sns: Any
    checker: AwsClients
    current: Harness | None = None


_SHARED: list[_SharedClients] = []


def shared_clients() -> _SharedClients:
    if not _SHARED:
        core = botocore.session.get_session()
        core.register_component("data_loader", _LOADER)
        session = boto3.Session(botocore_session=core, region_name=REGION)
        shared = _SharedClients(session, session.client("ec2"), session.client("dynamodb"),
                                session.client("sqs"), session.client("sns"), AwsClients.create(session))

        def on_call(**kwargs: Any) -> None:
            if shared.current is not None:
                shared.current._on_call(**kwargs)

        def on_stopped(**kwargs: Any) -> None:
            if shared.current is not None:
                shared.current._on_stopped(**kwargs)

        def on_table_call(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            if shared.current is not None:
                context["efs_ha_written"] = shared.current._on_table_call(model.name, params)

        def after_table_call(context: dict[str, Any], **_: Any) -> None:
            if shared.current is not None:
                shared.current._forget_reads(context.get("efs_ha_written", []))

        checker = shared.checker
        for client in (checker.dynamodb, checker.ec2, checker.ssm, checker.sns, checker.ec2_describe):
            client.meta.events.register("provide-client-params", on_call)
        # Every table call, the checker's and the harness's (and a test's through `Harness.ddb`), first writes
        # the agents' deferred renewals and keeps the harness's read cache exact (see Harness.item).
        for client in (checker.dynamodb, shared.ddb):
            client.meta.events.register("provide-client-params.dynamodb", on_table_call)
            client.meta.events.register("after-call.dynamodb", after_table_call)
        checker.ec2.meta.events.register("after-call.ec2.StopInstances", on_stopped)
        _SHARED.append(shared)
    return _SHARED[0]


def is_loop_lease_call(params: dict[str, Any]) -> bool:
    return params.get("Key", {}).get("pk", {}).get("S") == "loop"


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    return value


class FakeClock:
    """Time only moves when the code under test sleeps (or a test advances it); each second the agents tick."""

    def __init__(self, start: float = T0) -> None:
        self.t = start
        self._lock = threading.Lock()
        self.on_sleep: list[Callable[[], None]] = []

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t + MONOTONIC_OFFSET

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += max(0.0, seconds)
        for hook in self.on_sleep:
            hook()


@dataclass
class SimAgent:
    """One instance's node agent. `obeys=False` models a hung agent that keeps serving and renewing;
    `alive=False` an agent cut off from the table (it self-fences when its lease ends); `frozen=True` an agent
    whose every thread stalls while MinIO runs on (only the watchdog, if armed, stops it)."""

    node: str
    instance_id: str
    eni: str
    private_ip: str = ""
    alive: bool = True
    frozen: bool = False
    efs_ok: bool = True
    minio_ok: bool = True
    minio_restarting: int = 0  # the agent's report of systemd restarting a crashed MinIO (1..StartLimitBurst)
    obeys: bool = True
    serving: bool = False
    last_beat: float = 0.0  # when the last renewal was sent (true time)
    lease_seq: int = 0
    clock_skew: float = 0.0  # this node's wall clock minus the true time
    watchdog: str = "ready"  # "ready" / "off" / "unavailable"; reported "armed" while serving
    watchdog_timeout: float = WATCHDOG_TIMEOUT
    lease_seconds: float | None = LEASE  # G as this node's config has it (None: an agent that does not report it)
    stop_reason: str = "none"
    writes: bool = True  # False: renews nothing (e.g. a deploy's replacement instance waiting its turn)
    stopped_for: str | None = None  # MinIO does not run here, for this stop reason (e.g. "minio_failed")
    # A restarted agent tested (= disarmed) the device while MinIO may still run: it reports `ready` while
    # serving, and nothing would reset the node if this agent froze.
    disarmed: bool = False
    leaving: bool = False  # the OS is shutting the node down (efs-ha-handover.service's stop)

    def watchdog_state(self) -> str:
        if self.disarmed and self.watchdog == "ready":
            return "ready"
        return "armed" if self.serving and self.watchdog == "ready" else self.watchdog

    def serves_until(self) -> float:
        """When MinIO on this node stops at the latest, given that its agent no longer runs normally."""
        if self.frozen:
            armed = self.watchdog == "ready" and not self.disarmed
            return self.last_beat + self.lease + 2 * self.watchdog_timeout if armed else float("inf")
        return self.last_beat + self.lease  # cut off: the guard kills MinIO when the lease ends

    @property
    def lease(self) -> float:
        """G as the node enforces it (an agent that does not report it uses the stack's)."""
        return LEASE if self.lease_seconds is None else self.lease_seconds


@dataclass
class Harness:
    monkeypatch: pytest.MonkeyPatch
    clock: FakeClock = field(default_factory=FakeClock)
    agents: dict[str, SimAgent] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    metric_log: list[tuple[str, float]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    call_hooks: dict[str, Callable[[dict[str, Any]], None]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    aws: AwsClients = field(init=False)
    # Items as last read, by key (raw DynamoDB JSON): dropped by every write to the key, before and after it.
    _read_cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The agents' latest renewals not yet written, by key: written before any table call reads or writes.
    _pending_beats: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Two invocations in threads (tests of the loop lease) sleep, and so tick the agents, at the same time.
    _tick_lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        # Unique names anyway, so nothing depends on moto being reset between tests.
        serial = next(_SERIAL)
        self.cluster_id = f"efs-ha-test-{serial}"
        self.table = f"efs-ha-state-{serial}"
        shared = shared_clients()
        shared.current = self
        self.ec2, self.ddb, self.sqs, sns = shared.ec2, shared.ddb, shared.sqs, shared.sns
        self.aws = shared.checker
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24")["Subnet"]["SubnetId"]
                        for n in (10, 20, 110, 120)]
        self.route_tables = [self.ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
                             for _ in range(3)]
        for name, subnet in (("node1", self.subnets[2]), ("node2", self.subnets[3])):
            self.launch(name, subnet)
        for table in self.route_tables:
            self.ec2.create_route(RouteTableId=table, DestinationCidrBlock=VIP_CIDR,
                                  NetworkInterfaceId=self.agent("node1").eni)
        self.ddb.create_table(TableName=self.table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        self.topic_arn = sns.create_topic(Name=f"efs-ha-alerts-{serial}")["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName=f"alerts-{serial}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                  AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self._messages: list[dict[str, Any]] = []
        self.env = {**BASE_ENV, "ROUTE_TABLE_IDS": ",".join(self.route_tables), "TOPIC_ARN": self.topic_arn,
                    "STATE_TABLE_NAME": self.table, "CLUSTER_ID": self.cluster_id}
        original_add_metric = metrics.add_metric

        def record_metric(name: str, unit: Any, value: float, **kwargs: Any) -> None:
            self.metric_log.append((name, value))
            original_add_metric(name=name, unit=unit, value=value, **kwargs)

        self.monkeypatch.setattr(metrics, "add_metric", record_metric)
        self.clock.on_sleep.append(self.agents_tick)
        self.configure()

    # ----- environment and invocation -----
    def configure(self, **overrides: str) -> None:
        """(Re)build the Lambda runtime from env, as a cold start would; hooks record every API call."""
        self.env.update(overrides)
        for key, value in self.env.items():
            self.monkeypatch.setenv(key, value)
        handler_module.use_runtime(Runtime(Settings.from_env(os.environ), self.aws, self.clock))

    def invoke(self, event: Any = None, *, max_probes: int | None = None, budget: float = 120.0) -> Any:
        if max_probes is not None and str(max_probes) != self.env["MAX_PROBES"]:
            self.configure(MAX_PROBES=str(max_probes))
        result = handler_module.handler(SCHEDULED_EVENT if event is None else event,
                                        FakeContext(self.clock, budget))
        self._record_epoch()
        return result

    # The agents renew every tick, but only a table call can observe a renewal: each tick's renewals are held
    # until the next table call (anyone's) and written just before it, one BatchWriteItem. Renewals of a key
    # with no table call in between replace each other exactly as their writes would have (a full item
    # each); so every read sees what it would have seen, for a fraction of the calls.
    _READS = frozenset({"GetItem", "BatchGetItem", "Scan", "Query", "DescribeTable", "ListTables",
                        "TransactGetItems"})

    def _on_table_call(self, operation: str, params: dict[str, Any]) -> list[str | None]:
        """Before a table call: the deferred renewals written, and the keys it writes (None: it may write
        anything) forgotten by the read cache, now and again once it returns (see `after_table_call`)."""
        self._flush_beats()
        if operation in self._READS:
            return []
        if operation == "BatchWriteItem":
            bodies = [body for requests in params.get("RequestItems", {}).values() for request in requests
                      for body in request.values()]
        else:
            bodies = [params]
        keys: list[str | None] = [body.get("Key", body.get("Item", {})).get("pk", {}).get("S") for body in bodies]
        self._forget_reads(keys)
        return keys

    def _forget_reads(self, keys: list[str | None]) -> None:
        if None in keys:
            self._read_cache.clear()
        for key in keys:
            self._read_cache.pop(key, None)  # type: ignore[arg-type]

    def _flush_beats(self) -> None:
        with self._tick_lock:
            self._flush_beats_now()

    def _flush_beats_now(self) -> None:
        if self._pending_beats:
            beats, self._pending_beats = list(self._pending_beats.values()), {}
            self.ddb.batch_write_item(RequestItems={self.table: [{"PutRequest": {"Item": beat}} for beat in beats]})

    def _on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        self.calls.append((operation, dict(params)))
        if operation in ("ReplaceRoute", "CreateRoute"):
            self._check_route_write(params)
        hook = self.call_hooks.get(operation)
        if hook:
            hook(params)

    # ----- the simulated nodes -----
    def launch(self, node: str, subnet: str | None = None) -> SimAgent:
        tags = [{"Key": "efs-ha:cluster", "Value": self.cluster_id}, {"Key": "efs-ha:node", "Value": node}]
        instance = self.ec2.run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet or self.subnets[2],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]
        agent = SimAgent(node, instance["InstanceId"], instance["NetworkInterfaces"][0]["NetworkInterfaceId"],
                         instance["NetworkInterfaces"][0].get("PrivateIpAddress", ""))
        self.agents[agent.instance_id] = agent
        self.states[agent.instance_id] = "running"
        return agent

    def throttle(self, *operations: str) -> None:
        """EC2 answers these operations with its throttling error (RequestLimitExceeded) from now on."""
        def raise_error(_: dict[str, Any]) -> None:
            raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}},
                              "Describe")

        for operation in operations:
            self.call_hooks[operation] = raise_error

    def stop_instance(self, instance_id: str) -> None:
        self.ec2.stop_instances(InstanceIds=[instance_id])
        self.states[instance_id] = "stopped"

    def terminate_instance(self, instance_id: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[instance_id])
        self.states[instance_id] = "terminated"

    def _on_stopped(self, parsed: dict[str, Any], **_: Any) -> None:
        """The checker's StopInstances (moto stops at once): the simulation tracks states without describes."""
        for change in parsed.get("StoppingInstances", []):
            self.states[change["InstanceId"]] = "stopped"

    def agent(self, node: str) -> SimAgent:
        """The newest agent of `node`."""
        return [a for a in self.agents.values() if a.node == node][-1]

    def instance_state(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return str(reservations[0]["Instances"][0]["State"]["Name"])

    def agents_tick(self) -> None:
        """Every live agent reads the cluster item, reconciles by the design's rule and renews its lease."""
        with self._tick_lock:
            self._agents_tick()

    def _agents_tick(self) -> None:
        item = self.cluster()
        epoch = int(item.get("epoch", 0))
        view = ClusterView(active=item.get("active"), epoch=epoch, phase=item.get("phase", "stable"),
                           active_instance=item.get("active_instance"))
        self._record_epoch(epoch)
        now = self.clock.now()
        beats: list[dict[str, Any]] = []
        for agent in self.agents.values():
            if self.states[agent.instance_id] != "running":
                agent.alive = agent.serving = agent.frozen = False  # a stopped instance runs nothing
                continue
            if agent.serving and (agent.frozen or not agent.alive) and now >= agent.serves_until():
                # The guard killed MinIO at the end of the lease, or the watchdog reset the node.
                agent.serving = False
                if agent.frozen:
                    agent.frozen = agent.alive = False  # reset: the node reboots without its agent here
            if not agent.alive or agent.frozen:
                continue
            if agent.obeys:
                self._reconcile(agent, view)
            if agent.writes:
                beats.append(self._beat(agent, seen_epoch=epoch))
        if len({beat["pk"] for beat in beats}) < len(beats):
            # Two instances renewing one node's item in one tick: written now, as a batch the table refuses.
            self._flush_beats()
            self.ddb.batch_write_item(RequestItems={self.table: [
                {"PutRequest": {"Item": self._serialize(beat)}} for beat in beats]})
            beats = []
        for beat in beats:
            self._pending_beats[beat["pk"]] = self._serialize(beat)
            self._read_cache.pop(beat["pk"], None)
        serving = self.serving_nodes()
        if len(serving) > 1:
            self.violations.append(f"S1: {serving} serve at once at t={self.clock.now() - T0:.1f}")

    @staticmethod
    def _reconcile(agent: SimAgent, view: ClusterView) -> None:
        """What the real agent's reconcile loop does: node_agent.decision.decide() on this tick's view."""
        if agent.stopped_for:
            agent.serving, agent.stop_reason = False, agent.stopped_for
            return
        decision = decide(Observation(
            me=agent.node, cluster=view, efs_ok=agent.efs_ok, serving=agent.serving, minio_healthy=agent.minio_ok,
            lease_age_seconds=0.0, lease_seconds=agent.lease, instance_id=agent.instance_id,
            watchdog=agent.watchdog, leaving=agent.leaving))
        if decision.action is Action.START_MINIO:
            agent.serving, agent.stop_reason = True, "none"
        elif decision.action is Action.STOP_MINIO:
            agent.serving, agent.stop_reason = False, decision.stop_reason

    def heartbeat(self, agent: SimAgent, **overrides: Any) -> None:
        self.put_item(self._beat(agent, **overrides))

    def _beat(self, agent: SimAgent, **overrides: Any) -> dict[str, Any]:
        """One lease renewal: lease_seq + 1, the node's own wall clock in heartbeat_at."""
        agent.last_beat = self.clock.now()
        agent.lease_seq += 1
        values: dict[str, Any] = {"pk": f"node#{agent.node}", "lease_seq": agent.lease_seq,
                                  "heartbeat_at": self.clock.now() + agent.clock_skew,
                                  "efs_ok": agent.efs_ok, "minio_ok": agent.minio_ok and agent.serving,
                                  "minio_restarting": agent.minio_restarting if agent.serving else 0,
                                  "serving": agent.serving, "seen_epoch": 0,
                                  "stop_reason": "none" if agent.serving else agent.stop_reason,
                                  "watchdog": agent.watchdog_state(), "watchdog_timeout": agent.watchdog_timeout,
                                  "instance_id": agent.instance_id, "eni_id": agent.eni,
                                  "private_ip": agent.private_ip, "detail": "sim", "leaving": agent.leaving}
        if agent.lease_seconds is not None:
            values["lease_seconds"] = agent.lease_seconds
        values.update(overrides)
        return values

    def serving_nodes(self) -> list[str]:
        """Instances where MinIO may run now (see the module docstring for the S1 model)."""
        now = self.clock.now()
        return [a.instance_id for a in self.agents.values()
                if a.serving and self.states[a.instance_id] == "running"
                and ((a.alive and not a.frozen) or now < a.serves_until())]

    def settle(self, seconds: int = 6) -> None:
        """Let time pass with healthy agents (past MINIO_START_GRACE_SECONDS)."""
        for _ in range(seconds):
            self.clock.sleep(1.0)

    # ----- table, routes, notifications -----
    @staticmethod
    def _serialize(values: dict[str, Any]) -> dict[str, Any]:
        return {k: _SERIALIZER.serialize(_decimals(v)) for k, v in values.items()}

    def put_item(self, values: dict[str, Any]) -> None:
        self.ddb.put_item(TableName=self.table, Item=self._serialize(values))

    def item(self, key: str) -> dict[str, Any]:
        """The item as a consistent read returns it now. Read once until something writes it: every write goes
        through a hooked client (the checker's, `self.ddb`), and the agents' deferred renewals are written first."""
        if key in self._pending_beats:
            self._flush_beats()
        raw = self._read_cache.get(key)
        if raw is None:
            raw = self.ddb.get_item(TableName=self.table, Key={"pk": {"S": key}},
                                    ConsistentRead=True).get("Item", {})
            self._read_cache[key] = raw
        return {k: _DESERIALIZER.deserialize(v) for k, v in raw.items()}

    def cluster(self) -> dict[str, Any]:
        return self.item("cluster")

    def update_cluster(self, **values: Any) -> None:
        self.put_item({**self.cluster(), **values})

    def routes(self) -> dict[str, str | None]:
        return vip_route_targets(self.ec2, self.route_tables, VIP_CIDR)

    def set_route(self, table: str, eni: str) -> None:
        self.ec2.replace_route(RouteTableId=table, DestinationCidrBlock=VIP_CIDR, NetworkInterfaceId=eni)

    def sns_messages(self) -> list[dict[str, Any]]:
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return self._messages
            for message in batch:
                envelope = json.loads(message["Body"])
                self._messages.append({"subject": envelope.get("Subject", ""),
                                       "body": json.loads(envelope["Message"])})
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def metric_total(self, name: str) -> float:
        return sum(value for metric, value in self.metric_log if metric == name)

    def operations(self, *, loop_lease: bool = False) -> list[str]:
        """The API calls made, in order; the loop lease's own reads and writes (item `loop`) only on request:
        they are bookkeeping of who probes, not what a probe or a takeover does."""
        return [operation for operation, params in self.calls if loop_lease or not is_loop_lease_call(params)]

    # ----- invariants -----
    def _record_epoch(self, epoch: int | None = None) -> None:
        self.epochs.append(int(self.cluster().get("epoch", 0)) if epoch is None else epoch)

    def _check_route_write(self, params: dict[str, Any]) -> None:
        item = self.cluster()
        target = params.get("NetworkInterfaceId")
        owner = next((a for a in self.agents.values() if a.eni == target), None)
        if item.get("phase") != "stable" or owner is None or owner.node != item.get("active"):
            self.violations.append(f"S3: route to {target} while cluster is {item}")
        others = [s for s in self.serving_nodes() if owner is None or s != owner.instance_id]
        if others:
            self.violations.append(f"S3: route to {target} while {others} may still serve")

    def check_invariants(self) -> None:
        assert self.violations == []
        assert self.epochs == sorted(self.epochs), f"S2: epoch decreased: {self.epochs}"


AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}


# moto signs every SNS message it delivers to the alert queue with a new 2048-bit RSA key (~45 ms a message, a
# failover test's costliest call); one key per process signs them just as well.
_MOTO_SNS_KEY: list[Any] = []
_moto_sns_new_key = Subscription.private_key


def _moto_sns_key(subscription: Subscription) -> Any:
    if not _MOTO_SNS_KEY:
        _MOTO_SNS_KEY.append(_moto_sns_new_key(subscription))
    return _MOTO_SNS_KEY[0]


@pytest.fixture
def moto_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh moto backend per test (moto's describe calls slow down as instances pile up)."""
    monkeypatch.setattr(Subscription, "private_key", _moto_sns_key)
    with mocked_aws(AWS_TEST_ENV):
        yield


def _ids(harness: Harness) -> list[str]:
    """Every name and id that differs between two harnesses, in one order."""
    per_agent = [value for agent in harness.agents.values()
                 for value in (agent.instance_id, agent.eni, agent.private_ip)]
    return [*per_agent, *harness.route_tables, *harness.subnets, harness.cluster_id, harness.table,
            harness.topic_arn, harness.queue_url]


_ID_TOKEN = re.compile(r"\b(?:i|eni|rtb|subnet|vpc)-[0-9a-f]{8,17}\b|\b10\.0\.\d+\.\d+\b")
_AGENT_IDS = ("node", "instance_id", "eni", "private_ip")


@dataclass(frozen=True)
class _SettledCluster:
    """What the real bootstrap (the checker's first run) and `settle()` left behind, recorded once per process:
    the table's items in table order, the simulated agents, the fake clock and the epochs seen, with the ids
    of the harness they were recorded in."""

    ids: list[str]
    items: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    clock: float
    epochs: list[int]

    @classmethod
    def record(cls, harness: Harness) -> _SettledCluster:
        harness._flush_beats()
        items = harness.ddb.scan(TableName=harness.table, ConsistentRead=True)["Items"]
        ids = _ids(harness)
        unknown = set(_ID_TOKEN.findall(json.dumps(items))) - set(ids)
        assert not unknown, f"the bootstrap wrote ids the replay would not map: {unknown}"
        assert harness.violations == []
        agents = [{k: v for k, v in dataclasses.asdict(a).items() if k not in _AGENT_IDS}
                  for a in harness.agents.values()]
        return cls(ids, items, agents, harness.clock.t, list(harness.epochs))

    def replay(self, harness: Harness) -> None:
        """The same state in a new harness: the items written (ids mapped, table order kept), the agents set."""
        mapping = dict(zip(self.ids, _ids(harness), strict=True))

        def mapped(value: Any) -> Any:
            if isinstance(value, str):
                return _ID_TOKEN.sub(lambda m: mapping.get(m.group(0), m.group(0)), mapping.get(value, value))
            if isinstance(value, dict):
                return {k: mapped(v) for k, v in value.items()}
            if isinstance(value, list):
                return [mapped(v) for v in value]
            return value

        for item in self.items:
            harness.ddb.put_item(TableName=harness.table, Item=mapped(item))
        for agent, fields in zip(harness.agents.values(), self.agents, strict=True):
            for name, value in fields.items():
                setattr(agent, name, value)
        harness.clock.t = self.clock
        harness.epochs[:] = self.epochs
        Telemetry(None, None, harness.cluster_id)  # as the bootstrap run left it: the metrics' ClusterId set


_SETTLED: list[_SettledCluster] = []


@pytest.fixture
def cluster(moto_backend: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """A bootstrapped, settled cluster: node1 active and serving (epoch 1), node2 a healthy standby.

    The checker's first run bootstraps the table and `settle()` lets the agents start, once per process; every
    later harness gets exactly what they left (`_SettledCluster`, ids mapped) without running them again.
    The bootstrap itself is tested with harnesses that run it (tests/failover/test_role_binding.py)."""
    harness = Harness(monkeypatch)
    if _SETTLED:
        _SETTLED[0].replay(harness)
    else:
        assert harness.invoke({"action": "status"})["ok"] is True  # the first run bootstraps the table
        harness.settle()
        _SETTLED.append(_SettledCluster.record(harness))
    assert harness.agent("node1").serving
    harness.calls.clear()
    harness.metric_log.clear()
    harness.sns_messages().clear()
    yield harness
    finish(harness)


def finish(harness: Harness) -> None:
    """After a test: nothing of its runtime or metrics reaches the next one, and the invariants held throughout."""
    shared_clients().current = None
    handler_module.use_runtime(None)
    metrics.clear_default_dimensions()  # the next test has another cluster id
    metrics.clear_metrics()
    harness.check_invariants()
