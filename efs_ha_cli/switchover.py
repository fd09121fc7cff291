"""Planned switchover: ask the checker (or queue the request), then watch the table and routes until done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from efs_ha_cli.checker_api import CheckerFunction, RequestQueue, Throttled
from efs_ha_cli.cluster import read_status
from efs_ha_cli.context import App
from efs_ha_cli.errors import BadArgument, Refused, TimedOut
from efs_ha_cli.stack import CHECKER_OUTPUTS, FAILOVER_FUNCTION_NAME
from failover_lambda.model import STABLE

DEFAULT_TIMEOUT_SECONDS = 120.0
# A request the checker has already taken cannot be withdrawn: the CLI waits this much longer for its result
# (a takeover's worst case fits in it: failover_lambda/budget.py).
TAKEN_GRACE_SECONDS = 120.0


@dataclass(frozen=True)
class SwitchState:
    """How far a switchover to `target` is, judged only from a status report."""

    done: bool
    detail: str


@dataclass(frozen=True)
class SwitchResult:
    source: str | None
    target: str
    seconds: float
    queued: bool
    request_id: str | None
    epoch: int

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "from": self.source, "to": self.target, "seconds": round(self.seconds, 3),
                "queued": self.queued, "request_id": self.request_id, "epoch": self.epoch}


def switch_state(report: dict[str, Any], target: str) -> SwitchState:
    """Done = target active and stable, every VIP route on its ENI, and it is healthy and serving."""
    cluster = report["cluster"]
    if cluster["active"] != target or cluster["phase"] != STABLE:
        who = cluster["active"] or f"nobody (fencing {cluster.get('fencing_node') or '?'})"
        queued = " (request queued for the checker's next probe)" if report.get("request") else ""
        return SwitchState(False, f"phase {cluster['phase']}, epoch {cluster['epoch']}, active {who}{queued}")
    node = report["nodes"][target]
    routes = report["route_tables"]
    on_target = [r for r in routes if node["eni"] and r["target_eni"] == node["eni"]]
    if len(on_target) < len(routes):
        return SwitchState(False, f"{target} active; {len(on_target)}/{len(routes)} route tables point at it")
    if not node["serving"] or not node["minio_ok"]:
        return SwitchState(False, f"{target} active, routes moved; waiting for MinIO to serve")
    if not node["healthy"]:
        return SwitchState(False, f"{target} serving but unhealthy: {'; '.join(node['problems'])}")
    return SwitchState(True, f"{target} active and serving, {len(routes)}/{len(routes)} route tables on it")


def precheck(report: dict[str, Any], target: str) -> None:
    """Refuse early, with the reason, what the checker would refuse (a queued request's refusal is silent)."""
    nodes = report["nodes"]
    if target not in nodes:
        raise BadArgument(f"unknown node {target!r}; valid nodes: {', '.join(nodes)}")
    cluster = report["cluster"]
    if cluster["phase"] != STABLE:
        raise Refused(f"a takeover is in progress (phase {cluster['phase']}, epoch {cluster['epoch']}); "
                       f"retry when `efs-ha status` shows phase stable")
    if cluster["active"] == target:
        raise Refused(f"{target} is already active")
    problems = nodes[target]["problems"]
    if problems:
        raise Refused(f"{target} is not healthy: {'; '.join(problems)}")


class Switcher:
    """Runs one switchover; `on_progress(elapsed, detail)` sees every change of state while waiting."""

    def __init__(self, app: App, on_progress: Callable[[float, str], None] | None = None) -> None:
        self._app = app
        self._on_progress = on_progress or (lambda _elapsed, _detail: None)

    def run(self, target: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> SwitchResult:
        app = self._app
        app.outputs.require(*CHECKER_OUTPUTS)
        started = app.clock.now()
        before = read_status(app)
        precheck(before, target)
        request_id = self._request(target)
        try:
            seconds, after = self._wait(target, started, timeout, request_id)
        except KeyboardInterrupt:
            # An operator who gives up must not get a switchover minutes later from a forgotten request.
            if request_id and not self._queue().withdraw(request_id):
                self._on_progress(0.0, f"request {request_id} was already taken by the checker: it runs to "
                                       f"the end; see `efs-ha status`")
            raise
        return SwitchResult(source=before["cluster"]["active"], target=target, seconds=seconds,
                            queued=request_id is not None, request_id=request_id,
                            epoch=int(after["cluster"]["epoch"]))

    def _request(self, target: str) -> str | None:
        """Invoke the checker; None when it did the switchover, else the id of the queued request."""
        app = self._app
        function = CheckerFunction(app.client("lambda"), app.outputs.get(FAILOVER_FUNCTION_NAME))
        try:
            answer = function.call({"action": "switchover", "target": target})
        except Throttled:
            request_id = self._queue().queue_switchover(target, app.clock.now())
            self._on_progress(0.0, f"checker busy (invoke throttled); "
                                   f"request {request_id} queued for its next probe")
            return request_id
        if answer.get("ok") is True:
            return None
        if "epoch" in answer:
            # Fencing began (new epoch) but this run could not finish it; the checker's next run resumes it.
            self._on_progress(0.0, f"checker started the switchover (epoch {answer['epoch']}) but has not "
                                   f"finished: {answer.get('reason')}; its next run completes it")
            return None
        raise Refused(f"switchover refused: {answer.get('reason', 'no reason given')}")

    def _queue(self) -> RequestQueue:
        return RequestQueue(self._app.client("dynamodb"), self._app.settings.state_table_name)

    def _wait(self, target: str, started: float, timeout: float,
              request_id: str | None) -> tuple[float, dict[str, Any]]:
        clock = self._app.clock
        last_detail = ""
        handled_without_move = 0
        deadline = timeout
        while True:
            report = read_status(self._app)
            state = switch_state(report, target)
            elapsed = clock.now() - started
            if state.detail != last_detail:
                self._on_progress(elapsed, state.detail)
                last_detail = state.detail
            if state.done:
                return elapsed, report
            # The checker deletes the request after acting on it; gone while nothing moves = refused.
            # Seen twice in a row, because one Scan may read `request` after and `cluster` before a change.
            idle = request_id is not None and report["request"] is None and \
                report["cluster"]["phase"] == STABLE and report["cluster"]["active"] != target
            handled_without_move = handled_without_move + 1 if idle else 0
            if handled_without_move >= 2:
                raise Refused(f"the checker took request {request_id} but did not switch to {target} "
                               f"(it may have found {target} unhealthy); see its logs or the alarm topic")
            if elapsed >= deadline:
                if deadline == timeout and request_id and not self._queue().withdraw(request_id):
                    # Too late to withdraw: the checker claimed it (taken_at) and is running it.
                    self._on_progress(elapsed, f"request {request_id} already taken by the checker; waiting "
                                               f"for its result")
                    deadline = timeout + TAKEN_GRACE_SECONDS
                    continue
                raise TimedOut(self._timeout_message(target, elapsed, state, request_id, deadline == timeout))
            clock.sleep(min(self._app.hooks.poll_seconds, max(0.0, deadline - elapsed)))

    @staticmethod
    def _timeout_message(target: str, elapsed: float, state: SwitchState, request_id: str | None,
                         withdrawn: bool) -> str:
        message = f"switchover to {target} not complete after {elapsed:.0f}s: {state.detail}"
        if request_id and withdrawn:
            message += f"; queued request {request_id} withdrawn (is the checker running?)"
        elif request_id:
            message += f"; request {request_id} was taken by the checker, see `efs-ha status` and its logs"
        return message
