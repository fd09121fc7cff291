"""Lease tracking on ONE clock: the checker's own monotonic clock, within one invocation.

After each read of the table returns, a `lease_seq` higher than the highest one seen so far is an observed
renewal at the checker's current (monotonic) time. The item was written before the read returned, so the node
sent that renewal no later than the observation; the node's own timestamps (`heartbeat_at`) are never used to
shorten a lease or to call a node fresh, only to report its clock skew.

- first sighting of a node (or of a new instance of it): recorded, but not *fresh*;
- fresh: a renewal observed within HEARTBEAT_STALE_SECONDS (S);
- silent for: seconds since the last observation (the last renewal, or the first sighting);
- lease expired: silent for at least LEASE_DEADLINE_SECONDS (D).
A lower or equal `lease_seq` (a write the node's client gave up on and DynamoDB applied late, or a rewound
item) is not a renewal and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from failover_lambda.clock import Clock
from failover_lambda.model import NodeReport


@dataclass
class LeaseEntry:
    instance_id: str | None
    seq: int | None  # highest lease_seq seen
    first_seen: float  # monotonic
    last_observed: float  # monotonic: the last observed renewal, or the first sighting
    renewed_at: float | None = None  # monotonic: the last observed renewal (None: none yet)
    skew_seconds: float | None = None  # heartbeat_at - checker wall clock, at the last observed renewal


class LeaseTracker:
    def __init__(self, clock: Clock, stale_seconds: float, deadline_seconds: float) -> None:
        self._clock = clock
        self._stale = stale_seconds
        self._deadline = deadline_seconds
        self._entries: dict[str, LeaseEntry] = {}

    def observe(self, reports: Iterable[NodeReport]) -> list[str]:
        """Record one read's node items; call it right after the read returned. Returns the nodes whose
        renewal was observed in this read."""
        mono, wall = self._clock.monotonic(), self._clock.now()
        renewed: list[str] = []
        for report in reports:
            entry = self._entries.get(report.name)
            if entry is None or entry.instance_id != report.instance_id:
                # First sighting (or another instance of the node now writes the item): not fresh yet.
                self._entries[report.name] = LeaseEntry(report.instance_id, report.lease_seq, mono, mono)
                continue
            if report.lease_seq is not None and (entry.seq is None or report.lease_seq > entry.seq):
                entry.seq = report.lease_seq
                entry.last_observed = entry.renewed_at = mono
                entry.skew_seconds = report.heartbeat_at - wall if report.heartbeat_at else None
                renewed.append(report.name)
        return renewed

    def entry(self, node: str) -> LeaseEntry | None:
        return self._entries.get(node)

    def fresh(self, node: str) -> bool:
        entry = self._entries.get(node)
        return bool(entry and entry.renewed_at is not None
                    and self._clock.monotonic() - entry.renewed_at < self._stale)

    def renewal_seen(self, node: str) -> bool:
        entry = self._entries.get(node)
        return bool(entry and entry.renewed_at is not None)

    def silent_for(self, node: str) -> float:
        """Seconds since the last observation of `node` (renewal or first sighting); inf if never seen."""
        entry = self._entries.get(node)
        return math.inf if entry is None else max(0.0, self._clock.monotonic() - entry.last_observed)

    def renewal_age(self, node: str) -> float | None:
        entry = self._entries.get(node)
        if entry is None or entry.renewed_at is None:
            return None
        return max(0.0, self._clock.monotonic() - entry.renewed_at)

    def expired(self, node: str) -> bool:
        return self.silent_for(node) >= self._deadline

    def until_expiry(self, node: str) -> float:
        return max(0.0, self._deadline - self.silent_for(node))

    def skew(self, node: str) -> float | None:
        entry = self._entries.get(node)
        return entry.skew_seconds if entry else None
