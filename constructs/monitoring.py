"""Alarms and a dashboard over the checker's metrics, wired to the cluster's alert topic."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_efs as efs
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns

from constructs import Construct
from constructs.failover_manager import METRICS_NAMESPACE
from failover_lambda.budget import probe_gap_bound_seconds

ONE_MINUTE = Duration.minutes(1)


@dataclass(frozen=True)
class MonitoringInputs:
    checker: lambda_.IFunction
    topic: sns.ITopic
    file_system: efs.IFileSystem
    node_names: tuple[str, ...]
    # The checker's probe interval (config `probe_interval_seconds`): the ProbeGap alarm's threshold follows it.
    probe_interval_seconds: float = 1.0


class ClusterMonitoring(Construct):
    def __init__(self, scope: Construct, id_: str, *, inputs: MonitoringInputs) -> None:
        super().__init__(scope, id_)
        self._inputs = inputs
        self._cluster_id = Stack.of(self).stack_name
        self.alarms: list[cloudwatch.Alarm] = []
        self._alarm_on_checker_metrics()
        self._alarm_on_checker_function()
        self._alarm_on_nodes()
        self._alarm_on_storage()
        action = actions.SnsAction(inputs.topic)
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self.dashboard = self._build_dashboard()

    def _metric(self, name: str, statistic: str = "Sum", **dimensions: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, statistic=statistic,
                                 period=ONE_MINUTE, dimensions_map={"ClusterId": self._cluster_id, **dimensions})

    def _alarm(self, id_: str, metric: cloudwatch.IMetric, description: str, *, threshold: float = 1,
               comparison: cloudwatch.ComparisonOperator =
               cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
               evaluation_periods: int = 1, datapoints_to_alarm: int | None = None,
               missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING) -> None:
        self.alarms.append(cloudwatch.Alarm(
            self, id_, metric=metric, threshold=threshold, comparison_operator=comparison,
            evaluation_periods=evaluation_periods, datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=missing, alarm_description=description))

    def _alarm_on_checker_metrics(self) -> None:
        self._alarm("FailoverHappened", self._metric("Failovers"),
                    "The active role moved to another node: find out why the old node failed (runbook).")
        self._alarm("RouteDrift", self._metric("RouteDriftRepaired"),
                    "A VIP route pointed away from the active node and was corrected: check who edits routes.")
        self._alarm("NoHealthyStandby", self._metric("NoHealthyStandby"),
                    "The active node failed and no standby was healthy: the VIP did not move (runbook).")
        self._alarm("CheckerErrors", self._metric("CheckerErrors"),
                    "The failover checker hit AWS API errors it could not retry away.", evaluation_periods=3)
        # Failover can stop without an error: AWS API errors or throttling make a cycle's result unknown (never a
        # failed probe, so no failover), and a handled exception never reaches the Lambda Errors metric.
        self._alarm("CheckerBlind", self._metric("ProbeUnknown"),
                    "The failover checker could not see the cluster (AWS API errors or throttling) in 3 of the "
                    "last 5 minutes: automatic failover is stalled (read its logs; runbook).",
                    evaluation_periods=5, datapoints_to_alarm=3)
        # ActiveNodePosition is written by every completed probe cycle: no sample for 3 minutes means no cycle
        # completed (the checker runs but aborts each cycle, is stuck mid-takeover, or does not run at all).
        self._alarm("CheckerSilent", self._metric("ActiveNodePosition", statistic="SampleCount"),
                    "No probe cycle of the failover checker completed for 3 minutes: automatic failover is "
                    "stopped (read its logs; runbook).",
                    comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluation_periods=3,
                    missing=cloudwatch.TreatMissingData.BREACHING)
        # Every probe reports the time since the previous one, whichever run made it; a gap longer than the design
        # allows (a hand-over that failed, a loop that ended with no run to take over) means failures went
        # unseen for that long. Silence itself is CheckerSilent's: the first probe after it reports the gap.
        bound = probe_gap_bound_seconds(self._inputs.probe_interval_seconds)
        self._alarm("ProbeGap", self._metric("ProbeGapSeconds", statistic="Maximum"),
                    f"The failover checker did not probe for more than {bound:g} s (2 probe intervals + a cold "
                    "start): failures of the active node went unseen that long (read its logs; runbook).",
                    threshold=bound, comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD)

    def _alarm_on_checker_function(self) -> None:
        checker = self._inputs.checker
        self._alarm("CheckerFailing", checker.metric_errors(period=ONE_MINUTE),
                    "The failover checker Lambda is failing: failover is not guaranteed.")
        # No invocation for three minutes means no failover at all; missing data is the failure here.
        self._alarm("CheckerNotRunning", checker.metric_invocations(period=ONE_MINUTE),
                    "The failover checker has not run for 3 minutes: failover is disabled.",
                    comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluation_periods=3,
                    missing=cloudwatch.TreatMissingData.BREACHING)

    def _alarm_on_nodes(self) -> None:
        for node in self._inputs.node_names:
            self._alarm(f"NodeUnhealthy{node.capitalize()}",
                        self._metric("NodeHealthy", statistic="Minimum", Node=node),
                        f"{node} failed a health probe for 2 minutes (stale heartbeat, EFS write, MinIO or "
                        "instance state): a failover target is missing or the active node is failing.",
                        comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluation_periods=2)
            # The alarm above cannot see silence (missing data is not breaching there): this one pages when the
            # checker stops reporting this node's health at all.
            self._alarm(f"NodeHealthMissing{node.capitalize()}",
                        self._metric("NodeHealthy", statistic="SampleCount", Node=node),
                        f"No health result for {node} for 3 minutes: the checker is not judging it, so a failure "
                        "of this node would not be failed over (read the checker's logs; runbook).",
                        comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluation_periods=3,
                        missing=cloudwatch.TreatMissingData.BREACHING)

    def _alarm_on_storage(self) -> None:
        io_limit = cloudwatch.Metric(namespace="AWS/EFS", metric_name="PercentIOLimit", statistic="Maximum",
                                     period=Duration.minutes(5),
                                     dimensions_map={"FileSystemId": self._inputs.file_system.file_system_id})
        self._alarm("EfsIoLimit", io_limit, "EFS is near its General Purpose I/O limit: MinIO latency will rise "
                                            "and the 1-byte write monitor may time out.", threshold=90)

    def _build_dashboard(self) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        node_health = [self._metric("NodeHealthy", statistic="Minimum", Node=node).with_(label=node)
                       for node in self._inputs.node_names]
        checker = self._inputs.checker
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Node health (1 = healthy)", left=node_health, width=12),
            cloudwatch.GraphWidget(title="Active node (priority position, 1 = first node)", width=12,
                                   left=[self._metric("ActiveNodePosition", statistic="Maximum")]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Failovers and route repairs", width=8,
                                   left=[self._metric("Failovers"), self._metric("RouteDriftRepaired"),
                                         self._metric("NoHealthyStandby")]),
            cloudwatch.GraphWidget(title="Detection and switch time (s)", width=8,
                                   left=[self._metric("DetectionSeconds", statistic="Maximum"),
                                         self._metric("SwitchSeconds", statistic="Maximum")]),
            cloudwatch.GraphWidget(title="Longest gap between probes (s)", width=8,
                                   left=[self._metric("ProbeGapSeconds", statistic="Maximum")]),
            cloudwatch.GraphWidget(title="Checker errors", width=8,
                                   left=[checker.metric_errors(period=ONE_MINUTE), self._metric("CheckerErrors"),
                                         self._metric("ProbeUnknown"), checker.metric_throttles(period=ONE_MINUTE)]),
        )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        return dashboard
