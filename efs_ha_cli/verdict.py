"""The verdict of `efs-ha status`: one word an on-call engineer can act on, the reasons, and a next step for each.

HEALTHY  the active node serves (fresh lease renewal, MinIO up, EFS writable), every VIP route points at it, a
         healthy standby can take over, automatic failover is on and the checker is probing.
DEGRADED clients are served, but something would turn the next failure into an outage or needs a human: no
         failover target, maintenance on, the checker silent, a route table sending the VIP elsewhere.
DOWN     clients are not served right now: no active node (a takeover is fencing), the active node down or
         failing its probe, MinIO not serving there, or no route table sending the VIP to it.
UNKNOWN  cannot tell: the checker has not initialised the cluster yet, or the VIP routes cannot be read.

A pure function of the status report (failover_lambda.status plus efs_ha_cli.cluster's additions): nothing here
calls AWS. Node liveness is the report's (a lease renewal observed on this machine's clock); the checker's
liveness compares its recorded probe time (its own clock) with this machine's, with an allowance for skew.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from efs_ha_cli.errors import EXIT_DOWN, EXIT_FAILED, EXIT_OK, EXIT_UNKNOWN

HEALTHY = "HEALTHY"
DEGRADED = "DEGRADED"
DOWN = "DOWN"
UNKNOWN = "UNKNOWN"
EXIT_CODES = {HEALTHY: EXIT_OK, DEGRADED: EXIT_FAILED, DOWN: EXIT_DOWN, UNKNOWN: EXIT_UNKNOWN}
_RANK = {HEALTHY: 0, DEGRADED: 1, UNKNOWN: 2, DOWN: 3}

# The checker records its probe time every 5 s (failover_lambda.checker.PROBE_RECORD_SECONDS); invocations hand
# over every minute within a few seconds; this machine's clock may differ from Lambda's by a few seconds more.
CHECKER_SILENT_SECONDS = 30.0
# An older checker records only the end of each ~1-minute invocation (`last_run_at`).
CHECKER_RUN_SILENT_SECONDS = 150.0
NOT_INITIALISED = "not initialised yet (the checker starts within a minute)"

# `efs-ha status --require-healthy`: the pipeline's gate exits with the code of the worst problem (the order
# below), so a deploy job can tell why it refused. 3 stays "cannot tell"; none collides with another exit code.
FENCING = "fencing"  # a takeover is fencing the old node: no active node, replacing nodes now is unsafe
ACTIVE_DOWN = "active_down"  # the active node is down or failing, or no route table sends the VIP to it
NO_STANDBY = "no_standby"  # no healthy standby: replacing the active node would be an outage
MAINTENANCE = "maintenance"  # automatic failover is suspended
CHECKER = "checker"  # the checker is silent or never probed: nobody would fail over
ROUTE_DRIFT = "route_drift"  # some route tables send the VIP elsewhere
CANNOT_TELL = "unknown"
GATE_EXIT_CODES = {FENCING: 10, ACTIVE_DOWN: 11, CANNOT_TELL: EXIT_UNKNOWN, NO_STANDBY: 12, MAINTENANCE: 13,
                   CHECKER: 14, ROUTE_DRIFT: 15}
_GATE_ORDER = list(GATE_EXIT_CODES)


@dataclass(frozen=True)
class Finding:
    severity: str
    text: str
    hint: str | None = None
    kind: str = CANNOT_TELL  # which gate problem it is (GATE_EXIT_CODES)


@dataclass
class Verdict:
    state: str = HEALTHY
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, text: str, hint: str | None = None, *, kind: str) -> None:
        self.findings.append(Finding(severity, text, hint, kind))
        if _RANK[severity] > _RANK[self.state]:
            self.state = severity

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.state]

    @property
    def line(self) -> str:
        """`HEALTHY`, or `DEGRADED (no failover target: ...; maintenance on for 5 min)`, worst first."""
        if not self.findings:
            return self.state
        ordered = sorted(self.findings, key=lambda f: -_RANK[f.severity])
        return f"{self.state} ({'; '.join(f.text for f in ordered)})"

    @property
    def blocked_by(self) -> list[str]:
        """The gate problems found, worst first (each once)."""
        return sorted({f.kind for f in self.findings}, key=_GATE_ORDER.index)

    @property
    def gate_exit_code(self) -> int:
        blocked = self.blocked_by
        return GATE_EXIT_CODES[blocked[0]] if blocked else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.state, "verdict_line": self.line, "exit_code": self.exit_code,
                "reasons": [{"severity": f.severity, "text": f.text, "hint": f.hint} for f in self.findings],
                "hints": [f.hint for f in self.findings if f.hint],
                "gate": {"exit_code": self.gate_exit_code, "blocked_by": self.blocked_by}}


def seconds(value: float) -> str:
    """`19 s`, `5 min`, `2 h 5 min`: ages for people."""
    value = max(0.0, value)
    if value < 100:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s".replace(".0 s", " s")
    minutes = value / 60
    if minutes < 100:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60)} min"


def clock_time(epoch_seconds: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch_seconds))


def checker_liveness(report: dict[str, Any], now: float) -> dict[str, Any]:
    """`not_initialised`, `probing`, `silent` or `never` (the cluster item exists but no probe was recorded),
    with the age of the last record on this machine's clock (the checker's clock wrote it)."""
    probe, run = report.get("checker_last_probe_at"), report.get("checker_last_run_at")
    if not report.get("initialised", True):
        if probe or run:
            age = now - max(probe or 0.0, run or 0.0)
            return {"state": "silent", "age_seconds": round(age, 1), "source": "last_probe_at",
                    "text": f"checker ran {seconds(age)} ago but the cluster item is missing"}
        return {"state": "not_initialised", "age_seconds": None, "source": None, "text": NOT_INITIALISED}
    if probe:
        stamp, limit, source = probe, CHECKER_SILENT_SECONDS, "last_probe_at"
    elif run:
        stamp, limit, source = run, CHECKER_RUN_SILENT_SECONDS, "last_run_at"
    else:
        return {"state": "never", "age_seconds": None, "source": None,
                "text": "checker has never recorded a probe"}
    age = max(0.0, now - stamp)  # a checker clock ahead of ours: "0 s ago"
    if age <= limit:
        what = "probing" if source == "last_probe_at" else "ran"
        return {"state": "probing", "age_seconds": round(age, 1), "source": source,
                "text": f"checker {what}, {seconds(age)} ago"}
    return {"state": "silent", "age_seconds": round(age, 1), "source": source,
            "text": f"checker silent for {seconds(age)}"}


def _agent_hint(node: dict[str, Any], name: str, region: str | None) -> str:
    instance = node.get("instance_id") or f"<{name}'s instance>"
    where = f" --region {region}" if region else ""
    if node.get("instance_state") not in (None, "running", "unknown"):
        return f"{name}'s instance {instance} is {node['instance_state']}: start it (aws ec2 start-instances " \
               f"--instance-ids {instance}{where}); its agent then reports in"
    return (f"look at {name}'s agent: aws ssm start-session --target {instance}{where}, then "
            f"`sudo journalctl -u efs-ha-agent -u minio -n 100`")


def last_seen_age(node: dict[str, Any]) -> tuple[float, bool] | None:
    """How long ago the node was last seen, and whether that age comes from the node's own clock (a renewal seen
    on this machine's clock is preferred; the node's heartbeat time only stands in for display)."""
    renewal = node.get("lease_renewal_age_seconds")
    if renewal is not None:
        return float(renewal), False
    heartbeat = node.get("last_heartbeat_age_seconds")
    return (float(heartbeat), True) if heartbeat is not None else None


def _last_seen(node: dict[str, Any]) -> str:
    seen = last_seen_age(node)
    if seen is not None:
        age, node_clock = seen
        if node_clock:
            return f"no lease renewal seen; last heartbeat {seconds(age)} ago (node clock)"
        return f"no lease renewal seen for {seconds(age)}"
    return "no node item" if node.get("lease_seq") is None and node.get("heartbeat_at") is None else \
        "no lease renewal seen"


def standby_problem(name: str, node: dict[str, Any], now: float, region: str | None) -> tuple[str, str] | None:
    """Why `name` cannot take over automatically (text, next step); None for a healthy standby."""
    if not node.get("live"):
        return f"{name} {_last_seen(node)}", _agent_hint(node, name, region)
    if node.get("held_back"):
        until = node.get("held_back_until")
        when = f" until {clock_time(until)} (in {seconds(until - now)})" if until else ""
        return (f"{name} held back{when}: MinIO failed there",
                f"the hold only stops automatic failover: `efs-ha switchover --to {name}` overrides it")
    if node.get("healthy"):
        return None
    problems = "; ".join(node.get("problems") or ["unhealthy"])
    if any(p.startswith("EFS") for p in node.get("problems") or []):
        hint = f"on {name}: `systemctl status mnt-efs.mount`, the EFS security group and mount targets"
    elif any(p.startswith("watchdog") for p in node.get("problems") or []):
        hint = f"on {name}: the watchdog device (`lsmod | grep softdog`, `journalctl -u efs-ha-agent`)"
    else:
        hint = _agent_hint(node, name, region)
    return f"{name} {problems}", hint


def judge(report: dict[str, Any], now: float) -> Verdict:
    verdict = Verdict()
    cluster, nodes = report["cluster"], report["nodes"]
    region = (report.get("stack") or {}).get("region")
    checker = report.get("checker") or checker_liveness(report, now)
    if not report.get("initialised", True):
        verdict.add(UNKNOWN, NOT_INITIALISED if checker["state"] == "not_initialised" else checker["text"],
                    "wait a minute; if it stays, read the checker function's logs (CloudWatch Logs) and its "
                    "CheckerNotRunning alarm", kind=CANNOT_TELL)
        return verdict
    _judge_active(verdict, report, now, region)
    _judge_routes(verdict, report)
    if cluster["phase"] == "stable" and cluster["active"]:
        _judge_standbys(verdict, nodes, cluster["active"], now, region)
    if cluster["maintenance"]:
        since = cluster.get("maintenance_changed_at")
        how_long = f" for {seconds(now - since)}" if since else ""
        verdict.add(DEGRADED, f"maintenance on{how_long}: automatic failover and drift repair suspended",
                    "`efs-ha maintenance off` when the work is done", kind=MAINTENANCE)
    if checker["state"] in ("silent", "never"):
        verdict.add(DEGRADED, f"{checker['text']}: no automatic failover, no drift repair",
                    "read the checker function's logs (CloudWatch Logs) and its CheckerNotRunning/CheckerFailing "
                    "alarms; its schedule rule must be enabled", kind=CHECKER)
    return verdict


def _judge_active(verdict: Verdict, report: dict[str, Any], now: float, region: str | None) -> None:
    cluster, nodes = report["cluster"], report["nodes"]
    active = cluster["active"]
    if cluster["phase"] != "stable" or not active:
        fencing = cluster.get("fencing_node") or "?"
        started = cluster.get("changed_at")
        for_how_long = f" for {seconds(now - started)}" if started else ""
        verdict.add(DOWN, f"no active node: takeover fencing {fencing}{for_how_long}, epoch {cluster['epoch']}, "
                          f"candidate {cluster.get('candidate') or '?'}",
                    f"the checker completes it; if {fencing} is really down and fencing never completes, "
                    f"`efs-ha confirm-fenced {fencing} --yes`", kind=FENCING)
        return
    node = nodes.get(active)
    if node is None:
        verdict.add(DOWN, f"active node {active} is not one of the configured nodes", kind=ACTIVE_DOWN)
        return
    threshold = report.get("failure_threshold") or 0
    fails = node.get("consecutive_failures") or 0
    countdown = f" (fails {fails}/{threshold}" + (", failover then" if threshold else "") + ")" if fails else ""
    if not node.get("live"):
        verdict.add(DOWN, f"active {active} down: {_last_seen(node)}{countdown}", _agent_hint(node, active, region),
                    kind=ACTIVE_DOWN)
        return
    if node.get("problems"):
        verdict.add(DOWN, f"active {active} failing: {'; '.join(node['problems'])}{countdown}",
                    _agent_hint(node, active, region), kind=ACTIVE_DOWN)
        return
    if not node.get("serving") or not node.get("minio_ok"):
        verdict.add(DOWN, f"active {active}: MinIO not serving yet (start grace after the role change)",
                    "wait a few seconds; if it stays, `sudo journalctl -u minio` on the node", kind=ACTIVE_DOWN)
        return
    if node.get("leaving"):
        # A handover is a takeover about to happen: the gate waits for it like for a fencing.
        verdict.add(DEGRADED, f"active {active} is shutting down: the checker is handing the role over",
                    "wait for the switchover (`efs-ha status --require-healthy --wait`)", kind=FENCING)


def _judge_routes(verdict: Verdict, report: dict[str, Any]) -> None:
    routes = report["route_tables"]
    if not routes:
        return
    if not all(route.get("known", True) for route in routes):
        verdict.add(UNKNOWN, "VIP routes unreadable (EC2 DescribeRouteTables failed): cannot tell where the VIP "
                             "goes", "check the caller's ec2:DescribeRouteTables permission and EC2 throttling",
                    kind=CANNOT_TELL)
        return
    drifted = [route for route in routes if route["drift"]]
    if not drifted or not report["cluster"]["active"]:
        return
    names = ", ".join(_route_label(route) for route in drifted)
    hint = (f"the checker puts it back (not while maintenance is on); find who changed it: CloudTrail "
            f"ReplaceRoute/DeleteRoute events on {', '.join(r['route_table_id'] for r in drifted)}")
    if len(drifted) == len(routes):
        verdict.add(DOWN, f"no route table sends the VIP to {report['cluster']['active']} (drift in {names})", hint,
                    kind=ACTIVE_DOWN)
    else:
        verdict.add(DEGRADED, f"VIP route drift in {names}", hint, kind=ROUTE_DRIFT)


def _route_label(route: dict[str, Any]) -> str:
    where = route.get("target_node") or route.get("target_eni") or ("missing" if not route["present"] else "?")
    name = route.get("name")
    label = f"{name} ({route['route_table_id']})" if name else route["route_table_id"]
    return f"{label} -> {where}"


def _judge_standbys(verdict: Verdict, nodes: dict[str, Any], active: str, now: float, region: str | None) -> None:
    problems = []
    for name, node in nodes.items():
        if name == active:
            continue
        problem = standby_problem(name, node, now, region)
        if problem is None:
            return  # one healthy standby is a failover target
        problems.append(problem)
    if not problems:
        verdict.add(DEGRADED, "no failover target: no other node configured", kind=NO_STANDBY)
        return
    for text, hint in problems:
        verdict.add(DEGRADED, f"no failover target: {text}", hint, kind=NO_STANDBY)
