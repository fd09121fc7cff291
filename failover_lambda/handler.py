"""Lambda entry point: `failover_lambda.handler.handler`.

Events:
  - EventBridge schedule / anything without "action" -> probe loop until the time is up
  - EC2 state-change (the rule matches every instance of the account and region: EventBridge cannot filter by
    tag) -> one Scan; an instance that is not one of the nodes' known instances returns at once (no EC2 call,
    no probe loop); a node's instance starts the probe loop unless one is running (the loop lease)
  - {"action": "status"} -> cluster, nodes and routes as JSON
  - {"action": "switchover", "target": "node2"} -> planned move
  - {"action": "maintenance", "enabled": true|false}
  - {"action": "confirm_fenced", "node": "node1"} -> operator override for a fencing that cannot be confirmed
Bad input gets {"ok": false, "reason": ...}, never a traceback.
"""

from __future__ import annotations

from typing import Any

from failover_lambda.aws import AwsUnavailable
from failover_lambda.checker import Checker
from failover_lambda.runtime import Runtime
from failover_lambda.settings import SettingsError
from failover_lambda.telemetry import CHECKER_ERRORS, Telemetry, logger

_runtime: Runtime | None = None


class BadEvent(ValueError):
    """The event cannot be acted on; the message says why."""


def use_runtime(runtime: Runtime | None) -> None:
    """Inject settings, clients and clock (tests, the local drill); None rebuilds from the environment."""
    global _runtime
    _runtime = runtime


def _get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        try:
            _runtime = Runtime.from_env()
        except SettingsError as error:
            # A misconfigured function must fail loudly (Lambda Errors metric), with the variable named.
            logger.error("invalid configuration", extra={"error": str(error)})
            raise
    return _runtime


def handler(event: Any, context: Any) -> dict[str, Any]:
    runtime = _get_runtime()
    logger.append_keys(request_id=getattr(context, "aws_request_id", None))
    checker = Checker(runtime, context)
    try:
        return dispatch(checker, event)
    except BadEvent as error:
        logger.warning("bad event", extra={"error": str(error)})
        return {"ok": False, "reason": str(error)}
    except AwsUnavailable as error:
        logger.warning("AWS API unavailable", extra={"error": str(error)})
        return {"ok": False, "reason": f"AWS API unavailable, try again: {error}"}
    except Exception as error:
        logger.exception("checker failed")
        checker.telemetry.count(CHECKER_ERRORS)
        return {"ok": False, "reason": f"internal error: {type(error).__name__}: {error}"}
    finally:
        Telemetry.flush()


def dispatch(checker: Checker, event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise BadEvent(f"the event must be a JSON object, got {type(event).__name__}")
    action = event.get("action")
    if action is None:
        if event.get("source") == "aws.ec2":
            instance_id = _ec2_instance(event)
            if instance_id is None or not checker.known_instance(instance_id):
                return {"ok": True, "ignored": f"EC2 event for {instance_id or 'no instance'}: not a cluster node"}
        # A state-change run adds nothing to a running loop (it probes every interval); a scheduled one takes over
        # from it, so the loop never ends before its successor has started (failover_lambda/loop_lease.py).
        return checker.probe_loop(trigger=_trigger(event), wait_for_loop=event.get("source") != "aws.ec2")
    if action == "status":
        return checker.status()
    if action == "switchover":
        target = event.get("target")
        if not isinstance(target, str) or not target:
            raise BadEvent('switchover needs "target": "<node name>"')
        return checker.switchover(target)
    if action == "maintenance":
        enabled = event.get("enabled")
        if not isinstance(enabled, bool):
            raise BadEvent('maintenance needs "enabled": true or false')
        return checker.set_maintenance(enabled)
    if action == "confirm_fenced":
        node = event.get("node")
        if not isinstance(node, str) or not node:
            raise BadEvent('confirm_fenced needs "node": "<node name>"')
        return checker.confirm_fenced(node)
    raise BadEvent(f"unknown action {action!r}; expected status, switchover, maintenance or confirm_fenced")


def _ec2_instance(event: dict[str, Any]) -> str | None:
    detail = event.get("detail")
    instance_id = detail.get("instance-id") if isinstance(detail, dict) else None
    return instance_id if isinstance(instance_id, str) and instance_id else None


def _trigger(event: dict[str, Any]) -> str:
    if event.get("source") == "aws.ec2":
        raw = event.get("detail")
        detail: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return f"ec2 {detail.get('instance-id', '?')} {detail.get('state', '?')}"
    return str(event.get("detail-type") or "probe")
