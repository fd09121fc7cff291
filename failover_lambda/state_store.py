"""The DynamoDB state table. Every role change is a conditional write on the epoch read before."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from failover_lambda.aws import AWS_ERRORS, AwsUnavailable, error_code
from failover_lambda.model import (
    FENCING,
    STABLE,
    CheckerState,
    ClusterState,
    LoopState,
    NodeReport,
    Request,
    Snapshot,
)

CLUSTER_KEY = "cluster"
CHECKER_KEY = "checker"
REQUEST_KEY = "request"
LOOP_KEY = "loop"
NODE_PREFIX = "node#"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_ddb(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_decimals(v)) for k, v in values.items()}


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(round(value, 3)))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    return value


def _from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


class StateStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def read(self) -> Snapshot:
        """One consistent Scan: the table holds a handful of items, so this is a single cheap call."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        while True:
            page = self._call("Scan", self._client.scan, **kwargs)
            items += [_from_ddb(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        by_key = {str(item.get("pk")): item for item in items}
        nodes = {
            key[len(NODE_PREFIX):]: NodeReport.from_item(key[len(NODE_PREFIX):], item)
            for key, item in by_key.items() if key.startswith(NODE_PREFIX)
        }
        return Snapshot(
            cluster=ClusterState.from_item(by_key[CLUSTER_KEY]) if CLUSTER_KEY in by_key else None,
            nodes=nodes,
            checker=CheckerState.from_item(by_key.get(CHECKER_KEY, {})),
            request=Request.from_item(by_key[REQUEST_KEY]) if REQUEST_KEY in by_key else None,
            loop=LoopState.from_item(by_key.get(LOOP_KEY, {})),
        )

    def read_loop(self) -> LoopState:
        response = self._call("GetItem", self._client.get_item, TableName=self._table,
                              Key=_to_ddb({"pk": LOOP_KEY}), ConsistentRead=True)
        return LoopState.from_item(_from_ddb(response.get("Item") or {}))

    # ----- the loop lease (failover_lambda/loop_lease.py): each write is conditional on who holds it -----
    def take_loop(self, me: str, now: float, expires_at: float) -> bool:
        """Take a free or expired loop lease (or one handed over to `me`). `:now` is the taker's wall clock."""
        return self._loop_write("SET holder = :me, expires_at = :exp REMOVE successor",
                                "attribute_not_exists(holder) OR expires_at < :now OR holder = :me",
                                {":me": me, ":exp": expires_at, ":now": now})

    def ask_for_loop(self, me: str) -> bool:
        """Ask the holder to hand the loop over at its next cycle (a newer ask replaces an older one)."""
        return self._loop_write("SET successor = :me", "attribute_exists(holder) AND holder <> :me", {":me": me})

    def renew_loop(self, me: str, expires_at: float, last_probe_at: float) -> bool:
        return self._loop_write("SET expires_at = :exp, last_probe_at = :probe", "holder = :me",
                                {":me": me, ":exp": expires_at, ":probe": last_probe_at})

    def hand_over_loop(self, me: str, successor: str, expires_at: float, last_probe_at: float) -> bool:
        return self._loop_write("SET holder = :next, expires_at = :exp, last_probe_at = :probe REMOVE successor",
                                "holder = :me AND successor = :next",
                                {":me": me, ":next": successor, ":exp": expires_at, ":probe": last_probe_at})

    def release_loop(self, me: str, last_probe_at: float) -> bool:
        return self._loop_write("SET last_probe_at = :probe REMOVE holder, expires_at", "holder = :me",
                                {":me": me, ":probe": last_probe_at})

    def _loop_write(self, expression: str, condition: str, values: dict[str, Any]) -> bool:
        return self._conditional("UpdateItem", self._client.update_item, TableName=self._table,
                                 Key=_to_ddb({"pk": LOOP_KEY}), UpdateExpression=expression,
                                 ConditionExpression=condition, ExpressionAttributeValues=_to_ddb(values))

    def read_node(self, name: str) -> NodeReport | None:
        response = self._call("GetItem", self._client.get_item, TableName=self._table,
                              Key=_to_ddb({"pk": NODE_PREFIX + name}), ConsistentRead=True)
        item = response.get("Item")
        return NodeReport.from_item(name, _from_ddb(item)) if item else None

    def bootstrap(self, first_node: str, instance_id: str | None, now: float) -> bool:
        item: dict[str, Any] = {"pk": CLUSTER_KEY, "active": first_node, "epoch": 1, "phase": STABLE,
                                "maintenance": False, "changed_at": now, "reason": "bootstrap"}
        if instance_id:
            item["active_instance"] = instance_id
        return self._conditional("PutItem", self._client.put_item, TableName=self._table, Item=_to_ddb(item),
                                 ConditionExpression="attribute_not_exists(pk)")

    def begin_fencing(self, seen: ClusterState, candidate: str, reason: str, now: float) -> bool:
        """Step 1 of a takeover: epoch+1, nobody active. False if anyone changed the epoch meanwhile."""
        values: dict[str, Any] = {":fencing": FENCING, ":new": seen.epoch + 1, ":seen": seen.epoch,
                                  ":stable": STABLE, ":old": seen.active or "", ":cand": candidate,
                                  ":now": now, ":reason": reason, ":old_instance": seen.active_instance or ""}
        return self._update(
            "SET phase = :fencing, epoch = :new, fencing_node = :old, fencing_instance = :old_instance, "
            "candidate = :cand, changed_at = :now, reason = :reason REMOVE active, active_instance",
            "epoch = :seen AND phase = :stable", values)

    def promote(self, seen: ClusterState, node: str, instance_id: str | None, reason: str,
                now: float) -> bool:
        """Step 4: fencing confirmed; the same epoch now names the new active node."""
        values: dict[str, Any] = {":stable": STABLE, ":node": node, ":now": now, ":reason": reason,
                                  ":seen": seen.epoch, ":fencing": FENCING}
        expression = "SET phase = :stable, active = :node, changed_at = :now, reason = :reason"
        if instance_id:
            values[":instance"] = instance_id
            expression += ", active_instance = :instance"
        return self._update(expression + " REMOVE fencing_node, fencing_instance, candidate",
                            "epoch = :seen AND phase = :fencing", values)

    def bind_active_instance(self, seen: ClusterState, instance_id: str, now: float) -> bool:
        """Record which instance holds the role when the item lacks it: agents start MinIO only on that one.
        `changed_at` restarts the MinIO start grace (the node could not start it while unbound)."""
        return self._update("SET active_instance = :instance, changed_at = :now",
                            "epoch = :seen AND phase = :stable AND attribute_not_exists(active_instance)",
                            {":instance": instance_id, ":seen": seen.epoch, ":stable": STABLE, ":now": now})

    def record_routes(self, epoch: int) -> bool:
        """Every VIP route has been written for `epoch` (the same epoch, still stable): later cycles stop writing
        them blindly. Never moves `routes_epoch` back."""
        return self._update("SET routes_epoch = :epoch",
                            "epoch = :epoch AND phase = :stable AND "
                            "(attribute_not_exists(routes_epoch) OR routes_epoch < :epoch)",
                            {":epoch": epoch, ":stable": STABLE})

    def set_maintenance(self, enabled: bool, now: float) -> None:
        self._call("UpdateItem", self._client.update_item, TableName=self._table,
                   Key=_to_ddb({"pk": CLUSTER_KEY}),
                   UpdateExpression="SET maintenance = :m, maintenance_changed_at = :now",
                   ConditionExpression="attribute_exists(pk)",
                   ExpressionAttributeValues=_to_ddb({":m": enabled, ":now": now}))

    def save_checker_fields(self, values: dict[str, Any]) -> None:
        """These attributes of the checker item only: a run never rewrites what it did not change (the counters,
        holds and alert times another, overlapping run may have recorded since this run read the item)."""
        names = {f"#f{index}": name for index, name in enumerate(values)}
        self._call("UpdateItem", self._client.update_item, TableName=self._table, Key=_to_ddb({"pk": CHECKER_KEY}),
                   UpdateExpression="SET " + ", ".join(f"{alias} = :v{alias[2:]}" for alias in names),
                   ExpressionAttributeNames=names,
                   ExpressionAttributeValues=_to_ddb({f":v{index}": value
                                                      for index, value in enumerate(values.values())}))

    def claim_request(self, request_id: str, now: float) -> bool:
        """Take a queued request before running it: from here on the CLI can no longer withdraw it
        (it deletes only with attribute_not_exists(taken_at)). False if it was withdrawn or already taken."""
        return self._conditional("UpdateItem", self._client.update_item, TableName=self._table,
                                 Key=_to_ddb({"pk": REQUEST_KEY}), UpdateExpression="SET taken_at = :now",
                                 ConditionExpression="request_id = :id AND attribute_not_exists(taken_at)",
                                 ExpressionAttributeValues=_to_ddb({":id": request_id, ":now": now}))

    def delete_request(self, request_id: str) -> bool:
        return self._conditional("DeleteItem", self._client.delete_item, TableName=self._table,
                                 Key=_to_ddb({"pk": REQUEST_KEY}), ConditionExpression="request_id = :id",
                                 ExpressionAttributeValues=_to_ddb({":id": request_id}))

    def _update(self, expression: str, condition: str, values: dict[str, Any]) -> bool:
        return self._conditional("UpdateItem", self._client.update_item, TableName=self._table,
                                 Key=_to_ddb({"pk": CLUSTER_KEY}), UpdateExpression=expression,
                                 ConditionExpression=condition, ExpressionAttributeValues=_to_ddb(values))

    def _conditional(self, operation: str, method: Any, **kwargs: Any) -> bool:
        """True if the write happened, False if its condition failed (another writer won)."""
        try:
            method(**kwargs)
        except AWS_ERRORS as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise AwsUnavailable(operation, error) from error
        return True

    @staticmethod
    def _call(operation: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except AWS_ERRORS as error:
            raise AwsUnavailable(operation, error) from error
