"""Logs, CloudWatch metrics (EMF via Powertools) and SNS notifications."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from failover_lambda.aws import AWS_ERRORS, error_code

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "efs-ha-checker"))
# service="" keeps POWERTOOLS_SERVICE_NAME out of the dimensions: ClusterId is the only one, as the alarms expect.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EfsHaCluster"), service="")

# Metric names are part of the contract with the stack's alarms and dashboard.
FAILOVERS = "Failovers"
DETECTION_SECONDS = "DetectionSeconds"
SWITCH_SECONDS = "SwitchSeconds"
ROUTE_DRIFT_REPAIRED = "RouteDriftRepaired"
NO_HEALTHY_STANDBY = "NoHealthyStandby"
CHECKER_ERRORS = "CheckerErrors"
PROBE_UNKNOWN = "ProbeUnknown"
FENCE_STOPS = "FenceStopInstances"
NODE_HEALTHY = "NodeHealthy"
ACTIVE_NODE_POSITION = "ActiveNodePosition"
# Seconds since the previous probe cycle, whichever invocation ran it: the probe loop's gaps (the alarm's input).
PROBE_GAP_SECONDS = "ProbeGapSeconds"
# Per node, same dimensions as NodeHealthy: node wall clock (heartbeat_at) minus the checker's wall clock when
# a renewal was observed. Display only: leases are judged on the checker's clock. Biased towards negative by
# at most one probe interval (the item was written before the read that observed it).
CLOCK_SKEW_SECONDS = "ClockSkewSeconds"


class Telemetry:
    def __init__(self, sns: Any, topic_arn: str | None, cluster_id: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._cluster_id = cluster_id
        if metrics.default_dimensions.get("ClusterId") != cluster_id:  # once per cold start
            metrics.set_default_dimensions(ClusterId=cluster_id)

    def count(self, name: str, value: float = 1) -> None:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def seconds(self, name: str, value: float) -> None:
        metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=max(0.0, value))

    def gauge(self, name: str, value: float) -> None:
        metrics.add_metric(name=name, unit=MetricUnit.NoUnit, value=value)

    def node_health(self, node: str, healthy: bool, skew_seconds: float | None = None) -> None:
        """Per-node gauge (1 healthy, 0 not) behind the NodeUnhealthy alarms, and the node's clock skew when a
        renewal was observed this cycle; written at once, one record each."""
        # Its own record (the node is a dimension only here); service="" as for `metrics` above.
        record = EphemeralMetrics(namespace=metrics.namespace, service="")
        record.add_dimension(name="ClusterId", value=self._cluster_id)
        record.add_dimension(name="Node", value=node)
        record.add_metric(name=NODE_HEALTHY, unit=MetricUnit.Count, value=1 if healthy else 0)
        if skew_seconds is not None:
            record.add_metric(name=CLOCK_SKEW_SECONDS, unit=MetricUnit.Seconds, value=round(skew_seconds, 3))
        record.flush_metrics()

    def notify(self, subject: str, payload: dict[str, Any]) -> None:
        """Best effort: a failed notification is logged and counted, never allowed to stop a failover."""
        if not self._topic_arn:
            return
        try:
            self._sns.publish(TopicArn=self._topic_arn, Subject=subject[:100],
                              Message=json.dumps(payload, default=str, sort_keys=True))
        except AWS_ERRORS as error:
            logger.warning("SNS publish failed", extra={"error": error_code(error), "subject": subject})
            self.count(CHECKER_ERRORS)

    @staticmethod
    def flush() -> None:
        # Flushed after each failover and at the end of the invocation, so alarms see failovers promptly.
        if metrics.metric_set:
            metrics.flush_metrics()
