"""Cluster status straight from DynamoDB + EC2, computed by the checker's own code (failover_lambda.status).

The Lambda is not invoked for this: its single concurrency slot is usually held by the probe loop.
"""

from __future__ import annotations

from typing import Any

from efs_ha_cli.context import App
from efs_ha_cli.stack import (
    ALARM_TOPIC_ARN,
    FAILOVER_FUNCTION_NAME,
    FILE_SYSTEM_ID,
    MOUNT_POINT,
    NODE_GROUP_NAMES,
)
from efs_ha_cli.verdict import checker_liveness, judge
from failover_lambda.aws import AWS_ERRORS
from failover_lambda.ec2_view import Ec2Reader
from failover_lambda.model import ClusterState, Snapshot
from failover_lambda.state_store import StateStore
from failover_lambda.status import status_report, watch_leases

UNINITIALISED = "uninitialised"
# Shown until the checker's first run creates the `cluster` item (design: bootstrap on first run).
_NOT_BOOTSTRAPPED = ClusterState(epoch=0, phase=UNINITIALISED, active=None,
                                 reason="the checker has not created the cluster item yet")


def state_store(app: App) -> StateStore:
    return StateStore(app.client("dynamodb"), app.settings.state_table_name)


def read_status(app: App) -> dict[str, Any]:
    """failover_lambda's status report plus where it came from (stack, region, settings source)."""
    settings = app.settings
    store, tracker = state_store(app), app.lease_tracker

    def read() -> Snapshot:
        snap = store.read()
        tracker.observe(snap.nodes.values())
        return snap

    # Lease freshness on the operator's own monotonic clock: re-read until each node's lease_seq has grown
    # (about one renewal period; the first call of a CLI run only, later calls have seen renewals already).
    snap = watch_leases(read, tracker, app.clock, settings)
    view = Ec2Reader(app.client("ec2"), settings, app.clock).view(fresh=True)
    report = status_report(settings, tracker, app.clock.now(), snap, snap.cluster or _NOT_BOOTSTRAPPED, view)
    outputs = app.outputs
    report["stack"] = {
        "name": app.stack_name,
        "region": outputs.region,
        "status": outputs.stack_status,
        "file_system_id": outputs.optional(FILE_SYSTEM_ID),
        "mount_point": outputs.optional(MOUNT_POINT),
        "failover_function": outputs.optional(FAILOVER_FUNCTION_NAME),
        "alarm_topic_arn": outputs.optional(ALARM_TOPIC_ARN),
        "node_groups": list(outputs.items(NODE_GROUP_NAMES)) if outputs.optional(NODE_GROUP_NAMES) else [],
        "thresholds_from": app.settings_source,
    }
    report["checked_at"] = app.clock.now()
    report["initialised"] = snap.cluster is not None
    return report


def read_full_status(app: App) -> dict[str, Any]:
    """`efs-ha status`: read_status plus the route tables' Name tags, the checker's liveness and the verdict."""
    report = read_status(app)
    names = route_table_names(app)
    for route in report["route_tables"]:
        route["name"] = names.get(route["route_table_id"])
    now = report["checked_at"]
    report["checker"] = checker_liveness(report, now)
    report.update(judge(report, now).to_json())
    return report


def route_table_names(app: App) -> dict[str, str]:
    """Route table id -> its Name tag, read once per CLI run (names are for people; none when unreadable)."""
    if app.route_table_names is not None:
        return app.route_table_names
    names: dict[str, str] = {}
    try:
        response = app.client("ec2").describe_route_tables(
            Filters=[{"Name": "route-table-id", "Values": list(app.settings.route_table_ids)}])
    except AWS_ERRORS:
        return names
    for table in response.get("RouteTables", []):
        name = next((t.get("Value") for t in table.get("Tags", []) if t.get("Key") == "Name"), None)
        if name:
            names[table["RouteTableId"]] = name
    app.route_table_names = names
    return names
