"""Everything the drill observed, time-stamped with the one wall clock all its processes share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClusterSample:
    t: float
    epoch: int
    phase: str
    active: str | None


@dataclass
class Timeline:
    lock: threading.Lock = field(default_factory=threading.Lock)
    samples: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # node -> (t, S3 answering)
    cluster: list[ClusterSample] = field(default_factory=list)  # on every change
    table_route: list[tuple[float, str | None]] = field(default_factory=list)  # client's table -> node, on change
    applied_route: list[tuple[float, str | None]] = field(default_factory=list)  # client namespace, on change
    routes_all: dict[str, str | None] = field(default_factory=dict)  # latest: table -> node
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # latest heartbeat items
    lease_progress: dict[str, Any] = field(default_factory=dict)  # node -> latest lease_seq
    renewed_at: dict[str, float] = field(default_factory=dict)  # node -> drill time lease_seq last grew
    skew: dict[str, float] = field(default_factory=dict)  # node -> its heartbeat_at minus the drill's clock
    stop_reasons: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # node -> changes
    ops: list[dict[str, Any]] = field(default_factory=list)  # client operations
    identity: list[tuple[float, str | None]] = field(default_factory=list)  # which node the VIP reached
    events: list[tuple[float, str]] = field(default_factory=list)

    def sample(self, node: str, t: float, up: bool) -> None:
        with self.lock:
            self.samples.setdefault(node, []).append((t, up))

    def event(self, t: float, text: str) -> None:
        with self.lock:
            self.events.append((t, text))

    def latest_cluster(self) -> ClusterSample | None:
        with self.lock:
            return self.cluster[-1] if self.cluster else None

    def answering(self, node: str, since: float) -> bool | None:
        """The node's latest sample after `since`, or None if none yet."""
        with self.lock:
            series = self.samples.get(node, [])
            return series[-1][1] if series and series[-1][0] >= since else None
