"""The `status` action (and `efs-ha status`): one JSON-serialisable picture of the table, the nodes and the VIP
routes. Lease freshness comes from the caller's own lease tracker (its own clock); `heartbeat_at` and the
clock skew are shown, never judged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from failover_lambda.clock import Clock
from failover_lambda.health import active_problems, node_problems, only_not_observed
from failover_lambda.lease import LeaseTracker
from failover_lambda.model import ClusterState, Ec2View, Snapshot
from failover_lambda.settings import Settings


def watch_leases(read: Callable[[], Snapshot], tracker: LeaseTracker, clock: Clock,
                 settings: Settings) -> Snapshot:
    """Read the table until every node item has shown a renewal to `tracker` (`read` must feed it), or
    HEARTBEAT_STALE_SECONDS have passed: about one renewal period while all nodes live."""
    snap = read()
    deadline = clock.monotonic() + settings.heartbeat_stale_seconds
    while clock.monotonic() < deadline and any(
            not tracker.renewal_seen(name) for name in snap.nodes if name in settings.node_names):
        clock.sleep(settings.heartbeat_interval_seconds / 2)
        snap = read()
    return snap


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def status_report(settings: Settings, tracker: LeaseTracker, now: float, snap: Snapshot, cluster: ClusterState,
                  view: Ec2View) -> dict[str, Any]:
    active_report = snap.nodes.get(cluster.active or "")
    active_instance = view.locate(cluster.active, active_report, cluster.active_instance) if cluster.active \
        else None
    active_eni = active_instance.eni if active_instance else None
    nodes: dict[str, Any] = {}
    for name in settings.node_names:
        is_active = name == cluster.active
        report = snap.nodes.get(name)
        instance = active_instance if is_active else view.locate(name, report)
        problems = (active_problems(settings, tracker, now, cluster, report, instance, None, view.instances_known)
                    if is_active else node_problems(settings, tracker, name, report, instance,
                                                    view.instances_known))
        live = tracker.fresh(name)
        held_back = snap.checker.held_back(name, now, settings.service_failure_hold_seconds)
        nodes[name] = {
            # A node without a fresh lease renewal (observer's clock) is `down`, whatever the table assigns it;
            # its other values below are then its last report, not its present state (`live` false).
            "role": _role(name, cluster) if live else "down",
            "assigned_role": _role(name, cluster),
            "live": live,
            "instance_id": instance.instance_id if instance else None,
            "instance_state": instance.state if instance else None,
            "instance_source": ("ec2" if view.instances_known else "node item") if instance else None,
            "eni": instance.eni if instance else None,
            "private_ip": instance.private_ip if instance else None,
            "lease_seq": report.lease_seq if report else None,
            # Seconds since a renewal was observed (the observer's clock); None: none observed yet.
            "lease_renewal_age_seconds": _rounded(tracker.renewal_age(name)),
            "lease_fresh": tracker.fresh(name),
            "heartbeat_at": report.heartbeat_at if report else None,  # the node's clock: display only
            # The observer's wall clock minus heartbeat_at: display only (includes the node's clock skew).
            "last_heartbeat_age_seconds": _rounded(now - report.heartbeat_at) if report and report.heartbeat_at
            else None,
            # Node clock minus the observer's, when a renewal was observed (at most one read late).
            "clock_skew_seconds": _rounded(tracker.skew(name)),
            "efs_ok": report.efs_ok if report else None,
            "minio_ok": report.minio_ok if report else None,
            # systemd restarting a crashed MinIO in place (0: no restart in progress): probes not counted meanwhile
            "minio_restarting": report.minio_restarting if report else None,
            "serving": report.serving if report else None,
            # Being shut down: handed over (or waiting for a healthy standby), never made active again
            "leaving": report.leaving if report else None,
            "seen_epoch": report.seen_epoch if report else None,
            "stop_reason": report.stop_reason if report else None,
            "watchdog": report.watchdog if report else None,
            "watchdog_timeout": report.watchdog_timeout if report else None,
            "lease_seconds": report.lease_seconds if report else None,  # the node's own G (None: not reported)
            "detail": report.detail if report else None,
            "healthy": not problems,
            "problems": problems,
            "pending": only_not_observed(problems),
            "consecutive_failures": snap.checker.failures.get(name, 0),
            "held_back": held_back,
            # When the no-ping-pong hold ends (checker clock); a planned switchover is not held back.
            "held_back_until": snap.checker.service_failed_at[name] + settings.service_failure_hold_seconds
            if held_back else None,
        }
    eni_nodes = {report.eni_id: name for name, report in snap.nodes.items() if report.eni_id}
    routes = []
    for table in settings.route_table_ids:
        route = view.routes.get(table)
        target = route.target_eni if route else None
        routes.append({
            "route_table_id": table,
            "known": view.routes_known,
            "present": bool(route and route.present),
            "target_eni": target,
            "target_node": view.node_of_eni(target) or eni_nodes.get(target or ""),
            "drift": view.routes_known and active_eni is not None and target != active_eni,
        })
    request = snap.request
    return {
        "ok": True,
        "vip": settings.vip_cidr,
        "cluster": cluster.to_json(),
        "nodes": nodes,
        "route_tables": routes,
        "ec2_errors": list(view.errors),
        "request": None if request is None else {"action": request.action, "target": request.target,
                                                 "request_id": request.request_id,
                                                 "requested_at": request.requested_at,
                                                 "taken": request.taken_at is not None},
        "checker_last_run_at": snap.checker.last_run_at or None,
        # A recent probe cycle, checker clock (written at most every few seconds); None: never recorded.
        "checker_last_probe_at": snap.checker.last_probe_at or None,
        "failure_threshold": settings.failure_threshold,
    }


def _role(name: str, cluster: ClusterState) -> str:
    if name == cluster.active:
        return "active"
    if name == cluster.fencing_node:
        return "fencing"
    if name == cluster.candidate:
        return "candidate"
    return "standby"
