"""Probe verdicts, as pure functions of the table and EC2 views (plus the optional MinIO HTTP probe)."""

from __future__ import annotations

import urllib.error
import urllib.request

from failover_lambda.model import ClusterState, Instance, NodeReport
from failover_lambda.settings import Settings

HTTP_TIMEOUT_SECONDS = 1.0


def node_problems(settings: Settings, now: float, report: NodeReport | None,
                  instance: Instance | None) -> list[str]:
    """Why a node cannot hold the role. Empty = healthy standby: agent alive, EFS writable, instance running.

    MinIO is not required: it runs only on the active node.
    """
    problems: list[str] = []
    if instance is None:
        problems.append("no instance")
    elif not instance.running:
        problems.append(f"instance {instance.instance_id} is {instance.state}")
    elif instance.eni is None:
        problems.append(f"instance {instance.instance_id} has no primary network interface")
    if report is None:
        problems.append("no heartbeat")
        return problems
    if report.age(now) >= settings.heartbeat_stale_seconds:
        problems.append(f"heartbeat {report.age(now):.1f}s old")
    if instance and report.instance_id and report.instance_id != instance.instance_id:
        problems.append(f"heartbeat comes from {report.instance_id}, not {instance.instance_id}")
    if not report.efs_ok:
        problems.append(f"EFS not writable ({report.detail or 'no detail'})")
    return problems


def active_problems(settings: Settings, now: float, cluster: ClusterState, report: NodeReport | None,
                    instance: Instance | None, http_ok: bool | None) -> list[str]:
    """A failed probe of the active node: any node problem, or MinIO down once the start grace has passed."""
    problems = node_problems(settings, now, report, instance)
    if report is None or now - cluster.changed_at < settings.minio_start_grace_seconds:
        return problems
    if not report.serving:
        problems.append("MinIO not running")
    elif not report.minio_ok:
        problems.append("MinIO health check failing")
    if http_ok is False:
        problems.append("MinIO HTTP probe failed")
    return problems


def http_probe(ip: str, port: int, timeout: float = HTTP_TIMEOUT_SECONDS) -> bool:
    """GET /minio/health/live from inside the VPC; any error or non-200 is a failed probe."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/minio/health/live", timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def service_only(problems: list[str]) -> bool:
    """The node is fine and only MinIO failed on it (it would likely fail the same way again right away)."""
    return bool(problems) and all(problem.startswith("MinIO ") for problem in problems)
