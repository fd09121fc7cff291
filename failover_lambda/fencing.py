"""Step 2-3 of a takeover: make sure the old active node no longer serves before anything moves.

Confirmation never trusts an SSM command status: "Success" only means the shell ran, not that MinIO is down
(and a partitioned node never runs it). Only these count: the node's own report (serving=false at the new
epoch), an expired lease (its agent has stopped MinIO by itself), or the instance being stopped/gone.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from failover_lambda.aws import AWS_ERRORS, AwsUnavailable, error_code
from failover_lambda.clock import Clock
from failover_lambda.ec2_view import GONE_STATES, Ec2Reader
from failover_lambda.model import ClusterState, Ec2View
from failover_lambda.settings import Settings
from failover_lambda.state_store import StateStore
from failover_lambda.telemetry import FENCE_STOPS, Telemetry, logger

FENCE_POLL_SECONDS = 0.5
SSM_TIMEOUT_SECONDS = 30


class Fencer:
    def __init__(self, settings: Settings, store: StateStore, ec2: Ec2Reader, ec2_client: Any, ssm: Any,
                 clock: Clock, telemetry: Telemetry) -> None:
        self._settings = settings
        self._store = store
        self._ec2 = ec2
        self._ec2_client = ec2_client
        self._ssm = ssm
        self._clock = clock
        self._telemetry = telemetry

    def fence(self, cluster: ClusterState, view: Ec2View, time_left: Callable[[], float]) -> str | None:
        """Wait until the fenced node is confirmed down; the reason, or None if this run's time ran out.

        Budget while waiting: one GetItem and at most one DescribeInstances per poll (0.5 s).
        """
        node = cluster.fencing_node or ""
        instance = view.instance_of(node, cluster.fencing_instance)
        instance_id = cluster.fencing_instance or (instance.instance_id if instance else None)
        asked = stop_sent = False
        while True:
            reason = self._confirmation(cluster, node, instance_id)
            if reason:
                logger.info("fencing confirmed", extra={"node": node, "epoch": cluster.epoch, "how": reason})
                return reason
            if instance_id and not asked:
                self._ask_to_stop(instance_id, cluster.epoch)
                asked = True
            overdue = self._clock.now() >= cluster.changed_at + self._settings.fence_timeout_seconds
            if overdue and instance_id and not stop_sent:
                stop_sent = self._force_stop(instance_id, node)
            if time_left() < FENCE_POLL_SECONDS:
                logger.warning("fencing not confirmed before the run ends; the next run resumes it",
                               extra={"node": node, "epoch": cluster.epoch})
                return None
            self._clock.sleep(FENCE_POLL_SECONDS)

    def _confirmation(self, cluster: ClusterState, node: str, instance_id: str | None) -> str | None:
        now = self._clock.now()
        try:
            report = self._store.read_node(node)
        except AwsUnavailable as error:
            logger.warning("fencing check: table unreadable", extra={"error": str(error)})
            report = None
        else:
            if report is None:
                return "the node never wrote a heartbeat, so it never held a lease"
            # A heartbeat written by another instance of the same node says nothing about the fenced one.
            if not (instance_id and report.instance_id and report.instance_id != instance_id):
                if not report.serving and report.seen_epoch >= cluster.epoch:
                    return f"node reports serving=false at epoch {report.seen_epoch}"
                if report.heartbeat_at + self._settings.lease_seconds < now:
                    return f"lease expired ({report.age(now):.1f}s since the last heartbeat)"
        if instance_id is None:
            return None
        try:
            state = self._ec2.instance_state(instance_id)
        except AwsUnavailable as error:
            logger.warning("fencing check: EC2 unavailable", extra={"error": str(error)})
            return None
        return f"instance {instance_id} is {state}" if state in GONE_STATES else None

    def _ask_to_stop(self, instance_id: str, epoch: int) -> None:
        """Fast path for a hung agent. Errors are ignored: the agent, lease or StopInstances back it up."""
        try:
            self._ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName=self._settings.fence_command_document,
                Parameters={"commands": [f"systemctl stop {shlex.quote(self._settings.minio_unit)}"]},
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
