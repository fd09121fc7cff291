"""The checker: probe loop, takeover, planned switchover, drift repair, queued requests, operator override.

Leases are judged on ONE clock, the checker's own monotonic clock (failover_lambda/lease.py); node timestamps
are display and skew only. EC2 Describe* refine, never block: with them throttled, decisions the state table
supports go on (instances/ENIs from the node items, fencing by lease expiry behind a watchdog, blind
ReplaceRoute on the configured route tables).

API budget (steady state, one probe cycle per PROBE_INTERVAL_SECONDS = 1 s):
  - DynamoDB: 1 consistent Scan per cycle (the table holds ~5 items: cluster, checker, request, node#*);
    1 PutItem of the `checker` item only when a failure counter changes, and once per invocation.
  - EC2: 1 DescribeInstances + 1 DescribeRouteTables per EC2_CACHE_SECONDS (5 s), i.e. 0.4 calls/s, one attempt
    each; a failed one is not repeated for EC2_CACHE_SECONDS.
  - HTTP: 1 GET /minio/health/live to the active node (not an AWS API; HTTP_PROBE=false turns it off).
  - DynamoDB: 1 PutItem of the `checker` item with `last_probe_at` (the checker's liveness for `efs-ha status`)
    when the recorded time is PROBE_RECORD_SECONDS (5 s) old or more: 12 small writes a minute.
  => per minute: 60 Scans, 24 EC2 describe calls, ~13 writes. Drift adds 2 describes, 1 Scan, 1 ReplaceRoute per
  drifted table and 1 DescribeRouteTables to verify.
  A standby first seen in this invocation needs one observed renewal before a takeover picks it: up to
  HEARTBEAT_STALE_SECONDS of extra Scans, one per HEARTBEAT_INTERVAL_SECONDS / 2.
A takeover adds: 1 UpdateItem (fence), 1 SSM SendCommand, per 0.5 s of waiting 1 Scan (+1 DescribeInstances
while not yet confirmed by the table), at most 1 StopInstances per 2 s after FENCE_TIMEOUT_SECONDS, 2 describes,
1 UpdateItem (promote; a failed condition adds 1 Scan to recognise a promotion whose response was lost),
1 ReplaceRoute per route table (+1 CreateRoute where missing), 1 DescribeRouteTables, 1 UpdateItem (routes_epoch),
1 SNS Publish. It starts only if the invocation has time for its worst case (failover_lambda/budget.py): every
call at its configured worst (2 attempts x (1 s connect + 2 s read) + 1 s backoff = 7 s; describes 3 s) plus the
fence wait the checker can time; otherwise it is deferred to the next cycle or invocation. The re-read and the
routes_epoch write are done only when time is left (else the next cycle completes the routes).
While routes_epoch < epoch and the routes cannot be described, each cycle adds 1 Scan and 1 ReplaceRoute per
table (+ the routes_epoch UpdateItem once they all succeeded).
EC2 state-change events: 1 Scan; an instance that is not one of the nodes' returns at once; a node's instance
adds 1 GetItem of the loop lease (+1 UpdateItem when it is free).
Loop lease (failover_lambda/loop_lease.py): per probe-loop run 1 GetItem + 1 UpdateItem to take it and 1 to release
it; the holder 1 conditional UpdateItem per LOOP_RENEW_SECONDS (5 s): 12 writes a minute; a scheduled run waiting
for a hand-over 1 UpdateItem to ask and 1 GetItem per half probe interval (about 2 s a minute); the hand-over
itself 1 UpdateItem. Each cycle sees the lease in its Scan: no extra read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from failover_lambda.aws import AwsUnavailable
from failover_lambda.budget import (
    CALL_WORST_SECONDS,
    DESCRIBE_WORST_SECONDS,
    FINISH_MARGIN_SECONDS,
    after_fencing_seconds,
    fence_wait_bound,
    takeover_seconds,
)
from failover_lambda.ec2_view import Ec2Reader
from failover_lambda.fencing import SUPERSEDED, Fencer
from failover_lambda.health import (
    active_problems,
    holds_back,
    http_probe,
    node_problems,
    only_not_observed,
    restart_excused,
)
from failover_lambda.lease import LeaseTracker
from failover_lambda.loop_lease import LoopEnded, LoopLease
from failover_lambda.model import (
    FENCING,
    STABLE,
    CheckerState,
    ClusterState,
    Ec2View,
    NodeReport,
    Request,
    Snapshot,
)
from failover_lambda.routes import RouteMover, drifted_tables
from failover_lambda.runtime import Runtime
from failover_lambda.state_store import StateStore
from failover_lambda.status import status_report, watch_leases
from failover_lambda.telemetry import (
    ACTIVE_NODE_POSITION,
    CHECKER_ERRORS,
    DETECTION_SECONDS,
    FAILOVERS,
    NO_HEALTHY_STANDBY,
    PROBE_GAP_SECONDS,
    PROBE_UNKNOWN,
    ROUTE_DRIFT_REPAIRED,
    SWITCH_SECONDS,
    Telemetry,
    logger,
)

SWITCHOVERS = "Switchovers"
ALERT_REPEAT_SECONDS = 300.0
NO_STANDBY_ALERT = "no-healthy-standby"
# In the checker item's alerted_at: when maintenance was last announced as on (0: last announced as off, or never).
MAINTENANCE_ALERT = "maintenance-on"
SWITCHOVER_PREFIX = "switchover"
OPERATOR_CONFIRMED = "confirmed by the operator"
ACTIONS_QUEUEABLE = ("switchover", "confirm_fenced")
# `checker.last_probe_at` is rewritten only when the recorded time is this old: liveness for operators
# (`efs-ha status`: "checker probing, 3 s ago" / "checker silent for 70 s") at a few writes a minute.
PROBE_RECORD_SECONDS = 5.0


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
    """One invocation's worth of work: the lease tracker and the EC2 view cache live as long as this object."""

    def __init__(self, runtime: Runtime, context: Any) -> None:
        self._s = runtime.settings
        self._clock = runtime.clock
        self._context = context
        self._store = StateStore(runtime.aws.dynamodb, self._s.state_table_name)
        self._ec2 = Ec2Reader(runtime.aws.describer, self._s, self._clock)
        self._routes = RouteMover(runtime.aws.ec2, self._s)
        self.telemetry = Telemetry(runtime.aws.sns, self._s.topic_arn, self._s.cluster_id)
        self.tracker = LeaseTracker(self._clock, self._s.heartbeat_stale_seconds, self._s.lease_deadline_seconds)
        self._last_checker: CheckerState | None = None
        self._latest: Snapshot | None = None
        self._renewed: set[str] = set()  # nodes whose renewal the latest read observed
        self._failed_last_probe: dict[str, bool] = {}
        self._fenced: dict[int, str] = {}  # epoch -> how its fencing was confirmed (this invocation)
        self._probe_recorded_at: float | None = None  # last_probe_at as this invocation last wrote it
        self._lease: LoopLease | None = None  # set while this invocation runs (or waits for) the probe loop
        self._probed_at: float | None = None  # monotonic time of this invocation's latest probe
        self._fencer = Fencer(self._s, self._read, self.tracker, self._ec2, runtime.aws.ec2, runtime.aws.ssm,
                              self._clock, self.telemetry)

    # ----- time -----
    def remaining(self) -> float:
        """Seconds until Lambda ends this invocation (inf without a context)."""
        remaining = getattr(self._context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return math.inf
        return float(remaining()) / 1000.0

    def time_left(self) -> float:
        """Seconds the probe loop may still start cycles: the remaining time minus the safety margin, which
        is sized (constructs/failover_manager.py) so a takeover begun in the last cycle still fits."""
        return self.remaining() - self._s.loop_safety_margin_seconds

    def _fence_time_left(self) -> float:
        """What a fence wait may spend: never the promote-and-routes reserve."""
        return self.remaining() - after_fencing_seconds()

    def takeover_needs(self, old: NodeReport | None) -> float:
        """Worst case of a takeover from now (failover_lambda/budget.py): every call at its configured worst
        plus the fence wait the checker can time: the lease deadline for a node whose watchdog enforces it,
        else the fence timeout and a StopInstances."""
        enforced = bool(self._s.watchdog_required and old is not None
                        and old.lease_expiry_fences(self._s.watchdog_timeout_seconds,
                                                    self._s.lease_deadline_seconds))
        return takeover_seconds(fence_wait_bound(watchdog_required=enforced,
                                                 lease_deadline=self._s.lease_deadline_seconds,
                                                 fence_timeout=self._s.fence_timeout_seconds))

    # ----- probe loop -----
    def probe_loop(self, trigger: str, *, wait_for_loop: bool = True) -> dict[str, Any]:
        """Run the probe loop if this invocation gets the loop lease (failover_lambda/loop_lease.py); with
        `wait_for_loop` (a scheduled run) ask a running loop to hand over, else return at once."""
        lease = LoopLease(self._store, self._clock, poll_seconds=self._s.probe_interval_seconds / 2)
        # Without a Lambda context (a script) nothing bounds the wait, and its one cycle would end the loop it took.
        wait = wait_for_loop and self._context is not None
        try:
            refused = lease.acquire(wait=wait, time_left=self.time_left)
        except AwsUnavailable as error:
            # The cycles would all be unknown too; counted so the CheckerBlind alarm sees it.
            logger.warning("probe loop not started: the loop lease is unreadable", extra={"error": str(error)})
            self.telemetry.count(PROBE_UNKNOWN)
            return refuse(f"AWS API unavailable, try again: {error}")
        if refused is not None:
            logger.info("probe loop not started", extra={"trigger": trigger, "reason": refused})
            return {"ok": True, "trigger": trigger, "cycles": 0, "outcomes": [], "skipped": refused}
        self._lease = lease
        try:
            return self._run_loop(trigger)
        finally:
            self._lease = None
            try:
                lease.release()
            except AwsUnavailable as error:
                logger.warning("could not release the loop lease; it expires on its own", extra={"error": str(error)})

    def _run_loop(self, trigger: str) -> dict[str, Any]:
        # Without a Lambda context (a script) and without MAX_PROBES, run one cycle instead of forever.
        limit = self._s.max_probes or (1 if self._context is None else None)
        outcomes: list[str] = []
        ended = None
        while True:
            started = self._clock.monotonic()
            try:
                outcomes.append(self._guarded_cycle())
            except LoopEnded as reason:
                ended = str(reason)
                break
            if outcomes[-1] != "unknown":  # the table did not answer: a write would cost time and likely fail
                self._record_probe()
            if limit is not None and len(outcomes) >= limit:
                break
            pause = max(0.0, self._s.probe_interval_seconds - (self._clock.monotonic() - started))
            if self.time_left() - pause <= 0:
                break
            self._clock.sleep(pause)
        self._record_run()
        logger.info("probe loop finished", extra={"trigger": trigger, "cycles": len(outcomes),
                                                  "last": outcomes[-1] if outcomes else None, "ended": ended})
        result: dict[str, Any] = {"ok": True, "trigger": trigger, "cycles": len(outcomes), "outcomes": outcomes}
        if ended:
            result["ended"] = ended
        return result

    def _guarded_cycle(self) -> str:
        try:
            return self.cycle()
        except AwsUnavailable as error:
            # Unknown: neither a failed probe nor a good one, so the failure counter is left as it is.
            logger.warning("probe result unknown: AWS API unavailable", extra={"error": str(error)})
            self.telemetry.count(PROBE_UNKNOWN)
            return "unknown"
        except LoopEnded:
            raise
        except Exception:
            logger.exception("probe cycle failed")
            self.telemetry.count(CHECKER_ERRORS)
            return "error"

    def cycle(self) -> str:
        snap = self._snapshot()
        if self._lease is not None:
            self._lease.check(snap.loop)  # handed over or lost: this cycle does not probe
            self._note_probe(snap)
        if snap.request is not None:
            self._run_request(snap.request)
            snap = self._snapshot()
        cluster = self._cluster(snap)
        snap = self._announce_maintenance(snap, cluster)
        if cluster.phase == FENCING:
            # A takeover that an earlier run (or cycle) could not finish: resume it from the table.
            return self._complete_takeover(cluster).detail
        view = self._ec2.view()
        snap = self._await_renewal(snap, cluster, view)
        if view.errors:
            self.telemetry.count(PROBE_UNKNOWN)
            logger.warning("EC2 view partly unknown; going on with the state table",
                           extra={"errors": list(view.errors)})
        return self._probe_active(snap, cluster, view)

    def _note_probe(self, snap: Snapshot) -> None:
        """ProbeGapSeconds: time since the previous probe. Within this invocation on its monotonic clock; for its
        first probe, from the previous loop's last probe as the table has it (another invocation's wall clock:
        a metric, never a decision)."""
        assert self._lease is not None
        now, mono = self._clock.now(), self._clock.monotonic()
        if self._probed_at is not None:
            gap: float | None = mono - self._probed_at
        else:
            previous = max(self._lease.previous_probe_at, snap.checker.last_probe_at)
            gap = now - previous if previous > 0 else None
        if gap is not None:
            self.telemetry.seconds(PROBE_GAP_SECONDS, gap)
        self._probed_at = mono
        self._lease.last_probe_at = now

    def _probe_active(self, snap: Snapshot, cluster: ClusterState, view: Ec2View) -> str:
        # Bind first, whatever the probe says: an unbound node's MinIO refuses to start, which must not look like
        # a failure that keeps the role from ever being bound.
        cluster = self._bind_active_instance(snap, cluster, view)
        active = cluster.active or ""
        report = snap.nodes.get(active)
        instance = view.locate(active, report, cluster.active_instance)
        http_ok = None
        if self._s.http_probe and instance and instance.private_ip and report and report.serving:
            http_ok = http_probe(instance.private_ip, self._s.minio_port)
        problems = active_problems(self._s, self.tracker, self._clock.now(), cluster, report, instance, http_ok,
                                   view.instances_known)
        self._report_health(snap, cluster, view, problems)
        if report is not None and report.leaving and not problems:
            return self._hand_over(snap, cluster)
        restarting_for = self._episode_age(snap.checker, active)
        excused = restart_excused(self._s, report, problems, restarting_for)
        checker = self._count(snap.checker, active, problems, excused=excused)
        failures = checker.failures.get(active, 0)
        if problems and not excused and failures >= self._s.failure_threshold:
            if cluster.maintenance:
                logger.warning("maintenance mode: not failing over",
                               extra={"node": active, "problems": problems})
                return f"maintenance: {active} failing ({failures} probes)"
            return self._takeover(snap, cluster, problems, checker)
        drift = self._converge_routes(cluster, view, report)
        if excused:
            return (f"{active} restarting MinIO in place (restart {report.minio_restarting if report else 0}, "
                    f"{restarting_for:.0f}s of {self._s.minio_restart_budget_seconds:g}s): not counted; "
                    f"{'; '.join(problems)}")
        if problems:
            return f"{active} failing {failures}/{self._s.failure_threshold}: {'; '.join(problems)}"
        return drift or "ok"

    def _report_health(self, snap: Snapshot, cluster: ClusterState, view: Ec2View, active_problems: list[str]) -> None:
        """Dashboard and alarm gauges: each node's health (a standby not observed long enough is not judged
        unhealthy), its clock skew when a renewal was observed, and the active node's priority position."""
        for name in self._s.node_names:
            report = snap.nodes.get(name)
            problems = active_problems if name == cluster.active else node_problems(
                self._s, self.tracker, name, report, view.locate(name, report), view.instances_known)
            skew = self.tracker.skew(name) if name in self._renewed else None
            self.telemetry.node_health(name, healthy=not problems or only_not_observed(problems),
                                       skew_seconds=skew)
        position = self._s.node_names.index(cluster.active) + 1 if cluster.active in self._s.node_names else 0
        self.telemetry.gauge(ACTIVE_NODE_POSITION, position)

    def _episode_age(self, checker: CheckerState, active: str) -> float:
        """How long the active node's probes have failed (0 if the last one did not, or too long ago to go on)."""
        now = self._clock.now()
        previous = checker.last_failed_at.get(active)
        recent = previous is not None and 0 <= now - previous <= self._s.failure_age_seconds
        if not (self._failed_last_probe.get(active) or recent):
            return 0.0
        return max(0.0, now - checker.failing_since.get(active, now))

    def _count(self, checker: CheckerState, active: str, problems: list[str], *,
               excused: bool = False) -> CheckerState:
        """Consecutive failed probes of the active node, persisted so they survive across invocations.

        A count goes on only from the previous probe of this invocation, or from a failed probe at most
        2 probe intervals + 5 s ago (checker wall clock, across invocations); an older count restarts at 1,
        so an old count plus one blip after a checker outage does not fail over.

        An `excused` failed probe (a MinIO restart in place within its budget: health.restart_excused) leaves
        the count as it is but keeps `failing_since` (the start of the episode, which bounds the budget) and
        `last_failed_at`, so the probes after the budget count on from there."""
        now = self._clock.now()
        failures = {k: v for k, v in checker.failures.items() if k == active}
        since = {k: v for k, v in checker.failing_since.items() if k == active}
        last_failed = {k: v for k, v in checker.last_failed_at.items() if k == active}
        if problems:
            previous = last_failed.get(active)
            recent = previous is not None and 0 <= now - previous <= self._s.failure_age_seconds
            continuing = bool(self._failed_last_probe.get(active) or recent)
            if excused:
                if not continuing:
                    since[active] = now
            elif failures.get(active) and continuing:
                failures[active] += 1
            else:
                if failures.get(active):
                    logger.info("old failure count restarted", extra={"node": active, "count": failures[active],
                                                                      "last_failed_at": previous})
                failures[active] = 1
                if not continuing:
                    since[active] = now
            since.setdefault(active, now)
            last_failed[active] = now
            logger.warning("active node probe failed", extra={"node": active, "problems": problems,
                                                              "consecutive": failures.get(active, 0),
                                                              "restart_in_place": excused})
        else:
            failures.pop(active, None)
            since.pop(active, None)
            last_failed.pop(active, None)
        self._failed_last_probe = {active: bool(problems)}
        updated = replace(checker, failures=failures, failing_since=since, last_failed_at=last_failed,
                          last_run_at=now)
        if (failures, since, last_failed) != (checker.failures, checker.failing_since, checker.last_failed_at):
            self._save_checker(updated, "failures", "failing_since", "last_failed_at")
        return updated

    # ----- takeover -----
    def _takeover(self, snap: Snapshot, cluster: ClusterState, problems: list[str],
                  checker: CheckerState) -> str:
        old = cluster.active or ""
        now = self._clock.now()
        held = {n for n in self._s.node_names if checker.held_back(n, now, self._s.service_failure_hold_seconds)}
        exclude = {old} | held
        # The cached view first: a long "no healthy standby" spell then costs no extra EC2 calls per cycle.
        candidate, snap = self._choose(snap, self._ec2.view(), self._order(exclude))
        view = self._ec2.view(fresh=True)
        if candidate is not None:
            candidate, snap = self._choose(snap, view, self._order(exclude))
        if candidate is None:
            held_note = f"; held back after a MinIO failure: {', '.join(sorted(held))}" if held else ""
            self._no_standby(checker, f"{old} failed ({'; '.join(problems)}){held_note}")
            return "no healthy standby"
        old_report = snap.nodes.get(old)
        needed, left = self.takeover_needs(old_report), self.remaining()
        if left < needed:
            # Never start what this invocation may not finish: the next cycle or invocation does it.
            logger.warning("takeover deferred: not enough time left in this invocation",
                           extra={"node": old, "needed_seconds": round(needed, 1), "left_seconds": round(left, 1)})
            return f"takeover deferred: it needs up to {needed:.0f}s, {left:.0f}s left"
        reason = f"failover: {old} failed: {'; '.join(problems)}"
        if not self._store.begin_fencing(cluster, candidate, reason, now):
            logger.info("another checker changed the cluster first; re-reading next cycle")
            return "lost race"
        self.telemetry.seconds(DETECTION_SECONDS, now - checker.failing_since.get(old, now))
        service_failed_at = dict(checker.service_failed_at)
        if holds_back(old_report, problems):
            service_failed_at[old] = now
        # service_failed_at whole: takeovers are serialised by the epoch (this one's begin_fencing succeeded).
        self._save_checker(replace(checker, failures={}, failing_since={}, last_failed_at={},
                                   service_failed_at=service_failed_at),
                           "failures", "failing_since", "last_failed_at", "service_failed_at")
        return self._complete_takeover(self._fencing_view(cluster, candidate, now, reason), view).detail

    def _hand_over(self, snap: Snapshot, cluster: ClusterState) -> str:
        """The active node is being shut down (its item says `leaving`) and still serves: a planned switchover to
        the first healthy standby, so a deploy, instance refresh or reboot costs a switchover, not a failover."""
        active = cluster.active or ""
        if cluster.maintenance:
            return f"maintenance: {active} is shutting down; nothing moves"
        now = self._clock.now()
        held = {n for n in self._s.node_names
                if snap.checker.held_back(n, now, self._s.service_failure_hold_seconds)}
        candidate, snap = self._choose(snap, self._ec2.view(), self._order({active} | held))
        if candidate is None:
            self._no_standby(snap.checker, f"{active} is shutting down (it asked for a handover) and no healthy "
                                           "standby can take over: the service stops with it")
            return f"{active} is shutting down: no healthy standby"
        result = self.switchover(candidate, why=f"(handover: {active} is shutting down)")
        return f"handover {active} -> {candidate}: {'done' if result['ok'] else result.get('reason')}"

    def _order(self, exclude: set[str], first: str | None = None, last: str | None = None) -> list[str]:
        order = [n for n in dict.fromkeys([first, *self._s.node_names]) if n and n not in exclude and n != last]
        return order + ([last] if last else [])

    def _choose(self, snap: Snapshot, view: Ec2View, order: list[str]) -> tuple[str | None, Snapshot]:
        """The first healthy node in `order`. A node whose only problem is that no renewal has been observed
        yet in this invocation is waited for (up to HEARTBEAT_STALE_SECONDS, re-reading the table every half
        renewal period) before a lower-priority node is taken or none is."""
        deadline = self._clock.monotonic() + self._s.heartbeat_stale_seconds
        while True:
            waiting = False
            for node in order:
                report = snap.nodes.get(node)
                problems = node_problems(self._s, self.tracker, node, report, view.locate(node, report),
                                         view.instances_known)
                if not problems:
                    return node, snap
                if only_not_observed(problems):
                    waiting = True
                    break
            if not waiting or self._clock.monotonic() >= deadline:
                return None, snap
            self._clock.sleep(self._s.heartbeat_interval_seconds / 2)
            snap = self._read()

    def _await_renewal(self, snap: Snapshot, cluster: ClusterState, view: Ec2View) -> Snapshot:
        """At the start of an invocation the active node has only been sighted, not judged: re-read the table
        every half renewal period until a renewal of it is observed or HEARTBEAT_STALE_SECONDS have passed
        (a live node: one or two extra Scans per invocation; a dead one: its first probe fails on time)."""
        node = cluster.active
        if node is None or node not in snap.nodes:
            return snap
        instance = view.locate(node, snap.nodes[node], cluster.active_instance)
        if view.instances_known and (instance is None or not instance.running):
            return snap  # EC2 already says it failed: no need to wait for its lease
        return self._watch_renewal(node) or snap

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
            how = self._fencer.fence(fencing, view or self._ec2.view(fresh=True), self._fence_time_left)
        if how is None:
            node, epoch = fencing.fencing_node, fencing.epoch
            return Outcome(False, f"fencing of {node} not confirmed yet (epoch {epoch})")
        if how.startswith(SUPERSEDED):
            return Outcome(False, "another checker completed the takeover")
        self._fenced[fencing.epoch] = how
        return self._promote(fencing, how)

    def _promote(self, fencing: ClusterState, how: str) -> Outcome:
        snap = self._latest or self._read()
        current = snap.cluster
        if current is None or current.epoch != fencing.epoch or current.phase != FENCING:
            return Outcome(False, "another checker completed the takeover")
        needed, left = after_fencing_seconds(), self.remaining()
        if left < needed:
            logger.warning("promotion deferred: not enough time left in this invocation",
                           extra={"needed_seconds": needed, "left_seconds": round(left, 1)})
            return Outcome(False, f"{current.fencing_node} fenced ({how}); promotion deferred: it needs up to "
                                  f"{needed:.0f}s, {left:.0f}s left")
        view = self._ec2.view(fresh=True)
        target, snap = self._choose(snap, view, self._order(set(), first=current.candidate,
                                                            last=current.fencing_node))
        report = snap.nodes.get(target) if target else None
        instance = view.locate(target, report) if target else None
        if target is None or instance is None or instance.eni is None:
            self._no_standby(snap.checker, f"{current.fencing_node} is fenced ({how})")
            return Outcome(False, "no healthy standby to promote")
        now = self._clock.now()
        reason = f"{current.reason}; fenced: {how}"
        if not self._store.promote(current, target, instance.instance_id, reason[:500], now):
            # The SDK's retry re-sends an UpdateItem whose response was lost; the resend fails its condition
            # although the first attempt was applied. The table says whether this run's promotion is in place.
            applied = self._promotion_applied(current, target, instance.instance_id)
            if applied is None:
                return Outcome(False, "promote condition failed; no time left to re-read: the next cycle moves "
                                      "the routes if the promotion is in place")
            if not applied:
                return Outcome(False, "another checker completed the takeover")
            logger.warning("promote response lost: the table shows this run's promotion; moving the routes",
                           extra={"node": target, "instance": instance.instance_id, "epoch": current.epoch})
        # Only now, with the old node confirmed down and the new one active in the table, does the VIP move.
        result = self._routes.point_at(instance.eni, view,
                                       verify=self.remaining() > DESCRIBE_WORST_SECONDS + FINISH_MARGIN_SECONDS)
        self._ec2.invalidate()
        overtaken = self._routes_overtaken(current.epoch)
        if result.ok and not overtaken and self.remaining() > CALL_WORST_SECONDS + FINISH_MARGIN_SECONDS:
            self._record_routes(current.epoch)
        switch_seconds = self._clock.now() - current.changed_at
        kind = SWITCHOVERS if current.reason.startswith(SWITCHOVER_PREFIX) else FAILOVERS
        self.telemetry.count(kind)
        if result.ok:
            self.telemetry.seconds(SWITCH_SECONDS, switch_seconds)
        else:
            self.telemetry.count(CHECKER_ERRORS)
        payload = {"cluster": self._s.cluster_id, "from": current.fencing_node, "to": target,
                   "epoch": current.epoch, "reason": reason, "fenced": how, "routes_changed": result.changed,
                   "route_failures": result.failed, "routes_verified": result.verified,
                   "switch_seconds": round(switch_seconds, 3)}
        logger.warning("VIP moved" if result.ok else "VIP moved with route failures", extra=payload)
        self.telemetry.notify(f"efs-ha {self._s.cluster_id}: {kind[:-1].lower()} "
                              f"{current.fencing_node} -> {target}", payload)
        self.telemetry.flush()
        return Outcome(True, f"{kind[:-1].lower()} {current.fencing_node} -> {target}", target, result.ok)

    def _routes_overtaken(self, epoch: int) -> bool:
        """Whether a newer epoch was written while this run moved the routes for `epoch` (runs overlap since the
        loop lease: an operator action, a thawed loop holder): its route writes may have landed before these,
        so the routes are pointed at the table's active node again; a late write of an older epoch never wins."""
        if self.remaining() < 2 * CALL_WORST_SECONDS + DESCRIBE_WORST_SECONDS + FINISH_MARGIN_SECONDS:
            return False
        snap = self._read()
        latest = snap.cluster
        if latest is None or latest.epoch == epoch:
            return False
        logger.warning("a newer epoch was written while this run moved the routes: re-pointing them",
                       extra={"epoch": epoch, "latest_epoch": latest.epoch, "active": latest.active})
        if latest.phase == STABLE and latest.active:
            view = self._ec2.view(fresh=True)
            instance = view.locate(latest.active, snap.nodes.get(latest.active), latest.active_instance)
            if instance is not None and instance.eni:
                self._routes.point_at(instance.eni, view, verify=False)
                self._ec2.invalidate()
        return True

    def _promotion_applied(self, seen: ClusterState, target: str, instance_id: str) -> bool | None:
        """After a failed promote condition: whether the table shows exactly this promotion (same epoch, stable,
        `target` active, bound to `instance_id`). None when there is no time left to re-read and move routes."""
        if self.remaining() < CALL_WORST_SECONDS + 2 * CALL_WORST_SECONDS + FINISH_MARGIN_SECONDS:
            return None
        current = self._read().cluster
        return bool(current is not None and current.epoch == seen.epoch and current.phase == STABLE
                    and current.active == target and current.active_instance == instance_id)

    def _record_routes(self, epoch: int) -> None:
        """Every VIP route was written for `epoch`: later cycles stop writing them blindly (best effort: if this
        write fails, the next cycle writes the routes again and retries it)."""
        try:
            if self._store.record_routes(epoch):
                logger.info("routes recorded for epoch", extra={"epoch": epoch})
        except AwsUnavailable as error:
            logger.warning("could not record routes_epoch; the next cycle retries", extra={"error": str(error)})

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
        self._save_checker(replace(checker, alerted_at={**checker.alerted_at, NO_STANDBY_ALERT: now}),
                           "alerted_at")

    # ----- steady state -----
    def _converge_routes(self, cluster: ClusterState, view: Ec2View, report: NodeReport | None) -> str | None:
        """Every VIP route must point at the active node's ENI. While the routes of this epoch are not recorded
        as written (`routes_epoch` < `epoch`: a promote whose response was lost, a run that died between the
        promote and the routes, a failed table write, a new item) and the routes cannot be described, every
        table is written blindly; with the routes readable, drift repair does it. Once every route is known to
        point at the ENI (a describe shows it, or every write succeeded), `routes_epoch` = `epoch` is recorded."""
        if cluster.routes_pending and not view.routes_known:
            return self._write_routes_blindly(cluster, view, report)
        outcome, converged = self._repair_drift(cluster, view, report)
        if cluster.routes_pending and converged:
            self._record_routes(cluster.epoch)
        return outcome

    def _write_routes_blindly(self, cluster: ClusterState, view: Ec2View, report: NodeReport | None) -> str | None:
        """The routes of this epoch with DescribeRouteTables failing: ReplaceRoute in every table (CreateRoute
        where the route is missing), then record `routes_epoch` if every write succeeded."""
        instance = view.locate(cluster.active, report, cluster.active_instance)
        if instance is None or instance.eni is None:
            logger.warning("routes of this epoch not written yet: the active node's ENI is unknown",
                           extra={"node": cluster.active, "epoch": cluster.epoch})
            return None
        if cluster.maintenance:
            logger.warning("routes of this epoch not written (maintenance mode)", extra={"epoch": cluster.epoch})
            return f"maintenance: routes of epoch {cluster.epoch} not written"
        current = self._read().cluster
        if current is None or (current.epoch, current.phase, current.active, current.active_instance) != (
                cluster.epoch, cluster.phase, cluster.active, cluster.active_instance):
            return "cluster changed; route writes deferred"
        result = self._routes.point_at(instance.eni, view, verify=False)
        self._ec2.invalidate()
        extra = {"active": cluster.active, "eni": instance.eni, "epoch": cluster.epoch,
                 "changed": result.changed, "failed": result.failed}
        if result.failed:
            self.telemetry.count(CHECKER_ERRORS)
            logger.error("routes of this epoch written blindly, some failed; the next cycle writes them again",
                         extra=extra)
            return f"routes of epoch {cluster.epoch}: {len(result.failed)} table(s) failed, retried next cycle"
        logger.warning("routes of this epoch written blindly (routes not readable)", extra=extra)
        self._record_routes(cluster.epoch)
        return f"routes written for epoch {cluster.epoch} in {len(result.changed)} table(s)"

    def _repair_drift(self, cluster: ClusterState, view: Ec2View,
                      report: NodeReport | None) -> tuple[str | None, bool]:
        """Every VIP route that a describe shows off the active node's ENI is replaced: the table, not the
        template, decides. Unknown routes (DescribeRouteTables failing) show no drift: nothing to repair that
        can be seen. Returns the outcome and whether every route is now known to point at the ENI."""
        instance = view.locate(cluster.active, report, cluster.active_instance)
        if instance is None or instance.eni is None or not view.routes_known:
            return None, False
        if not drifted_tables(self._s, view, instance.eni):
            return None, True
        view = self._ec2.view(fresh=True)
        if not view.routes_known:
            return None, False
        drifted = drifted_tables(self._s, view, instance.eni)
        if not drifted:
            return None, True
        before = {t: (r.target_eni or r.target_instance) if (r := view.routes.get(t)) else None
                  for t in drifted}
        if cluster.maintenance:
            logger.warning("VIP route drift (maintenance mode: not repaired)", extra={"routes": before})
            return f"maintenance: drift in {len(drifted)} table(s) not repaired", False
        current = self._read().cluster
        if current is None or (current.epoch, current.phase, current.active) != (
                cluster.epoch, cluster.phase, cluster.active):
            return "cluster changed; drift repair deferred", False
        result = self._routes.point_at(instance.eni, view)
        self._ec2.invalidate()
        self.telemetry.count(ROUTE_DRIFT_REPAIRED, len(result.changed))
        if result.failed:
            self.telemetry.count(CHECKER_ERRORS)
        logger.warning("VIP route drift repaired", extra={"active": cluster.active, "eni": instance.eni,
                                                          "previous": before, "failed": result.failed})
        return f"drift repaired in {len(result.changed)} table(s)", not result.failed

    def _binding(self, node: str, snap: Snapshot | None, view: Ec2View) -> str | None:
        """The instance to bind `node`'s role to: EC2's only instance of the node; else the instance of the
        node's own fresh node item (a renewal observed on the checker's clock), which must be one of the node's
        instances in EC2 when EC2 is readable. None when neither says."""
        instances = view.instances.get(node, ()) if view.instances_known else ()
        if len(instances) == 1:
            return instances[0].instance_id
        report = snap.nodes.get(node) if snap is not None else None
        if report is None or report.instance_id is None or not self.tracker.fresh(node):
            return None
        if view.instances_known and report.instance_id not in {i.instance_id for i in instances}:
            return None
        return report.instance_id

    def _bind_active_instance(self, snap: Snapshot, cluster: ClusterState, view: Ec2View) -> ClusterState:
        """Bind the role to one instance when the cluster item lacks it. Agents start MinIO only on the instance
        the role is bound to (two instances of the node during a deploy replacement must never both serve), so
        the checker always binds: from EC2 when it shows exactly one instance of the node, else from the node's
        own fresh node item (EC2 throttled, or several instances). Done whatever the probe says, and the start
        grace begins again (`changed_at`): the node could not start MinIO before. Returns the cluster as now
        bound (unchanged when nothing could be bound, or another writer changed the item first)."""
        if cluster.active_instance or not cluster.active or cluster.phase != STABLE:
            return cluster
        instance_id = self._binding(cluster.active, snap, view)
        if instance_id is None:
            logger.warning("the role is not bound to an instance and nothing says which one yet",
                           extra={"node": cluster.active, "ec2_readable": view.instances_known})
            return cluster
        now = self._clock.now()
        try:
            bound = self._store.bind_active_instance(cluster, instance_id, now)
        except AwsUnavailable as error:
            logger.warning("could not bind the role; the next cycle retries", extra={"error": str(error)})
            return cluster
        if not bound:
            return cluster
        logger.warning("role bound to an instance", extra={"node": cluster.active, "instance": instance_id,
                                                           "epoch": cluster.epoch})
        return replace(cluster, active_instance=instance_id, changed_at=now)

    # ----- table -----
    def _read(self) -> Snapshot:
        """One Scan; the lease tracker observes it right after it returned."""
        snap = self._store.read()
        self._renewed = set(self.tracker.observe(snap.nodes.values()))
        self._latest = snap
        if self._lease is not None:
            self._lease.renew_if_due()
        return snap

    def _snapshot(self) -> Snapshot:
        snap = self._read()
        if snap.cluster is None:
            self._bootstrap()
            snap = self._read()
        self._last_checker = snap.checker
        return snap

    @staticmethod
    def _cluster(snap: Snapshot) -> ClusterState:
        if snap.cluster is None:
            raise RuntimeError("the cluster item is missing right after bootstrap")
        return snap.cluster

    def _bootstrap(self) -> None:
        """Create the cluster item: the first node active, bound to its instance (from EC2 when it shows exactly
        one, else from the node's own node item once a renewal of it is observed, waited for up to
        HEARTBEAT_STALE_SECONDS). Left unbound only when neither says; the probe cycles bind it then."""
        first = self._s.node_names[0]
        view = self._ec2.view()
        bound = self._binding(first, self._latest, view)
        if bound is None and self._latest is not None and first in self._latest.nodes:
            bound = self._binding(first, self._watch_renewal(first), view)
        if self._store.bootstrap(first, bound, self._clock.now()):
            logger.info("cluster item created", extra={"active": first, "instance": bound})

    def _watch_renewal(self, node: str) -> Snapshot | None:
        """Re-read the table every half renewal period until a renewal of `node` is observed or
        HEARTBEAT_STALE_SECONDS have passed since it was first sighted."""
        snap = self._latest
        while (not self.tracker.renewal_seen(node)
               and self.tracker.silent_for(node) < self._s.heartbeat_stale_seconds):
            self._clock.sleep(self._s.heartbeat_interval_seconds / 2)
            snap = self._read()
        return snap

    def _save_checker(self, state: CheckerState, *fields: str) -> None:
        """Write these attributes of `state` only (the checker item's others may be another run's since)."""
        self._store.save_checker_fields({name: dict(getattr(state, name)) for name in fields})
        self._last_checker = self._with_probe_time(state)

    def _with_probe_time(self, state: CheckerState) -> CheckerState:
        """The run's view of the checker item keeps the probe time it recorded (never an older read's)."""
        recorded = self._probe_recorded_at
        return state if recorded is None or recorded <= state.last_probe_at else replace(state, last_probe_at=recorded)

    def _record_probe(self) -> None:
        """Record this cycle's time as `checker.last_probe_at` when the recorded one is PROBE_RECORD_SECONDS old
        (or from the future: another clock). Only that attribute is written (an overlapping run's counters and
        holds stay); before any successful read nothing is written. Best effort: a failed write is logged, never
        a failed cycle."""
        state = self._last_checker
        if state is None:
            return
        now = self._clock.now()
        last = max(state.last_probe_at, self._probe_recorded_at or 0.0)
        if 0 <= now - last < PROBE_RECORD_SECONDS:
            return
        try:
            self._store.save_checker_fields({"last_probe_at": now})
        except AwsUnavailable as error:
            logger.warning("could not record the probe time", extra={"error": str(error)})
            return
        self._probe_recorded_at = now
        self._last_checker = replace(state, last_probe_at=now)

    def _record_run(self) -> None:
        if self._last_checker is None:
            return
        try:
            self._store.save_checker_fields({"last_run_at": self._clock.now()})
        except AwsUnavailable as error:
            logger.warning("could not record the run", extra={"error": str(error)})

    # ----- events -----
    def known_instance(self, instance_id: str) -> bool:
        """Whether an EC2 state-change event concerns one of the nodes: one Scan, no EC2 call. Known = an
        instance a node item reports, or the one the cluster item binds the role (or its fencing) to."""
        snap = self._read()
        known = {report.instance_id for report in snap.nodes.values() if report.instance_id}
        if snap.cluster is not None:
            known |= {i for i in (snap.cluster.active_instance, snap.cluster.fencing_instance) if i}
        return instance_id in known

    # ----- operator actions -----
    def status(self) -> dict[str, Any]:
        self._snapshot()  # bootstraps the cluster item if absent
        snap = watch_leases(self._read, self.tracker, self._clock, self._s)
        view = self._ec2.view(fresh=True)
        return status_report(self._s, self.tracker, self._clock.now(), snap, self._cluster(snap), view)

    def switchover(self, target: str, why: str = "requested") -> dict[str, Any]:
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
        chosen, snap = self._choose(snap, view, [target])
        if chosen is None:
            report = snap.nodes.get(target)
            problems = node_problems(self._s, self.tracker, target, report, view.locate(target, report),
                                     view.instances_known)
            return refuse(f"{target} is not healthy: {'; '.join(problems)}")
        needed, left = self.takeover_needs(snap.nodes.get(cluster.active or "")), self.remaining()
        if left < needed:
            return refuse(f"not enough time left in this invocation for a switchover ({left:.0f}s, it needs up "
                          f"to {needed:.0f}s); retry")
        reason = f"{SWITCHOVER_PREFIX}: {cluster.active} -> {target} {why}"
        if not self._store.begin_fencing(cluster, target, reason, started):
            return refuse("the cluster changed meanwhile; read the status and retry")
        outcome = self._complete_takeover(self._fencing_view(cluster, target, started, reason), view)
        if not outcome.done:
            return {"ok": False, "reason": outcome.detail, "epoch": cluster.epoch + 1}
        return {"ok": True, "from": cluster.active, "to": outcome.node, "epoch": cluster.epoch + 1,
                "seconds": round(self._clock.now() - started, 3), "routes_ok": outcome.routes_ok}

    def confirm_fenced(self, node: str) -> dict[str, Any]:
        """Operator override for a fencing that cannot be confirmed (e.g. StopInstances keeps failing): the
        operator states that `node` is down. Refused when the evidence says otherwise: a lease renewal of the
        node observed while watching for LEASE_DEADLINE_SECONDS, or EC2 readable and showing its instance
        pending/running. Otherwise the takeover completes with the operator's confirmation recorded."""
        snap = self._snapshot()
        cluster = self._cluster(snap)
        if node not in self._s.node_names:
            return refuse(f"unknown node {node!r}; nodes are {', '.join(self._s.node_names)}")
        if cluster.phase != FENCING or cluster.fencing_node != node:
            return refuse(f"no fencing of {node} is in progress (phase {cluster.phase}, epoch {cluster.epoch}, "
                          f"fencing {cluster.fencing_node or 'nobody'})")
        needed = self._s.lease_deadline_seconds + after_fencing_seconds()
        if self.remaining() < needed:
            return refuse(f"not enough time left in this invocation ({self.remaining():.0f}s, needs {needed:.0f}s)")
        deadline = self._clock.monotonic() + self._s.lease_deadline_seconds
        evidence = []
        while True:
            if node in self._renewed:
                return refuse(f"{node} renewed its lease while being watched (lease_seq "
                              f"{snap.nodes[node].lease_seq}): it is alive, not down")
            how = self._fencer.evidence_from_table(cluster, snap, node, cluster.fencing_instance)
            if how is not None and how.startswith(SUPERSEDED):
                return refuse(how)
            if how is not None:
                evidence.append(how)
                break
            if self._clock.monotonic() >= deadline:
                evidence.append(f"no lease renewal seen for {self.tracker.silent_for(node):.1f}s" if node in snap.nodes
                                else f"no node item in {self._s.lease_deadline_seconds:g}s of reads")
                break
            self._clock.sleep(self._s.heartbeat_interval_seconds / 2)
            snap = self._read()
        instance_id = cluster.fencing_instance or (snap.nodes[node].instance_id if node in snap.nodes else None)
        if instance_id:
            try:
                state = self._ec2.instance_state(instance_id)
            except AwsUnavailable:
                evidence.append("EC2 unreadable")
            else:
                if state in ("pending", "running"):
                    return refuse(f"instance {instance_id} of {node} is {state} according to EC2; stop it "
                                  f"(or let the checker's StopInstances succeed) first")
                evidence.append(f"instance {instance_id} is {state}")
        how = f"{OPERATOR_CONFIRMED}: {node} is down ({'; '.join(evidence)})"
        logger.warning("fencing confirmed by the operator", extra={"node": node, "epoch": cluster.epoch,
                                                                   "evidence": evidence})
        self._fenced[cluster.epoch] = how
        outcome = self._promote(cluster, how)
        result: dict[str, Any] = {"ok": outcome.done, "epoch": cluster.epoch, "fenced": how}
        if outcome.done:
            result.update({"to": outcome.node, "routes_ok": outcome.routes_ok})
        else:
            result["reason"] = outcome.detail
        return result

    def set_maintenance(self, enabled: bool) -> dict[str, Any]:
        snap = self._snapshot()
        self._store.set_maintenance(enabled, self._clock.now())
        logger.warning("maintenance mode changed", extra={"enabled": enabled})
        self._announce(snap.checker, enabled, "the maintenance action")
        return {"ok": True, "maintenance": enabled}

    def _announce_maintenance(self, snap: Snapshot, cluster: ClusterState) -> Snapshot:
        """A maintenance flag written straight into the table (the CLI does so when the probe loop holds the
        checker's only slot) is announced on SNS like the `maintenance` action's: the checker item remembers
        which state was announced last. Costs nothing while the flag does not change."""
        announced = snap.checker.alerted_at.get(MAINTENANCE_ALERT, 0.0) > 0
        if cluster.maintenance == announced:
            return snap
        logger.warning("maintenance mode changed in the state table", extra={"enabled": cluster.maintenance})
        return replace(snap, checker=self._announce(snap.checker, cluster.maintenance, "the state table"))

    def _announce(self, checker: CheckerState, enabled: bool, via: str) -> CheckerState:
        """SNS first, then remember it (a lost save repeats the notification, never loses it)."""
        self.telemetry.notify(f"efs-ha {self._s.cluster_id}: maintenance {'on' if enabled else 'off'}",
                              {"cluster": self._s.cluster_id, "maintenance": enabled, "set_via": via})
        updated = replace(checker, alerted_at={**checker.alerted_at,
                                               MAINTENANCE_ALERT: self._clock.now() if enabled else 0.0})
        try:
            self._save_checker(updated, "alerted_at")
        except AwsUnavailable as error:
            logger.warning("could not record the maintenance notification; it may be sent again",
                           extra={"error": str(error)})
            return checker
        return updated

    def _run_request(self, request: Request) -> None:
        """Claim, execute and delete a queued operator request (queued because a probe loop held the only
        slot). The claim is a conditional write (SET taken_at): from then on the CLI cannot withdraw it.
        `requested_at` (the operator's clock) decides nothing; a request the CLI gave up on, it withdraws."""
        if request.taken_at is not None:
            # Claimed by a run that ended before finishing it: its effect (if any) is in the cluster item.
            result = refuse("the checker run that took this request ended before finishing it; see the status")
        elif not self._store.claim_request(request.request_id, self._clock.now()):
            logger.info("queued request withdrawn before it was taken", extra={"request_id": request.request_id})
            return
        elif request.action == "switchover" and request.target:
            result = self.switchover(request.target)
        elif request.action == "confirm_fenced" and request.target:
            result = self.confirm_fenced(request.target)
        else:
            result = refuse(f"unsupported queued request {request.action!r}")
        logger.warning("queued request handled", extra={"request_id": request.request_id, "result": result})
        self.telemetry.notify(f"efs-ha {self._s.cluster_id}: queued {request.action or 'request'}",
                              {"request_id": request.request_id, "target": request.target, "result": result})
        self._store.delete_request(request.request_id)
