"""Measurements of one scenario run, computed from the timeline after the fact."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from drill.timeline import Timeline

# The VPC-router mirror polls moto every 0.1 s; a client may reach the old target for that long after a change.
ROUTE_LAG_SECONDS = 1.0


@dataclass
class Window:
    fault_at: float
    recovered_at: float
    epoch_before: int
    old_active: str


def detection_seconds(timeline: Timeline, window: Window) -> tuple[float | None, float | None]:
    """Fault -> takeover begun (epoch grows), and takeover begun -> the client's route names the new node."""
    with timeline.lock:
        begun = next((c.t for c in timeline.cluster if c.t >= window.fault_at and c.epoch > window.epoch_before),
                     None)
        if begun is None:
            return None, None
        moved = next((t for t, node in timeline.table_route
                      if t >= begun and node not in (None, window.old_active)), None)
    return begun - window.fault_at, (moved - begun) if moved is not None else None


def rto_seconds(ops: list[dict[str, Any]], window: Window) -> float | None:
    """Longest time without a good client response that ends after the fault: from the last good response
    before the outage to the first good one after it. None if no good response came back at all."""
    good = sorted(op["t1"] for op in ops if op.get("ok") == 1 and op["t1"] <= window.recovered_at)
    before = [t for t in good if t <= window.fault_at]
    after = [t for t in good if t > window.fault_at]
    if not after:
        return None
    points = ([before[-1]] if before else [window.fault_at]) + after
    return max(b - a for a, b in itertools.pairwise(points))


def serving_intervals(samples: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """Conservative: a run of 'answering' samples counts from the sample before it to the sample after it."""
    intervals = []
    start: float | None = None
    previous = samples[0][0] if samples else 0.0
    for index, (t, up) in enumerate(samples):
        if up and start is None:
            start = previous if index else t
        elif not up and start is not None:
            intervals.append((start, t))
            start = None
        previous = t
    if start is not None:
        intervals.append((start, samples[-1][0]))
    return intervals


def dual_active(timeline: Timeline, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, float]]:
    """Overlaps of any two nodes' serving intervals (each node sampled on its own loopback every ~50 ms)."""
    with timeline.lock:
        series = [list(samples) for samples in timeline.samples.values()]
    overlaps = []
    for first, second in itertools.combinations([serving_intervals(s) for s in series], 2):
        for a0, a1 in first:
            for b0, b1 in second:
                start, end = max(a0, b0, since), min(a1, b1, until)
                if start < end:
                    overlaps.append((start, end))
    return sorted(overlaps)


def handover_gap(timeline: Timeline, window: Window) -> float | None:
    """From the old node's last answer to the new node's first one: how far apart the two servers were."""
    with timeline.lock:
        others = [(t, node) for node, series in timeline.samples.items() if node != window.old_active
                  for t, up in series if up and window.fault_at <= t <= window.recovered_at]
        old = list(timeline.samples.get(window.old_active, []))
    if not others:
        return None
    first_new = min(others)[0]
    last_old = max((t for t, up in old if up and t <= first_new), default=None)
    return None if last_old is None else first_new - last_old


def largest_probe_gap(scans: list[float]) -> float | None:
    """The longest interval between two consecutive probes (the checker's Scans), whichever runs made them."""
    ordered = sorted(scans)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=None)


def vip_violations(timeline: Timeline, since: float, until: float) -> list[dict[str, Any]]:
    """Client probes answered by a node that the client's route table did not name at that time."""
    with timeline.lock:
        probes = [(t, node) for t, node in timeline.identity if node and since <= t <= until]
        history = list(timeline.table_route)
    bad = []
    for t, node in probes:
        earlier = [n for when, n in history if when <= t - ROUTE_LAG_SECONDS]
        allowed = set(earlier[-1:]) | {n for when, n in history if t - ROUTE_LAG_SECONDS < when <= t}
        if node not in allowed:
            bad.append({"t": t, "reached": node, "table_named": sorted(str(n) for n in allowed)})
    return bad
