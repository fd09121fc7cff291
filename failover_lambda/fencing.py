"""Steps 2-3 of a takeover: make sure the old active node no longer serves before anything moves.

Confirmation never trusts an SSM command status: "Success" only means the shell ran, not that MinIO is down
(and a partitioned node never runs it). Only these count (docs/failover-design.md, "Lease, watchdog and one
clock"):
  - the node's own report: serving=false with seen_epoch >= the fencing epoch;
  - its lease expired on the checker's own clock (no renewal observed for LEASE_DEADLINE_SECONDS) AND its last
    report shows a watchdog `armed` (or `ready` with serving=false) with a timeout <= WATCHDOG_TIMEOUT_SECONDS
    (WATCHDOG=required) AND its own lease_seconds + 2 x watchdog_timeout + 0.5 <= LEASE_DEADLINE_SECONDS:
    the watchdog has reset the node by then even if its agent froze. Needs no EC2 call at all;
  - its instance is stopped/terminated (DescribeInstances; StopInstances(Force) after FENCE_TIMEOUT_SECONDS);
  - it has no node item, and none appeared in any read for LEASE_DEADLINE_SECONDS since this run began watching
    the fencing: an agent starts MinIO only after a renewal whose PutItem succeeded within one renewal period,
    and a renewal whose cluster read came before the fencing write and whose item has not appeared by then can
    no longer count (an item that does appear is judged by the rules above). An absent item alone is not enough:
    the agent's first renewal may have read the cluster item just before the fencing write and land just after
    the checker's first read.
While waiting, each poll is one Scan (the lease tracker keeps observing every node, the candidate included)
and at most one DescribeInstances (none for EC2_CACHE_SECONDS after one failed).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failover_lambda.aws import AWS_ERRORS, AwsUnavailable, error_code
from failover_lambda.budget import FENCE_POLL_SECONDS
from failover_lambda.clock import Clock
from failover_lambda.ec2_view import GONE_STATES, Ec2Reader
from failover_lambda.lease import LeaseTracker
from failover_lambda.model import FENCING, ClusterState, Ec2View, Snapshot
from failover_lambda.settings import Settings
from failover_lambda.telemetry import FENCE_STOPS, Telemetry, logger

SSM_TIMEOUT_SECONDS = 30
STOP_RETRY_SECONDS = 2.0
SUPERSEDED = "superseded"


@dataclass
class _Progress:
    """What this invocation has already done for one fencing epoch (cycles resume it)."""

    asked: bool = False
    stop_sent: bool = False
    next_stop_attempt: float = 0.0
    next_ec2_check: float = 0.0
    noted_unenforced: bool = False
    watch_started: float = 0.0  # monotonic: when this invocation began watching this fencing


class Fencer:
    def __init__(self, settings: Settings, read: Callable[[], Snapshot], tracker: LeaseTracker, ec2: Ec2Reader,
                 ec2_client: Any, ssm: Any, clock: Clock, telemetry: Telemetry) -> None:
        self._settings = settings
        self._read = read
        self._tracker = tracker
        self._ec2 = ec2
        self._ec2_client = ec2_client
        self._ssm = ssm
        self._clock = clock
        self._telemetry = telemetry
        self._progress: dict[int, _Progress] = {}

    def wait_cap_seconds(self) -> float:
        """One fence() call waits at most this long, so a cycle can serve a queued request (confirm_fenced)."""
        return self._settings.fence_timeout_seconds + self._settings.lease_deadline_seconds

    def fence(self, cluster: ClusterState, view: Ec2View, time_left: Callable[[], float]) -> str | None:
        """Wait until the fenced node is confirmed down; the reason, or None if not (yet) within this call.

        `time_left()` is what this invocation may still spend on waiting (the promote-and-routes reserve is
        already taken off). Budget while waiting: one Scan and at most one DescribeInstances per poll (0.5 s).
        """
        node = cluster.fencing_node or ""
        progress = self._progress.setdefault(cluster.epoch, _Progress(watch_started=self._clock.monotonic()))
        started = self._clock.monotonic()
        while True:
            reason, instance_id = self._confirmation(cluster, node, view, progress)
            if reason:
                logger.info("fencing confirmed", extra={"node": node, "epoch": cluster.epoch, "how": reason})
                return reason
            if instance_id and not progress.asked:
                self._ask_to_stop(instance_id, cluster.epoch)
                progress.asked = True
            overdue = self._clock.now() >= cluster.changed_at + self._settings.fence_timeout_seconds
            if (overdue and instance_id and not progress.stop_sent
                    and self._clock.monotonic() >= progress.next_stop_attempt):
                progress.stop_sent = self._force_stop(instance_id, node)
                progress.next_stop_attempt = self._clock.monotonic() + STOP_RETRY_SECONDS
            if time_left() < FENCE_POLL_SECONDS:
                logger.warning("fencing not confirmed before this run's time for it ends; the next run resumes it",
                               extra={"node": node, "epoch": cluster.epoch})
                return None
            if self._clock.monotonic() - started >= self.wait_cap_seconds():
                return None
            self._clock.sleep(FENCE_POLL_SECONDS)

    def evidence_from_table(self, cluster: ClusterState, snap: Snapshot, node: str, instance_id: str | None,
                            progress: _Progress | None = None) -> str | None:
        """Fencing confirmed by the table alone (the node's stop report, or lease expiry behind a watchdog)."""
        if snap.cluster is not None and (snap.cluster.epoch != cluster.epoch or snap.cluster.phase != FENCING):
            return f"{SUPERSEDED}: the cluster is at epoch {snap.cluster.epoch}, phase {snap.cluster.phase}"
        report = snap.nodes.get(node)
        if report is None:
            # Only after D of reads without the item (the module docstring says why not at once). Without a
            # progress (the operator's confirm_fenced) this says nothing: that path watches for D itself.
            absent = self._clock.monotonic() - progress.watch_started if progress is not None else 0.0
            if progress is None or absent < self._settings.lease_deadline_seconds:
                return None
            return (f"the node has no node item and none appeared in {absent:.1f}s of reads (>= "
                    f"{self._settings.lease_deadline_seconds:g}s), so it holds no lease")
        # A node item written by another instance of the same node says nothing about the fenced one.
        if instance_id and report.instance_id and report.instance_id != instance_id:
            return None
        if not report.serving and report.seen_epoch >= cluster.epoch:
            return (f"node reports serving=false at epoch {report.seen_epoch} "
                    f"(stop reason: {report.stop_reason})")
        if not self._tracker.expired(node):
            return None
        silent = self._tracker.silent_for(node)
        if self._settings.watchdog_required and report.lease_expiry_fences(
                self._settings.watchdog_timeout_seconds, self._settings.lease_deadline_seconds):
            return (f"lease expired on the checker's clock (no renewal seen for {silent:.1f}s >= "
                    f"{self._settings.lease_deadline_seconds:g}s) behind its watchdog ({report.watchdog}, "
                    f"{report.watchdog_timeout:g}s; node lease {report.lease_seconds:g}s)")
        if progress is not None and not progress.noted_unenforced:
            progress.noted_unenforced = True
            logger.warning("lease expired but the node's report does not prove it stopped (no enforcing watchdog, "
                           "or its own lease + 2 x watchdog + margin exceeds the deadline): waiting for the "
                           "node's stop report or a stopped instance",
                           extra={"node": node, "watchdog": report.watchdog,
                                  "watchdog_timeout": report.watchdog_timeout,
                                  "lease_seconds": report.lease_seconds,
                                  "watchdog_required": self._settings.watchdog_required})
        return None

    def _confirmation(self, cluster: ClusterState, node: str, view: Ec2View,
                      progress: _Progress) -> tuple[str | None, str | None]:
        snap: Snapshot | None
        try:
            snap = self._read()
        except AwsUnavailable as error:
            logger.warning("fencing check: table unreadable", extra={"error": str(error)})
            snap = None
        report = snap.nodes.get(node) if snap else None
        instance = view.locate(node, report, cluster.fencing_instance)
        instance_id = cluster.fencing_instance or (instance.instance_id if instance else None)
        if snap is not None:
            reason = self.evidence_from_table(cluster, snap, node, instance_id, progress)
            if reason:
                return reason, instance_id
        if instance_id is None or self._clock.monotonic() < progress.next_ec2_check:
            return None, instance_id
        try:
            state = self._ec2.instance_state(instance_id)
        except AwsUnavailable as error:
            logger.warning("fencing check: EC2 unavailable", extra={"error": str(error)})
            progress.next_ec2_check = self._clock.monotonic() + self._settings.ec2_cache_seconds
            return None, instance_id
        return (f"instance {instance_id} is {state}" if state in GONE_STATES else None), instance_id

    def _ask_to_stop(self, instance_id: str, epoch: int) -> None:
        """Fast path for a hung agent. Errors are ignored: the agent, lease or StopInstances back it up."""
        unit = shlex.quote(self._settings.minio_unit)
        try:
            self._ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName=self._settings.fence_command_document,
                # Never a blocking stop: it would wait behind a stop job already queued (a node shutting down).
                # The stop job enqueued first keeps Restart= from restarting the killed MinIO.
                Parameters={"commands": [f"systemctl stop --no-block {unit}",
                                         f"systemctl kill --signal=SIGKILL {unit}"]},
                TimeoutSeconds=SSM_TIMEOUT_SECONDS,
                Comment=f"efs-ha fence for epoch {epoch}",
            )
        except AWS_ERRORS as error:
            logger.info("SSM stop command not sent",
                        extra={"instance": instance_id, "error": error_code(error)})

    def _force_stop(self, instance_id: str, node: str) -> bool:
        logger.warning("fencing not confirmed in time: force-stopping the instance",
                       extra={"node": node, "instance": instance_id})
        try:
            self._ec2_client.stop_instances(InstanceIds=[instance_id], Force=True)
        except AWS_ERRORS as error:
            logger.error("StopInstances failed; retrying", extra={"instance": instance_id,
                                                                   "error": error_code(error)})
            return False
        self._telemetry.count(FENCE_STOPS)
        return True
