"""The checker: probe loop, takeover, planned switchover, drift repair and queued requests.

API budget (steady state, one probe cycle per PROBE_INTERVAL_SECONDS = 1 s):
  - DynamoDB: 1 consistent Scan per cycle (the table holds ~5 items: cluster, checker, request, node#*);
    1 PutItem of the `checker` item only when a failure counter changes, and once per invocation.
  - EC2: 1 DescribeInstances + 1 DescribeRouteTables per EC2_CACHE_SECONDS (5 s), i.e. 0.4 calls/s.
  - HTTP: 1 GET /minio/health/live to the active node (not an AWS API; HTTP_PROBE=false turns it off).
  => per minute: 60 Scans, 24 EC2 describe calls, ~1 write. Drift adds 1 Scan, 2 describes, 1 ReplaceRoute per
  drifted table and 1 DescribeRouteTables to verify.
A takeover adds: 1 UpdateItem (fence), 1 SSM SendCommand, per 0.5 s of waiting 1 GetItem (+1 DescribeInstances
while not yet confirmed by the table), at most 1 StopInstances, 1 Scan + 2 describes, 1 UpdateItem (promote),
1 ReplaceRoute per route table, 1 DescribeRouteTables, 1 SNS Publish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from failover_lambda.aws import AwsUnavailable
from failover_lambda.ec2_view import Ec2Reader
from failover_lambda.fencing import Fencer
from failover_lambda.health import active_problems, http_probe, node_problems, service_only
from failover_lambda.model import FENCING, STABLE, CheckerState, ClusterState, Ec2View, Request, Snapshot
from failover_lambda.routes import RouteMover, drifted_tables
from failover_lambda.runtime import Runtime
from failover_lambda.state_store import StateStore
from failover_lambda.status import status_report
from failover_lambda.telemetry import (
    ACTIVE_NODE_POSITION,
    CHECKER_ERRORS,
    DETECTION_SECONDS,
    FAILOVERS,
    NO_HEALTHY_STANDBY,
    PROBE_UNKNOWN,
    ROUTE_DRIFT_REPAIRED,
    SWITCH_SECONDS,
    Telemetry,
    logger,
)

SWITCHOVERS = "Switchovers"
ALERT_REPEAT_SECONDS = 300.0
REQUEST_TTL_SECONDS = 300.0
NO_STANDBY_ALERT = "no-healthy-standby"
SWITCHOVER_PREFIX = "switchover"


@dataclass(frozen=True)
class Outcome:
    """How a takeover attempt ended. `done` only once the new node is active (routes may still be retried)."""

    done: bool
    detail: str
    node: str | None = None
    routes_ok: bool = False


def refuse(reason: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason}


class Checker:
    """One invocation's worth of work; the EC2 view cache lives as long as this object."""

    def __init__(self, runtime: Runtime, context: Any) -> None:
        self._s = runtime.settings
        self._clock = runtime.clock
        self._context = context
        self._store = StateStore(runtime.aws.dynamodb, self._s.state_table_name)
        self._ec2 = Ec2Reader(runtime.aws.ec2, self._s, self._clock)
        self._routes = RouteMover(runtime.aws.ec2, self._s)
        self.telemetry = Telemetry(runtime.aws.sns, self._s.topic_arn, self._s.cluster_id)
        self._last_checker: CheckerState | None = None
        self._fenced: dict[int, str] = {}  # epoch -> how its fencing was confirmed (this invocation)
        self._fencer = Fencer(self._s, self._store, self._ec2, runtime.aws.ec2, runtime.aws.ssm, self._clock,
                              self.telemetry)

    # ----- time -----
    def time_left(self) -> float:
        """Seconds this invocation may still work: Lambda's remaining time minus the safety margin."""
        remaining = getattr(self._context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return math.inf
        return float(remaining()) / 1000.0 - self._s.loop_safety_margin_seconds

    # ----- probe loop -----
    def probe_loop(self, trigger: str) -> dict[str, Any]:
        # Without a Lambda context (a script) and without MAX_PROBES, run one cycle instead of forever.
        limit = self._s.max_probes or (1 if self._context is None else None)
        outcomes: list[str] = []
        while True:
            started = self._clock.now()
            outcomes.append(self._guarded_cycle())
            if limit is not None and len(outcomes) >= limit:
                break
            pause = max(0.0, self._s.probe_interval_seconds - (self._clock.now() - started))
            if self.time_left() - pause <= 0:
                break
            self._clock.sleep(pause)
        self._record_run()
        logger.info("probe loop finished", extra={"trigger": trigger, "cycles": len(outcomes),
                                                  "last": outcomes[-1]})
        return {"ok": True, "trigger": trigger, "cycles": len(outcomes), "outcomes": outcomes}

    def _guarded_cycle(self) -> str:
        try:
            return self.cycle()
        except AwsUnavailable as error:
            # Unknown: neither a failed probe nor a good one, so the failure counter is left as it is.
            logger.warning("probe result unknown: AWS API unavailable", extra={"error": str(error)})
            self.telemetry.count(PROBE_UNKNOWN)
            return "unknown"
        except Exception:
            logger.exception("probe cycle failed")
            self.telemetry.count(CHECKER_ERRORS)
            return "error"

    def cycle(self) -> str:
        snap = self._snapshot()
        if snap.request is not None:
            self._run_request(snap.request)
            snap = self._snapshot()
        cluster = self._cluster(snap)
        if cluster.phase == FENCING:
            # A takeover that an earlier run (or cycle) could not finish: resume it from the table.
            return self._complete_takeover(cluster).detail
        return self._probe_active(snap, cluster, self._ec2.view())

    def _probe_active(self, snap: Snapshot, cluster: ClusterState, view: Ec2View) -> str:
        active = cluster.active or ""
        instance = view.instance_of(active, cluster.active_instance)
        report = snap.nodes.get(active)
        http_ok = None
        if self._s.http_probe and instance and instance.private_ip and report and report.serving:
            http_ok = http_probe(instance.private_ip, self._s.minio_port)
        problems = active_problems(self._s, self._clock.now(), cluster, report, instance, http_ok)
        self._report_health(snap, cluster, view, problems)
        checker = self._count(snap.checker, active, problems)
        failures = checker.failures.get(active, 0)
        if problems and failures >= self._s.failure_threshold:
            if cluster.maintenance:
                logger.warning("maintenance mode: not failing over",
                               extra={"node": active, "problems": problems})
                return f"maintenance: {active} failing ({failures} probes)"
            return self._takeover(snap, cluster, problems, checker)
        if not problems:
            self._bind_active_instance(snap, cluster, view)
        drift = self._repair_drift(cluster, view)
        if problems:
            return f"{active} failing {failures}/{self._s.failure_threshold}: {'; '.join(problems)}"
        return drift or "ok"

    def _report_health(self, snap: Snapshot, cluster: ClusterState, view: Ec2View, active_problems: list[str]) -> None:
        """Dashboard and alarm gauges: each node's health and which node is active (1-based priority position)."""
        now = self._clock.now()
        for name in self._s.node_names:
            problems = active_problems if name == cluster.active else node_problems(
                self._s, now, snap.nodes.get(name), view.instance_of(name, None))
            self.telemetry.node_health(name, healthy=not problems)
        position = self._s.node_names.index(cluster.active) + 1 if cluster.active in self._s.node_names else 0
        self.telemetry.gauge(ACTIVE_NODE_POSITION, position)

    def _count(self, checker: CheckerState, active: str, problems: list[str]) -> CheckerState:
        """Consecutive failed probes of the active node, persisted so they survive across invocations."""
        now = self._clock.now()
        failures = {k: v for k, v in checker.failures.items() if k == active}
        since = {k: v for k, v in checker.failing_since.items() if k == active}
        if problems:
            failures[active] = failures.get(active, 0) + 1
            since.setdefault(active, now)
            logger.warning("active node probe failed", extra={"node": active, "problems": problems,
                                                              "consecutive": failures[active]})
        else:
            failures.pop(active, None)
            since.pop(active, None)
        updated = replace(checker, failures=failures, failing_since=since, last_run_at=now)
        if failures != checker.failures or since != checker.failing_since:
            self._save_checker(updated)
        return updated

    # ----- takeover -----
    def _takeover(self, snap: Snapshot, cluster: ClusterState, problems: list[str],
                  checker: CheckerState) -> str:
        old = cluster.active or ""
        # The cached view first: a long "no healthy standby" spell then costs no extra EC2 calls per cycle.
        now = self._clock.now()
        held = {n for n in self._s.node_names if checker.held_back(n, now, self._s.service_failure_hold_seconds)}
        candidate = self._first_healthy(snap, self._ec2.view(), exclude={old} | held)
        view = self._ec2.view(fresh=True)
        candidate = candidate and self._first_healthy(snap, view, exclude={old} | held)
        if candidate is None:
            held_note = f"; held back after a MinIO failure: {', '.join(sorted(held))}" if held else ""
            self._no_standby(checker, f"{old} failed ({'; '.join(problems)}){held_note}")
            return "no healthy standby"
        reason = f"failover: {old} failed: {'; '.join(problems)}"
        if not self._store.begin_fencing(cluster, candidate, reason, now):
            logger.info("another checker changed the cluster first; re-reading next cycle")
            return "lost race"
        self.telemetry.seconds(DETECTION_SECONDS, now - checker.failing_since.get(old, now))
        service_failed_at = dict(checker.service_failed_at)
        if service_only(problems):
            service_failed_at[old] = now
        self._save_checker(replace(checker, failures={}, failing_since={}, service_failed_at=service_failed_at))
        return self._complete_takeover(self._fencing_view(cluster, candidate, now, reason), view).detail

    def _fencing_view(self, cluster: ClusterState, candidate: str, now: float, kind: str) -> ClusterState:
        """The cluster item as begin_fencing has just written it (saves a read)."""
        return replace(cluster, epoch=cluster.epoch + 1, phase=FENCING, active=None, active_instance=None,
                       fencing_node=cluster.active, fencing_instance=cluster.active_instance,
                       candidate=candidate, changed_at=now, reason=kind)

    def _complete_takeover(self, fencing: ClusterState, view: Ec2View | None = None) -> Outcome:
        """Steps 2-6: confirm fencing, promote, move and verify routes, report."""
        # Once confirmed, a fenced node stays fenced (no agent serves while the phase is fencing), so a run
        # that cannot promote yet does not repeat the fencing every cycle.
        how = self._fenced.get(fencing.epoch)
        if how is None:
            how = self._fencer.fence(fencing, view or self._ec2.view(fresh=True), self.time_left)
        if how is None:
            node, epoch = fencing.fencing_node, fencing.epoch
            return Outcome(False, f"fencing of {node} not confirmed yet (epoch {epoch})")
        self._fenced[fencing.epoch] = how
        snap = self._store.read()
        current = snap.cluster
        if current is None or current.epoch != fencing.epoch or current.phase != FENCING:
            return Outcome(False, "another checker completed the takeover")
        view = self._ec2.view(fresh=True)
        target = self._promotion_target(current, snap, view)
        instance = view.instance_of(target) if target else None
        if target is None or instance is None or instance.eni is None:
            self._no_standby(snap.checker, f"{current.fencing_node} is fenced ({how})")
            return Outcome(False, "no healthy standby to promote")
        now = self._clock.now()
        reason = f"{current.reason}; fenced: {how}"
        if not self._store.promote(current, target, instance.instance_id, reason[:500], now):
            return Outcome(False, "another checker completed the takeover")
        # Only now, with the old node confirmed down and the new one active in the table, does the VIP move.
        result = self._routes.point_at(instance.eni, view)
        self._ec2.invalidate()
        switch_seconds = self._clock.now() - current.changed_at
        kind = SWITCHOVERS if current.reason.startswith(SWITCHOVER_PREFIX) else FAILOVERS
        self.telemetry.count(kind)
        if result.ok:
            self.telemetry.seconds(SWITCH_SECONDS, switch_seconds)
        else:
            self.telemetry.count(CHECKER_ERRORS)
        payload = {"cluster": self._s.cluster_id, "from": current.fencing_node, "to": target,
                   "epoch": current.epoch, "reason": reason, "fenced": how, "routes_changed": result.changed,
                   "route_failures": result.failed, "switch_seconds": round(switch_seconds, 3)}
        logger.warning("VIP moved" if result.ok else "VIP moved with route failures", extra=payload)
        self.telemetry.notify(f"efs-ha {self._s.cluster_id}: {kind[:-1].lower()} "
                              f"{current.fencing_node} -> {target}", payload)
        self.telemetry.flush()
        return Outcome(True, f"{kind[:-1].lower()} {current.fencing_node} -> {target}", target, result.ok)

    def _promotion_target(self, cluster: ClusterState, snap: Snapshot, view: Ec2View) -> str | None:
        """The candidate if still healthy, else the next healthy node; the fenced node itself only as a
        last resort (it is confirmed down, so restarting it there is safe and better than no service)."""
        fenced = cluster.fencing_node
        order = [n for n in dict.fromkeys([cluster.candidate, *self._s.node_names]) if n and n != fenced]
        now = self._clock.now()
        for node in [*order, *([fenced] if fenced else [])]:
            if not node_problems(self._s, now, snap.nodes.get(node), view.instance_of(node)):
                return node
        return None

    def _first_healthy(self, snap: Snapshot, view: Ec2View, exclude: set[str]) -> str | None:
        now = self._clock.now()
        return next((node for node in self._s.node_names if node not in exclude
                     and not node_problems(self._s, now, snap.nodes.get(node), view.instance_of(node))), None)

    def _no_standby(self, checker: CheckerState, detail: str) -> None:
        """Metric every time; SNS at most every ALERT_REPEAT_SECONDS (the state survives invocations)."""
        logger.error("no healthy standby: nothing moves", extra={"detail": detail})
        self.telemetry.count(NO_HEALTHY_STANDBY)
        now = self._clock.now()
        if now - checker.alerted_at.get(NO_STANDBY_ALERT, 0.0) < ALERT_REPEAT_SECONDS:
            return
        self.telemetry.notify(f"efs-ha {self._s.cluster_id}: no healthy standby",
                              {"cluster": self._s.cluster_id, "detail": detail,
                               "action": "none; the checker keeps probing"})
        self._save_checker(replace(checker, alerted_at={**checker.alerted_at, NO_STANDBY_ALERT: now}))

    # ----- steady state -----
    def _repair_drift(self, cluster: ClusterState, view: Ec2View) -> str | None:
        """Every VIP route must point at the active node's ENI: the table, not the template, decides."""
        instance = view.instance_of(cluster.active, cluster.active_instance)
        if instance is None or instance.eni is None or not drifted_tables(self._s, view, instance.eni):
            return None
        view = self._ec2.view(fresh=True)
        drifted = drifted_tables(self._s, view, instance.eni)
        if not drifted:
            return None
        before = {t: (r.target_eni or r.target_instance) if (r := view.routes.get(t)) else None
                  for t in drifted}
        if cluster.maintenance:
            logger.warning("VIP route drift (maintenance mode: not repaired)", extra={"routes": before})
            return f"maintenance: drift in {len(drifted)} table(s) not repaired"
        current = self._store.read().cluster
        if current is None or (current.epoch, current.phase, current.active) != (
                cluster.epoch, cluster.phase, cluster.active):
            return "cluster changed; drift repair deferred"
        result = self._routes.point_at(instance.eni, view)
        self._ec2.invalidate()
        self.telemetry.count(ROUTE_DRIFT_REPAIRED, len(result.changed))
        if result.failed:
            self.telemetry.count(CHECKER_ERRORS)
        logger.warning("VIP route drift repaired", extra={"active": cluster.active, "eni": instance.eni,
                                                          "previous": before, "failed": result.failed})
        return f"drift repaired in {len(result.changed)} table(s)"

    def _bind_active_instance(self, snap: Snapshot, cluster: ClusterState, view: Ec2View) -> None:
        """Bind the role to one instance when an item lacks it, but only when there is no doubt which one
        serves: the node has exactly one instance and that instance writes the heartbeat."""
        if cluster.active_instance or not cluster.active:
            return
        instances = view.instances.get(cluster.active, ())
        report = snap.nodes.get(cluster.active)
        if len(instances) == 1 and report and report.instance_id == instances[0].instance_id:
            self._store.bind_active_instance(cluster, instances[0].instance_id)

    # ----- table -----
    def _snapshot(self) -> Snapshot:
        snap = self._store.read()
        if snap.cluster is None:
            self._bootstrap()
            snap = self._store.read()
        self._last_checker = snap.checker
        return snap

    @staticmethod
    def _cluster(snap: Snapshot) -> ClusterState:
        if snap.cluster is None:
            raise RuntimeError("the cluster item is missing right after bootstrap")
        return snap.cluster

    def _bootstrap(self) -> None:
        first = self._s.node_names[0]
        try:
            instances = self._ec2.view().instances.get(first, ())
        except AwsUnavailable:
            instances = ()
        bound = instances[0].instance_id if len(instances) == 1 else None
        if self._store.bootstrap(first, bound, self._clock.now()):
            logger.info("cluster item created", extra={"active": first, "instance": bound})

    def _save_checker(self, state: CheckerState) -> None:
        self._store.save_checker(state)
        self._last_checker = state

    def _record_run(self) -> None:
        if self._last_checker is None:
            return
        try:
            self._store.save_checker(replace(self._last_checker, last_run_at=self._clock.now()))
        except AwsUnavailable as error:
            logger.warning("could not record the run", extra={"error": str(error)})

    # ----- operator actions -----
    def status(self) -> dict[str, Any]:
        snap = self._snapshot()
        view = self._ec2.view(fresh=True)
        return status_report(self._s, self._clock.now(), snap, self._cluster(snap), view)

    def switchover(self, target: str) -> dict[str, Any]:
        """Planned move to `target` on the failover's fencing path. Never automatic, never a failback."""
        started = self._clock.now()
        snap = self._snapshot()
        cluster = self._cluster(snap)
        if target not in self._s.node_names:
            return refuse(f"unknown node {target!r}; nodes are {', '.join(self._s.node_names)}")
        if cluster.phase != STABLE:
            return refuse(f"a takeover is in progress (phase {cluster.phase}, epoch {cluster.epoch})")
        if target == cluster.active:
            return refuse(f"{target} is already active")
        view = self._ec2.view(fresh=True)
        problems = node_problems(self._s, started, snap.nodes.get(target), view.instance_of(target))
        if problems:
            return refuse(f"{target} is not healthy: {'; '.join(problems)}")
        reason = f"{SWITCHOVER_PREFIX}: {cluster.active} -> {target} requested"
        if not self._store.begin_fencing(cluster, target, reason, started):
            return refuse("the cluster changed meanwhile; read the status and retry")
        outcome = self._complete_takeover(self._fencing_view(cluster, target, started, reason), view)
        if not outcome.done:
            return {"ok": False, "reason": outcome.detail, "epoch": cluster.epoch + 1}
        return {"ok": True, "from": cluster.active, "to": outcome.node, "epoch": cluster.epoch + 1,
                "seconds": round(self._clock.now() - started, 3), "routes_ok": outcome.routes_ok}

    def set_maintenance(self, enabled: bool) -> dict[str, Any]:
        self._snapshot()
        self._store.set_maintenance(enabled, self._clock.now())
        logger.warning("maintenance mode changed", extra={"enabled": enabled})
        self.telemetry.notify(f"efs-ha {self._s.cluster_id}: maintenance {'on' if enabled else 'off'}",
                              {"cluster": self._s.cluster_id, "maintenance": enabled})
        return {"ok": True, "maintenance": enabled}

    def _run_request(self, request: Request) -> None:
        """Execute and delete a queued operator request (queued because a probe loop held the only slot)."""
        if self._clock.now() - request.requested_at > REQUEST_TTL_SECONDS:
            result = refuse(f"request expired after {REQUEST_TTL_SECONDS:.0f}s")
        elif request.action == "switchover" and request.target:
            result = self.switchover(request.target)
        else:
            result = refuse(f"unsupported queued request {request.action!r}")
        logger.warning("queued request handled", extra={"request_id": request.request_id, "result": result})
        self.telemetry.notify(f"efs-ha {self._s.cluster_id}: queued {request.action or 'request'}",
                              {"request_id": request.request_id, "target": request.target, "result": result})
        self._store.delete_request(request.request_id)
