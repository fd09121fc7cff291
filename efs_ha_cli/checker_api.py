"""Talking to the checker: invoke the Lambda, or, when the invoke is throttled, leave the request in the table.

The design: an operator action runs in its own invocation beside the probe loop (the loop lease keeps one loop,
the epoch writes keep the two safe), so with no reserved concurrency (the default) an invoke is throttled only
when the account's concurrency is used up; with a reservation, also when the loop and the run taking it over
hold it. Either way the request is queued in the `request` item and executed by the running probe loop at its
next cycle; maintenance is a flag on `cluster`.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError, ReadTimeoutError

from efs_ha_cli.errors import CliError, Refused, TimedOut
from failover_lambda.aws import AwsUnavailable
from failover_lambda.state_store import CLUSTER_KEY, REQUEST_KEY, StateStore

THROTTLED = "TooManyRequestsException"


class Throttled(Exception):
    """The Lambda refused the invocation because its reserved concurrency is in use."""


class CheckerFunction:
    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._client = lambda_client
        self._name = function_name

    def call(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's JSON answer. Raises Throttled, or CliError when the function itself failed."""
        try:
            response = self._client.invoke(FunctionName=self._name, InvocationType="RequestResponse",
                                           Payload=json.dumps(event).encode())
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == THROTTLED:
                raise Throttled() from error
            if code == "ResourceNotFoundException":
                raise CliError(f"the checker function {self._name} (output FailoverFunctionName) does not "
                               f"exist; was the stack deployed with this version?") from None
            raise
        except ReadTimeoutError:
            raise TimedOut(f"no answer from {self._name} in time; check `efs-ha status`") from None
        return self._answer(response)

    def _answer(self, response: dict[str, Any]) -> dict[str, Any]:
        raw: Any = response.get("Payload") or b""
        text = raw.read() if hasattr(raw, "read") else raw
        try:
            payload = json.loads(text or b"null")
        except ValueError:
            payload = None
        if response.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else None
            raise CliError(f"the checker function {self._name} failed: {message or response['FunctionError']}")
        if not isinstance(payload, dict):
            raise CliError(f"the checker function {self._name} returned no JSON object")
        return payload


class RequestQueue:
    """The `request` item: at most one queued operator action, never overwritten while it exists.

    The checker claims a request with a conditional write (SET taken_at) before it runs it; the CLI withdraws
    only a request nobody has taken (attribute_not_exists(taken_at)). `requested_at` is this machine's clock:
    shown to operators, never compared with the checker's clock. A request the CLI gives up on (timeout,
    Ctrl-C) it withdraws itself; it never expires by age.
    """

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._client = dynamodb
        self._table = table_name

    def queue_switchover(self, target: str, now: float) -> str:
        return self.queue("switchover", target, now)

    def queue(self, action: str, target: str, now: float) -> str:
        request_id = uuid.uuid4().hex
        item = {"pk": REQUEST_KEY, "action": action, "target": target,
                "requested_at": Decimal(str(round(now, 3))), "request_id": request_id}
        try:
            # Two operators must not clobber each other: only an absent request is written.
            self._client.put_item(TableName=self._table, Item=_ddb(item),
                                  ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            raise Refused(self._pending_message(now)) from None
        return request_id

    def withdraw(self, request_id: str) -> bool:
        """Delete our own request if the checker has not taken it yet; False if it has (or it is gone)."""
        try:
            self._client.delete_item(TableName=self._table, Key=_ddb({"pk": REQUEST_KEY}),
                                     ConditionExpression="request_id = :id AND attribute_not_exists(taken_at)",
                                     ExpressionAttributeValues=_ddb({":id": request_id}))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def state(self, request_id: str) -> str:
        """"queued", "taken" (the checker claimed it and is running it) or "gone" (handled, or withdrawn)."""
        item = self._client.get_item(TableName=self._table, Key=_ddb({"pk": REQUEST_KEY}),
                                     ConsistentRead=True).get("Item") or {}
        if item.get("request_id", {}).get("S") != request_id:
            return "gone"
        return "taken" if "taken_at" in item else "queued"

    def _pending_message(self, now: float) -> str:
        item = self._client.get_item(TableName=self._table, Key=_ddb({"pk": REQUEST_KEY}),
                                     ConsistentRead=True).get("Item")
        pending = {k: TypeDeserializer().deserialize(v) for k, v in (item or {}).items()}
        # requested_at is the other operator's clock: shown, not judged.
        age = now - float(pending.get("requested_at", now))
        taken = "taken by the checker, " if "taken_at" in pending else ""
        return (f"another request is already queued ({pending.get('action', '?')} to "
                f"{pending.get('target', '?')}, id {pending.get('request_id', '?')}, {taken}{age:.0f}s ago); "
                f"wait for the checker to run it, then retry")


def set_maintenance_flag(store: StateStore, enabled: bool, now: float) -> None:
    """Conditional update of cluster.maintenance (failover_lambda's StateStore.set_maintenance)."""
    try:
        store.set_maintenance(enabled, now)
    except AwsUnavailable as error:
        if error.code == "ConditionalCheckFailedException":
            raise Refused(f"the state table has no `{CLUSTER_KEY}` item yet (the checker has never run); "
                           f"retry after its first run") from None
        raise


def _ddb(values: dict[str, Any]) -> dict[str, Any]:
    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in values.items()}
