"""Polls moto like the VPC data plane and the SSM agent would see it:
- mirrors the client's route table into the client namespace's kernel route (the VPC router);
- delivers SSM stop commands to reachable nodes (the SSM agent; never to a node marked unreachable for SSM,
  a frozen or partitioned machine), and kills a node whose instance moto shows
  stopped (StopInstances), firing the EC2 state-change event the stack's rule would send;
- records the cluster item, heartbeats and every route table for the measurements."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from drill import aws
from drill.config import TABLE_NAME, VIP, Fleet, node_address
from drill.netns import Topology
from drill.nodes import Node, stop_s3_async
from drill.timeline import ClusterSample, Timeline

POLL_SECONDS = 0.1
SLOW_EVERY = 3  # instances and SSM commands every 3rd poll
FENCED_STATES = ("stopping", "stopped", "shutting-down", "terminated")
_deserialize = TypeDeserializer().deserialize


class Watcher:
    def __init__(self, fleet: Fleet, topology: Topology, nodes: dict[str, Node], timeline: Timeline,
                 client_table: str, ec2_event: Callable[[dict[str, Any]], None], log: Callable[[str], None]) -> None:
        self._fleet = fleet
        self._node_names = tuple(nodes)  # in priority order: node i's link address is node_address(i)
        self._topology = topology
        self._nodes = nodes
        self._timeline = timeline
        self._client_table = client_table
        self._ec2_event = ec2_event
        self._log = log
        self._ec2 = aws.client("ec2")
        self._ssm = aws.client("ssm")
        self._ddb = aws.client("dynamodb")
        self._node_of_eni = {eni: node for node, eni in fleet.enis.items()}
        self._node_of_instance = {iid: node for node, iid in fleet.instance_ids.items()}
        self._applied: str | None = "unset"
        self._seen_commands: set[str] = set()
        self._pending: list[tuple[str, float]] = []  # (node, expires) commands waiting for a reachable node
        self._states: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def track_replacement(self, node: str, instance_id: str, eni: str) -> None:
        """A node's new instance: its routes and EC2 state are followed from now on (the fleet holds the new ids)."""
        self._node_of_eni[eni] = node
        self._node_of_instance[instance_id] = node

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        count = 0
        while not self._stop.wait(POLL_SECONDS):
            count += 1
            try:
                self._routes()
                self._table()
                if count % SLOW_EVERY == 0:
                    self._instances()
                    self._commands()
            except Exception as error:  # moto busy: the next poll retries
                self.errors += 1
                if self.errors % 20 == 1:
                    self._log(f"watcher: {type(error).__name__}: {error}")

    # ----- VPC router -----
    def _routes(self) -> None:
        response = self._ec2.describe_route_tables(
            Filters=[{"Name": "route-table-id", "Values": list(self._fleet.route_table_ids)}])
        now = time.time()
        targets: dict[str, str | None] = {}
        for table in response["RouteTables"]:
            route = next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == f"{VIP}/32"), None)
            targets[table["RouteTableId"]] = self._node_of_eni.get(route.get("NetworkInterfaceId", "")) \
                if route else None
        target = targets.get(self._client_table)
        with self._timeline.lock:
            self._timeline.routes_all = targets
            if not self._timeline.table_route or self._timeline.table_route[-1][1] != target:
                self._timeline.table_route.append((now, target))
        if target != self._applied:
            via = node_address(self._node_names.index(target)) if target else None
            self._topology.route_vip(via)
            self._applied = target
            with self._timeline.lock:
                self._timeline.applied_route.append((time.time(), target))

    # ----- state table -----
    def _table(self) -> None:
        items = self._ddb.scan(TableName=TABLE_NAME, ConsistentRead=True)["Items"]
        now = time.time()
        by_key = {item["pk"]["S"]: {k: _deserialize(v) for k, v in item.items()} for item in items}
        cluster = by_key.get("cluster")
        with self._timeline.lock:
            self._timeline.nodes = {k[5:]: v for k, v in by_key.items() if k.startswith("node#")}
            for node, report in self._timeline.nodes.items():
                # Renewal progress on the drill's own clock (a node's heartbeat_at is its clock, maybe skewed).
                progress = report.get("lease_seq", report.get("heartbeat_at"))
                if progress is not None and self._timeline.lease_progress.get(node) != progress:
                    self._timeline.lease_progress[node] = progress
                    self._timeline.renewed_at[node] = now
                    if report.get("heartbeat_at") is not None:  # the node's clock minus ours (+ poll lag)
                        self._timeline.skew[node] = float(report["heartbeat_at"]) - now
                reason = report.get("stop_reason")
                history = self._timeline.stop_reasons.setdefault(node, [])
                if reason is not None and (not history or history[-1][1] != reason):
                    history.append((now, str(reason)))
            if cluster is not None:
                sample = ClusterSample(now, int(cluster.get("epoch", 0)), str(cluster.get("phase", "")),
                                       cluster.get("active"))
                last = self._timeline.cluster[-1] if self._timeline.cluster else None
                if last is None or (last.epoch, last.phase, last.active) != (sample.epoch, sample.phase,
                                                                             sample.active):
                    self._timeline.cluster.append(sample)

    # ----- EC2 instances: StopInstances kills the node -----
    def _instances(self) -> None:
        response = self._ec2.describe_instances(InstanceIds=list(self._fleet.instance_ids.values()))
        for reservation in response["Reservations"]:
            for item in reservation["Instances"]:
                node = self._node_of_instance[item["InstanceId"]]
                state = item["State"]["Name"]
                if self._states.get(node) != state:
                    self._states[node] = state
                    self._on_state(node, item["InstanceId"], state)

    def _on_state(self, node: str, instance_id: str, state: str) -> None:
        self._timeline.event(time.time(), f"instance of {node} is {state}")
        if state in FENCED_STATES:
            self._nodes[node].kill()  # the whole machine is gone
            self._ec2_event({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
                             "detail": {"instance-id": instance_id, "state": state}})

    # ----- SSM agent -----
    def _commands(self) -> None:
        for command in self._ssm.list_commands()["Commands"]:
            if command["CommandId"] in self._seen_commands:
                continue
            self._seen_commands.add(command["CommandId"])
            expires = time.time() + float(command.get("TimeoutSeconds") or 30)
            for instance_id in command.get("InstanceIds", []):
                node = self._node_of_instance.get(instance_id)
                if node:
                    self._timeline.event(time.time(), f"SSM command for {node}: {command['Parameters']}")
                    self._pending.append((node, expires))
        still = []
        for node, expires in self._pending:
            target = self._nodes[node]
            if target.ssm_reachable and target.links_up and self._states.get(node) == "running":
                self._timeline.event(time.time(), f"SSM stop delivered to {node}")
                stop_s3_async(self._nodes[node])
            elif time.time() < expires:
                still.append((node, expires))  # a cut node gets it when it is back, if still in time
        self._pending = still
