"""Everything the operator sees: rich tables on stdout, progress on stderr, JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from efs_ha_cli.verdict import (
    DEGRADED,
    DOWN,
    HEALTHY,
    NOT_INITIALISED,
    UNKNOWN,
    clock_time,
    last_seen_age,
    seconds,
)
from efs_ha_cli.verify import StepResult, VerifyReport


def stdout_console() -> Console:
    # Built per call: click's test runner swaps sys.stdout, and piping must not get colour codes.
    return Console(file=sys.stdout, highlight=False)


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _yes_no(value: Any) -> str:
    if value is None:
        return "-"
    return "[green]yes[/]" if value else "[red]no[/]"


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


VERDICT_STYLE = {HEALTHY: "bold green", DEGRADED: "bold yellow", DOWN: "bold red", UNKNOWN: "bold magenta"}


def verdict_line(report: dict[str, Any]) -> str:
    state = report["verdict"]
    line = report["verdict_line"]
    rest = line[len(state):]
    return f"[{VERDICT_STYLE.get(state, 'bold')}]{state}[/]{escape(rest)}"


def status_view(report: dict[str, Any]) -> Group:
    parts: list[Any] = [verdict_line(report), _summary(report), _nodes_table(report), _routes_table(report)]
    hints = [hint for hint in report.get("hints", []) if hint]
    if hints:
        parts.append("[bold]Next steps[/]\n" + "\n".join(f"- {escape(hint)}" for hint in dict.fromkeys(hints)))
    return Group(*parts)


def _summary(report: dict[str, Any]) -> Table:
    cluster, stack = report["cluster"], report["stack"]
    now = report["checked_at"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Stack", f"{stack['name']} ({stack['region']}, {stack['status']})")
    grid.add_row("Virtual IP", report["vip"])
    checker = report.get("checker") or {}
    if not report.get("initialised", True):
        grid.add_row("Cluster", f"[magenta]{escape(NOT_INITIALISED)}[/]")
    else:
        grid.add_row("Active node", _active_cell(report))
        grid.add_row("Epoch / phase", f"{cluster['epoch']} / {cluster['phase']}")
        grid.add_row("Maintenance", _maintenance_cell(cluster, now))
        if cluster["changed_at"]:
            grid.add_row("Last change", f"{seconds(now - cluster['changed_at'])} ago: {escape(cluster['reason'])}")
    request = report.get("request")
    if request:
        taken = ", taken by the checker" if request.get("taken") else ""
        grid.add_row("Queued request", f"{escape(request['action'])} to {escape(str(request['target']))} "
                                       f"(id {request['request_id']}{taken})")
    if checker:
        style = {"probing": "green", "silent": "red", "never": "yellow"}.get(checker["state"], "magenta")
        grid.add_row("Checker", f"[{style}]{escape(checker['text'])}[/]")
    return grid


def _active_cell(report: dict[str, Any]) -> str:
    cluster = report["cluster"]
    active = cluster["active"]
    if not active:
        return (f"[yellow]none[/] (fencing {escape(cluster['fencing_node'] or '?')}, "
                f"candidate {escape(cluster['candidate'] or '?')})")
    node = report["nodes"].get(active, {})
    text = escape(active)
    if not node.get("live", True):
        text += " [red](down)[/]"
    fails, threshold = node.get("consecutive_failures") or 0, report.get("failure_threshold")
    if fails:
        text += f"  [yellow]fails {fails}/{threshold}[/] (the checker fails over at {threshold})"
    return text


def _maintenance_cell(cluster: dict[str, Any], now: float) -> str:
    if not cluster["maintenance"]:
        return "off"
    since = cluster.get("maintenance_changed_at")
    how_long = f" for {seconds(now - since)} (since {clock_time(since)})" if since else ""
    return f"[yellow]ON{how_long}: automatic failover suspended[/]"


def _last_seen_cell(node: dict[str, Any]) -> str:
    seen = last_seen_age(node)
    if seen is None:
        return "never seen"
    age, node_clock = seen
    return f"last seen {seconds(age)} ago{' (node clock)' if node_clock else ''}"


def _was(value: Any) -> str:
    """A down node's last-known value: never shown as if it were live."""
    return "-" if value is None else f"[dim]was {'yes' if value else 'no'}[/]"


def _nodes_table(report: dict[str, Any]) -> Table:
    table = Table(title="Nodes", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("Node", "Role", "Health", "Lease", "Skew", "EFS", "MinIO", "Serving"):
        # Only the problem list may wrap; short words stay whole.
        table.add_column(column, overflow="fold", no_wrap=column != "Health",
                         min_width=len("healthy") if column == "Health" else None)
    # Instance and ENI share a cell so the table fits 80 columns. "Lease" is the age of the last lease renewal
    # this CLI saw (its own clock); "Skew" the node's clock minus this machine's (display only).
    table.add_column("Instance / ENI", overflow="fold", min_width=len("eni-0123456789abcdef0"))
    now = report["checked_at"]
    for name, node in report["nodes"].items():
        live = node.get("live", True)
        active = node.get("assigned_role") == "active" or node["role"] == "active"
        # Agent-written text is escaped: a "[" in a detail must not be read as rich markup.
        health = "[green]healthy[/]" if node["healthy"] else f"[red]{escape('; '.join(node['problems']))}[/]"
        if not live:
            health += f"\n[dim]{_last_seen_cell(node)}; EFS, MinIO and Serving are its last report[/]"
        if node.get("held_back"):
            # Lost the role to a MinIO failure: the checker will not fail over to it for a while.
            until = node.get("held_back_until")
            when = f" until {clock_time(until)} (in {seconds(until - now)})" if until else ""
            health += f"\n[yellow]held back{when}: MinIO failed here; `efs-ha switchover --to {escape(name)}` " \
                      f"overrides[/]"
        if node.get("leaving") and live and active:
            # A leaving standby shows it among its problems; the active node is healthy while it hands over.
            health += "\n[yellow]shutting down: handing the role over[/]"
        state = "" if node["instance_state"] == "running" else f" ({node['instance_state']})"
        instance = f"{node['instance_id']}{state}\n{node['eni'] or 'no ENI'}" if node["instance_id"] else "-"
        skew = node.get("clock_skew_seconds")
        role = f"[red]down[/] (was {node['assigned_role']})" if not live and node.get("assigned_role") \
            not in (None, "standby") else ("[red]down[/]" if not live else node["role"])
        if not live:
            efs, minio, serving = _was(node["efs_ok"]), _was(node["minio_ok"]), _was(node["serving"])
        elif active:
            efs, minio, serving = _yes_no(node["efs_ok"]), _yes_no(node["minio_ok"]), _yes_no(node["serving"])
        else:
            # A standby's MinIO is stopped by design: neutral, not a failure.
            efs = _yes_no(node["efs_ok"])
            minio = "[red]running[/]" if node["serving"] and node["minio_ok"] else "[dim]stopped[/]"
            serving = "[red]yes[/]" if node["serving"] else "[dim]no[/]"
        table.add_row(name, role, health, _age(node.get("lease_renewal_age_seconds")),
                      "-" if skew is None else f"{skew:+.1f}s", efs, minio, serving, instance)
    return table


def _routes_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"VIP route {report['vip']}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False)
    for column in ("Route table", "Target ENI", "Node", "State"):
        table.add_column(column, overflow="fold")
    for route in report["route_tables"]:
        if not route.get("known", True):
            state = "[magenta]unknown[/] (EC2 unreadable)"
        elif route["drift"]:
            state = "[red bold]DRIFT[/] (not the active node's ENI)" if route["present"] else \
                "[red bold]DRIFT[/] (route missing)"
        else:
            state = "[green]ok[/]" if route["present"] else "missing"
        name = route.get("name")
        label = f"{escape(name)} ({route['route_table_id']})" if name else route["route_table_id"]
        table.add_row(label, route["target_eni"] or "-", route["target_node"] or "-", state)
    return table


def step_line(step: StepResult) -> str:
    mark = "[green]PASS[/]" if step.ok else ("[red]FAIL[/]" if step.fatal else "[yellow]WARN[/]")
    return f"{mark} {escape(step.name)}: {escape(step.detail)} ({step.seconds:.1f}s)"


def verify_summary(report: VerifyReport) -> str:
    verdict = "[green]verify passed[/]" if report.ok else "[red]verify FAILED[/]"
    return f"{verdict} in {report.seconds:.1f}s"


class ProgressView:
    """A live spinner + time budget on stderr; each state change is also printed as a line (CI logs)."""

    def __init__(self, progress: Progress, timeout: float) -> None:
        self._progress = progress
        self._task = progress.add_task("starting", total=timeout)

    def update(self, elapsed: float, detail: str) -> None:
        self._progress.update(self._task, description=escape(detail), completed=elapsed)
        self._progress.console.print(f"[dim]{elapsed:6.1f}s[/] {escape(detail)}")


@contextmanager
def progress_view(timeout: float) -> Iterator[ProgressView]:
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                        console=stderr_console(), transient=True)
    with progress:
        yield ProgressView(progress, timeout)
