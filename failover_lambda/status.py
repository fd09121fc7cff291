"""The `status` action: one JSON-serialisable picture of the table, the nodes and the VIP routes."""

from __future__ import annotations

from typing import Any

from failover_lambda.health import active_problems, node_problems
from failover_lambda.model import ClusterState, Ec2View, Snapshot
from failover_lambda.settings import Settings


def status_report(settings: Settings, now: float, snap: Snapshot, cluster: ClusterState,
                  view: Ec2View) -> dict[str, Any]:
    active_instance = view.instance_of(cluster.active, cluster.active_instance) if cluster.active else None
    active_eni = active_instance.eni if active_instance else None
    nodes: dict[str, Any] = {}
    for name in settings.node_names:
        is_active = name == cluster.active
        instance = active_instance if is_active else view.instance_of(name)
        report = snap.nodes.get(name)
        problems = (active_problems(settings, now, cluster, report, instance, None) if is_active
                    else node_problems(settings, now, report, instance))
        nodes[name] = {
            "role": _role(name, cluster),
            "instance_id": instance.instance_id if instance else None,
            "instance_state": instance.state if instance else None,
            "eni": instance.eni if instance else None,
            "private_ip": instance.private_ip if instance else None,
            "heartbeat_age_seconds": round(report.age(now), 3) if report else None,
            "efs_ok": report.efs_ok if report else None,
            "minio_ok": report.minio_ok if report else None,
            "serving": report.serving if report else None,
            "seen_epoch": report.seen_epoch if report else None,
            "detail": report.detail if report else None,
            "healthy": not problems,
            "problems": problems,
            "consecutive_failures": snap.checker.failures.get(name, 0),
            "held_back": snap.checker.held_back(name, now, settings.service_failure_hold_seconds),
        }
    routes = []
    for table in settings.route_table_ids:
        route = view.routes.get(table)
        target = route.target_eni if route else None
        routes.append({
            "route_table_id": table,
            "present": bool(route and route.present),
            "target_eni": target,
            "target_node": view.node_of_eni(target),
            "drift": active_eni is not None and target != active_eni,
        })
    request = snap.request
    return {
        "ok": True,
        "vip": settings.vip_cidr,
        "cluster": cluster.to_json(),
        "nodes": nodes,
        "route_tables": routes,
        "request": None if request is None else {"action": request.action, "target": request.target,
                                                 "request_id": request.request_id,
                                                 "requested_at": request.requested_at},
        "checker_last_run_at": snap.checker.last_run_at or None,
    }


def _role(name: str, cluster: ClusterState) -> str:
    if name == cluster.active:
        return "active"
    if name == cluster.fencing_node:
        return "fencing"
    if name == cluster.candidate:
        return "candidate"
    return "standby"
