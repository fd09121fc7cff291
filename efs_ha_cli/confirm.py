"""`efs-ha confirm-fenced NODE --yes`: the operator's override for a fencing that can never be confirmed
(e.g. StopInstances keeps failing). The checker refuses it when the evidence says otherwise: a lease renewal
of NODE observed while it watches for LEASE_DEADLINE_SECONDS, or EC2 readable and showing NODE's instance
pending/running. While the checker cannot be invoked (throttled) the request is queued in the table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from efs_ha_cli.checker_api import CheckerFunction, RequestQueue, Throttled
from efs_ha_cli.cluster import read_status
from efs_ha_cli.context import App
from efs_ha_cli.errors import BadArgument, Refused, TimedOut
from efs_ha_cli.stack import CHECKER_OUTPUTS, FAILOVER_FUNCTION_NAME
from efs_ha_cli.switchover import TAKEN_GRACE_SECONDS
from failover_lambda.model import FENCING, STABLE

ACTION = "confirm_fenced"
DEFAULT_TIMEOUT_SECONDS = 60.0


def precheck(report: dict[str, Any], node: str) -> int:
    """The fencing epoch, or a CliError saying why there is nothing to confirm."""
    if node not in report["nodes"]:
        raise BadArgument(f"unknown node {node!r}; valid nodes: {', '.join(report['nodes'])}")
    cluster = report["cluster"]
    if cluster["phase"] != FENCING or cluster.get("fencing_node") != node:
        raise Refused(f"no fencing of {node} is in progress (phase {cluster['phase']}, epoch {cluster['epoch']}, "
                       f"fencing {cluster.get('fencing_node') or 'nobody'}); nothing to confirm")
    return int(cluster["epoch"])


class FenceConfirmer:
    def __init__(self, app: App, on_progress: Callable[[float, str], None] | None = None) -> None:
        self._app = app
        self._on_progress = on_progress or (lambda _elapsed, _detail: None)

    def run(self, node: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> dict[str, Any]:
        app = self._app
        app.outputs.require(*CHECKER_OUTPUTS)
        started = app.clock.now()
        epoch = precheck(read_status(app), node)
        function = CheckerFunction(app.client("lambda"), app.outputs.get(FAILOVER_FUNCTION_NAME))
        try:
            answer = function.call({"action": ACTION, "node": node})
        except Throttled:
            request_id = self._queue().queue(ACTION, node, app.clock.now())
            self._on_progress(0.0, f"checker busy (invoke throttled); request {request_id} "
                                   f"queued for its next probe")
            try:
                return self._wait(node, epoch, started, timeout, request_id)
            except KeyboardInterrupt:
                if not self._queue().withdraw(request_id):
                    self._on_progress(0.0, f"request {request_id} was already taken by the checker")
                raise
        if answer.get("ok") is not True:
            raise Refused(f"confirm-fenced {node} refused: {answer.get('reason', 'no reason given')}")
        return {"ok": True, "node": node, "epoch": epoch, "active": answer.get("to"), "fenced": answer.get("fenced"),
                "queued": False, "seconds": round(app.clock.now() - started, 3)}

    def _queue(self) -> RequestQueue:
        return RequestQueue(self._app.client("dynamodb"), self._app.settings.state_table_name)

    def _wait(self, node: str, epoch: int, started: float, timeout: float, request_id: str) -> dict[str, Any]:
        clock = self._app.clock
        deadline = timeout
        gone_polls = 0
        while True:
            report = read_status(self._app)
            cluster = report["cluster"]
            elapsed = clock.now() - started
            if cluster["phase"] == STABLE and cluster["active"] and int(cluster["epoch"]) >= epoch:
                return {"ok": True, "node": node, "epoch": int(cluster["epoch"]), "active": cluster["active"],
                        "fenced": cluster["reason"], "queued": True, "request_id": request_id,
                        "seconds": round(elapsed, 3)}
            request = report.get("request")
            gone_polls = gone_polls + 1 if request is None or request["request_id"] != request_id else 0
            if gone_polls >= 2:
                raise Refused(f"the checker took request {request_id} but did not complete the takeover (it "
                               f"found evidence that {node} is alive, or no standby to promote); see its logs "
                               f"or the alarm topic")
            if elapsed >= deadline:
                if deadline == timeout and not self._queue().withdraw(request_id):
                    self._on_progress(elapsed, f"request {request_id} already taken by the checker; waiting for "
                                               f"its result")
                    deadline = timeout + TAKEN_GRACE_SECONDS
                    continue
                how = "withdrawn (is the checker running?)" if deadline == timeout else "taken by the checker"
                raise TimedOut(f"confirm-fenced {node} not complete after {elapsed:.0f}s; request {request_id} "
                               f"{how}")
            clock.sleep(min(self._app.hooks.poll_seconds, max(0.0, deadline - elapsed)))
