"""The agent's calls to the state table: read the `cluster` item, read and write its own node item.

The node item (`node#<name>`) is the contract with failover_lambda/model.py NodeReport; its field names are
defined here once (NodeItem.to_item) and a contract test parses what this code writes with the checker's code.

Every write is conditional on the renewal counter: `attribute_not_exists(lease_seq) OR lease_seq < :seq`, so a
write that the client gave up on and DynamoDB applied late can never move the item back.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from node_agent.decision import STABLE, STOP_NONE, WATCHDOG_OFF, ClusterView

LEASE_CONDITION = "attribute_not_exists(lease_seq) OR lease_seq < :seq"
# After its first write an instance writes only while the item is still its own (see Agent._claimed).
OWNER_CONDITION = "(attribute_not_exists(instance_id) OR instance_id = :me)"


def client_config(timeout_seconds: float) -> Config:
    """No retries inside a renewal (the next renewal is the retry) and short timeouts, so a call ends in time."""
    return Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=timeout_seconds,
                  read_timeout=timeout_seconds)


# Tests build their moto client with this one.
CLIENT_CONFIG = client_config(1.0)


def dynamodb_client(region: str, timeout_seconds: float = 1.0) -> Any:
    return boto3.client("dynamodb", region_name=region, config=client_config(timeout_seconds))


class LeaseSeqConflict(RuntimeError):
    """The stored lease_seq is not lower than the one written: the write was rejected (nothing changed)."""


@dataclass(frozen=True)
class NodeItem:
    """Everything the agent reports in its node item (docs/failover-design.md, "Node item")."""

    node: str
    lease_seq: int
    heartbeat_at: float  # the node's wall clock: display and skew metric only
    serving: bool  # MinIO is or may be running here (true until a stop is confirmed)
    seen_epoch: int  # the epoch whose role the agent has ACTED on
    stop_reason: str = STOP_NONE
    efs_ok: bool = False
    minio_ok: bool = False
    # The automatic restart of a crashed MinIO in progress (1..StartLimitBurst), 0 when none is or the restart
    # budget is spent: the checker does not count its MinIO problems as failed probes while it is 1..limit.
    minio_restarting: int = 0
    watchdog: str = WATCHDOG_OFF
    watchdog_timeout: int = 0
    instance_id: str | None = None
    eni_id: str | None = None
    private_ip: str | None = None
    detail: str = ""
    # G as this node enforces it: the checker counts an expired lease as fencing only when the node's own
    # G + 2W + R fits in its deadline (a node running an older config during a rolling change is not trusted).
    lease_seconds: float = 0.0
    # The node is being shut down and asks for a planned switchover (serving on until the role has moved); the
    # checker never makes a leaving node active.
    leaving: bool = False
    # When this instance booted (its wall clock): of two instances of a node, only the one booted later may claim
    # the item (a replacement takes over; a restarted agent on the old instance does not take it back).
    launched_at: float = 0.0

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": node_key(self.node)},
            "lease_seq": {"N": str(int(self.lease_seq))},
            "heartbeat_at": {"N": str(Decimal(str(round(self.heartbeat_at, 3))))},
            "serving": {"BOOL": self.serving},
            "seen_epoch": {"N": str(int(self.seen_epoch))},
            "stop_reason": {"S": self.stop_reason},
            "efs_ok": {"BOOL": self.efs_ok},
            "minio_ok": {"BOOL": self.minio_ok},
            "minio_restarting": {"N": str(int(self.minio_restarting))},
            "watchdog": {"S": self.watchdog},
            "watchdog_timeout": {"N": str(int(self.watchdog_timeout))},
            "detail": {"S": self.detail[:500] or "-"},
            "lease_seconds": {"N": str(Decimal(str(round(self.lease_seconds, 3))))},
            "leaving": {"BOOL": self.leaving},
            "launched_at": {"N": str(Decimal(str(round(self.launched_at, 3))))},
        }
        for name in ("instance_id", "eni_id", "private_ip"):
            value = getattr(self, name)
            if value:
                item[name] = {"S": value}
        return item


def node_key(node: str) -> str:
    return f"node#{node}"


class StateTable:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def read_cluster(self) -> ClusterView:
        """Consistent read. A missing item means no node is active yet. Raises on any API error."""
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": "cluster"}},
                                     ConsistentRead=True).get("Item")
        if not item:
            return ClusterView(active=None, epoch=0, phase=STABLE)
        return ClusterView(
            active=item.get("active", {}).get("S"),
            epoch=int(item.get("epoch", {}).get("N", "0")),
            phase=item.get("phase", {}).get("S", STABLE),
            active_instance=item.get("active_instance", {}).get("S"),
            fencing_node=item.get("fencing_node", {}).get("S"),
            fencing_instance=item.get("fencing_instance", {}).get("S"),
        )

    def read_back(self, node: str) -> tuple[int, str | None]:
        """(lease_seq, instance_id) of the stored node item, consistent read. Raises on errors."""
        seq, owner, _ = self.read_owner(node)
        return seq, owner

    def read_owner(self, node: str) -> tuple[int, str | None, float]:
        """(lease_seq, instance_id, launched_at) of the stored node item, consistent read. Raises on errors."""
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": node_key(node)}}, ConsistentRead=True,
                                     ProjectionExpression="lease_seq, instance_id, launched_at").get("Item") or {}
        return (int(item.get("lease_seq", {}).get("N", "0")), item.get("instance_id", {}).get("S"),
                float(item.get("launched_at", {}).get("N", "0")))

    def may_write(self, node: str) -> bool:
        """Whether this node may write its item, without writing it: a conditional PutItem that can never apply
        (the condition fails whether the item exists or not). DynamoDB checks permissions first, so
        ConditionalCheckFailed means allowed; AccessDenied (or any other error) means not proven."""
        try:
            self._client.put_item(TableName=self._table, Item={"pk": {"S": node_key(node)}},
                                  ConditionExpression="attribute_exists(pk) AND attribute_not_exists(pk)")
        except ClientError as error:
            return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
        return False  # cannot happen: the condition is never true

    def write_node(self, report: NodeItem, *, owner: str | None = None) -> None:
        """Conditional PutItem: raises LeaseSeqConflict if the stored lease_seq is not lower, or (with `owner`) the
        stored item belongs to another instance; other errors as is."""
        condition = LEASE_CONDITION
        values = {":seq": {"N": str(int(report.lease_seq))}}
        if owner is not None:
            condition = f"({LEASE_CONDITION}) AND {OWNER_CONDITION}"
            values[":me"] = {"S": owner}
        try:
            self._client.put_item(TableName=self._table, Item=report.to_item(), ConditionExpression=condition,
                                  ExpressionAttributeValues=values)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise LeaseSeqConflict(f"lease_seq {report.lease_seq} rejected: the stored one is not lower") \
                    from None
            raise
