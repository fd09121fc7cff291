"""The agent's two calls to the state table: read the `cluster` item, write its own heartbeat."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config

from node_agent.decision import STABLE, ClusterView

# Calls must end well inside the lease: two attempts, one second each way.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=1, read_timeout=1)


def dynamodb_client(region: str) -> Any:
    return boto3.client("dynamodb", region_name=region, config=CLIENT_CONFIG)


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
        )

    def write_heartbeat(self, node: str, *, heartbeat_at: float, efs_ok: bool, minio_ok: bool, serving: bool,
                        seen_epoch: int, instance_id: str | None, detail: str) -> None:
        item: dict[str, Any] = {
            "pk": {"S": f"node#{node}"},
            "heartbeat_at": {"N": str(Decimal(str(round(heartbeat_at, 3))))},
            "efs_ok": {"BOOL": efs_ok},
            "minio_ok": {"BOOL": minio_ok},
            "serving": {"BOOL": serving},
            "seen_epoch": {"N": str(seen_epoch)},
            "detail": {"S": detail[:500] or "-"},
        }
        if instance_id:
            item["instance_id"] = {"S": instance_id}
        self._client.put_item(TableName=self._table, Item=item)
