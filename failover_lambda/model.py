"""Plain views of the state table items and of EC2; parsing lives here so logic never sees raw API shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from failover_lambda.settings import RESET_MARGIN_SECONDS

STABLE = "stable"
FENCING = "fencing"


def _num(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class ClusterState:
    """The `cluster` item. `active_instance`/`fencing_instance` bind the role to one instance of a node."""

    epoch: int
    phase: str
    active: str | None
    active_instance: str | None = None
    fencing_node: str | None = None
    fencing_instance: str | None = None
    candidate: str | None = None
    maintenance: bool = False
    changed_at: float = 0.0
    reason: str = ""
    # The epoch whose VIP routes were all written (0: none recorded). While it is behind `epoch` at a stable
    # phase, every cycle writes the VIP route in every table (blindly when the routes cannot be described).
    routes_epoch: int = 0
    # When `maintenance` was last set (the writer's wall clock: the checker's or an operator's; display only).
    maintenance_changed_at: float = 0.0

    @property
    def routes_pending(self) -> bool:
        return self.phase == STABLE and self.active is not None and self.routes_epoch < self.epoch

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ClusterState:
        return cls(
            epoch=int(_num(item.get("epoch"), 0)),
            phase=_str(item.get("phase")) or STABLE,
            active=_str(item.get("active")),
            active_instance=_str(item.get("active_instance")),
            fencing_node=_str(item.get("fencing_node")),
            fencing_instance=_str(item.get("fencing_instance")),
            candidate=_str(item.get("candidate")),
            maintenance=item.get("maintenance") is True,
            changed_at=_num(item.get("changed_at")),
            reason=_str(item.get("reason")) or "",
            routes_epoch=int(_num(item.get("routes_epoch"), 0)),
            maintenance_changed_at=_num(item.get("maintenance_changed_at")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active, "epoch": self.epoch, "phase": self.phase, "maintenance": self.maintenance,
            "routes_epoch": self.routes_epoch,
            "active_instance": self.active_instance, "fencing_node": self.fencing_node,
            "fencing_instance": self.fencing_instance, "candidate": self.candidate,
            "changed_at": self.changed_at, "reason": self.reason,
            "maintenance_changed_at": self.maintenance_changed_at or None,
        }


# Node item field values (docs/failover-design.md, "Node item"); node_agent/table.py writes them.
STOP_REASONS = ("none", "role_lost", "lease_lost", "efs_failed", "minio_failed", "watchdog_unavailable",
                "agent_stopped")
# Only this stop reason puts a node on the no-ping-pong hold (the node was fine, MinIO itself failed there).
HOLD_STOP_REASON = "minio_failed"
WATCHDOG_STATES = ("armed", "ready", "unavailable", "off")
WATCHDOG_ARMED = "armed"
WATCHDOG_READY = "ready"
UNKNOWN = "unknown"


def _positive(value: Any) -> float | None:
    """A positive number, else None (unknown)."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class NodeReport:
    """A `node#<name>` item, written only by that node's agent.

    Missing or malformed attributes parse conservatively: no `lease_seq` = no renewal can ever be observed;
    missing `serving` = may be serving; missing `watchdog` = not armed; missing `efs_ok` = not writable.
    `heartbeat_at` is the node's wall clock: display and skew metric only, never liveness.
    """

    name: str
    lease_seq: int | None
    heartbeat_at: float
    serving: bool
    seen_epoch: int
    stop_reason: str
    efs_ok: bool
    minio_ok: bool
    watchdog: str
    watchdog_timeout: float | None
    instance_id: str | None
    eni_id: str | None
    private_ip: str | None
    detail: str
    # G as the node's own config has it (None: not reported, so an expired lease proves nothing about it).
    lease_seconds: float | None = None
    # The automatic restart of a crashed MinIO in progress on the node (1..its StartLimitBurst), 0 when none is
    # (also: not reported, or malformed). See health.restart_excused.
    minio_restarting: int = 0
    # The node is being shut down and asks for a planned switchover; it never takes the role again.
    leaving: bool = False
    # When the writing instance booted (its clock): display only; agents use it to pick the item's owner.
    launched_at: float | None = None

    @classmethod
    def from_item(cls, name: str, item: dict[str, Any]) -> NodeReport:
        stop_reason = _str(item.get("stop_reason"))
        watchdog = _str(item.get("watchdog"))
        return cls(
            name=name,
            lease_seq=_int_or_none(item.get("lease_seq")),
            heartbeat_at=_num(item.get("heartbeat_at")),
            # Unknown means "may be serving": fencing must never be confirmed by a missing attribute.
            serving=item.get("serving") is not False,
            seen_epoch=int(_num(item.get("seen_epoch"), 0)),
            stop_reason=stop_reason if stop_reason in STOP_REASONS else UNKNOWN,
            efs_ok=item.get("efs_ok") is True,
            minio_ok=item.get("minio_ok") is True,
            watchdog=watchdog if watchdog in WATCHDOG_STATES else UNKNOWN,
            watchdog_timeout=_positive(item.get("watchdog_timeout")),
            instance_id=_str(item.get("instance_id")),
            eni_id=_str(item.get("eni_id")),
            private_ip=_str(item.get("private_ip")),
            detail=_str(item.get("detail")) or "",
            lease_seconds=_positive(item.get("lease_seconds")),
            minio_restarting=int(_positive(item.get("minio_restarting")) or 0),
            leaving=item.get("leaving") is True,
            launched_at=_positive(item.get("launched_at")),
        )

    def watchdog_enforces(self, max_timeout: float) -> bool:
        """The node's last report promises a watchdog that resets it within `max_timeout` s of a frozen agent.

        `armed` always qualifies. `ready` (tested, disarmed) only when the same report says serving=false: such
        a node arms before it can start MinIO. A serving node reporting `ready` may have a MinIO that an agent
        restart left running after its device test disarmed the watchdog: nothing would reset that node."""
        if self.watchdog_timeout is None or self.watchdog_timeout > max_timeout:
            return False
        return self.watchdog == WATCHDOG_ARMED or (self.watchdog == WATCHDOG_READY and not self.serving)

    def lease_expiry_fences(self, max_watchdog_timeout: float, deadline: float) -> bool:
        """Whether a lease of this node that expired on the checker's clock (no renewal observed for
        `deadline` s) proves that it no longer serves: its watchdog enforces (above) and the node's OWN
        lease_seconds + 2 x watchdog_timeout + R fits in `deadline`. A node running an older config during a
        rolling change (or one that does not report its lease) is not trusted beyond what it enforces."""
        if not self.watchdog_enforces(max_watchdog_timeout):
            return False
        if self.lease_seconds is None or self.watchdog_timeout is None:
            return False
        return self.lease_seconds + 2 * self.watchdog_timeout + RESET_MARGIN_SECONDS <= deadline + 1e-9



@dataclass(frozen=True)
class CheckerState:
    """The `checker` item: consecutive failed probes per node survive across invocations."""

    failures: dict[str, int] = field(default_factory=dict)
    failing_since: dict[str, float] = field(default_factory=dict)
    alerted_at: dict[str, float] = field(default_factory=dict)
    last_run_at: float = 0.0
    # node -> when its last failed probe was (checker wall clock): an old count restarts at 1.
    last_failed_at: dict[str, float] = field(default_factory=dict)
    # node -> when it lost the role because MinIO failed there (the node itself was fine).
    service_failed_at: dict[str, float] = field(default_factory=dict)
    # The checker's wall clock at a recent probe cycle (recorded at most every PROBE_RECORD_SECONDS): its
    # liveness for operators, never a decision input. 0: never recorded.
    last_probe_at: float = 0.0

    def held_back(self, node: str, now: float, hold_seconds: float) -> bool:
        """True while `node` may not be an automatic failover target (its MinIO failed there recently)."""
        return now - self.service_failed_at.get(node, float("-inf")) < hold_seconds

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> CheckerState:
        def number_map(key: str) -> dict[str, float]:
            raw = item.get(key)
            return {str(k): _num(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

        return cls(
            failures={k: int(v) for k, v in number_map("failures").items()},
            failing_since=number_map("failing_since"),
            alerted_at=number_map("alerted_at"),
            last_run_at=_num(item.get("last_run_at")),
            service_failed_at=number_map("service_failed_at"),
            last_failed_at=number_map("last_failed_at"),
            last_probe_at=_num(item.get("last_probe_at")),
        )


@dataclass(frozen=True)
class Request:
    """A queued operator action (`request` item). `requested_at` is the operator's clock: display only.
    `taken_at` (checker clock) is set by the conditional write that claims it; a claimed request is the
    checker's and can no longer be withdrawn."""

    action: str
    target: str | None
    requested_at: float
    request_id: str
    taken_at: float | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Request:
        return cls(
            action=_str(item.get("action")) or "",
            target=_str(item.get("target")),
            requested_at=_num(item.get("requested_at")),
            request_id=_str(item.get("request_id")) or "",
            taken_at=_num(item.get("taken_at")) if "taken_at" in item else None,
        )


@dataclass(frozen=True)
class LoopState:
    """The `loop` item: which invocation runs the probe loop (failover_lambda/loop_lease.py).

    `expires_at` is the holder's wall clock at its last renewal plus LOOP_LEASE_SECONDS; a contender compares it
    with its own wall clock. `successor` is an invocation waiting for the loop to be handed over to it.
    `last_probe_at` (holder's wall clock) is its latest probe as of its last renewal, hand-over or release."""

    holder: str | None = None
    expires_at: float = 0.0
    successor: str | None = None
    last_probe_at: float = 0.0

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LoopState:
        return cls(holder=_str(item.get("holder")), expires_at=_num(item.get("expires_at")),
                   successor=_str(item.get("successor")), last_probe_at=_num(item.get("last_probe_at")))


@dataclass(frozen=True)
class Snapshot:
    """Everything the table holds, from one consistent read."""

    cluster: ClusterState | None
    nodes: dict[str, NodeReport]
    checker: CheckerState
    request: Request | None
    loop: LoopState = field(default_factory=LoopState)


UNKNOWN_STATE = "unknown"


@dataclass(frozen=True)
class Instance:
    """A node's instance: from EC2, or (EC2 unreadable) from the node's own item with state "unknown"."""

    node: str
    instance_id: str
    state: str
    launch_time: float
    eni: str | None
    private_ip: str | None

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class VipRoute:
    """The VIP /32 route of one route table; `target_eni` is None when the route is missing or not an ENI."""

    route_table_id: str
    present: bool
    target_eni: str | None
    target_instance: str | None


@dataclass(frozen=True)
class Ec2View:
    """What EC2 said. A part whose Describe call failed is "unknown" (`*_known` False, empty), never "gone":
    decisions that the state table supports go on without it."""

    # node name -> its non-terminated instances, best first (running first, then newest launch)
    instances: dict[str, tuple[Instance, ...]]
    # route table id -> VIP route; a listed table that EC2 does not know is absent
    routes: dict[str, VipRoute]
    fetched_at: float  # monotonic
    instances_known: bool = True
    routes_known: bool = True
    errors: tuple[str, ...] = ()

    def instance_of(self, node: str | None, bound_id: str | None = None) -> Instance | None:
        """The instance of `node`: the bound one if given (None if it is gone), else the best one."""
        candidates = self.instances.get(node or "", ())
        if bound_id is not None:
            return next((i for i in candidates if i.instance_id == bound_id), None)
        return candidates[0] if candidates else None

    def locate(self, node: str | None, report: NodeReport | None, bound_id: str | None = None) -> Instance | None:
        """The instance of `node` from EC2 when readable; else from the node's own item (instance_id, eni_id,
        private_ip; state unknown: only a fresh lease renewal says it runs)."""
        if self.instances_known:
            return self.instance_of(node, bound_id)
        if node is None or report is None or report.instance_id is None:
            return None
        if bound_id is not None and report.instance_id != bound_id:
            return None
        return Instance(node=node, instance_id=report.instance_id, state=UNKNOWN_STATE, launch_time=0.0,
                        eni=report.eni_id, private_ip=report.private_ip)

    def node_of_eni(self, eni: str | None) -> str | None:
        for node, instances in self.instances.items():
            if any(i.eni == eni for i in instances if eni):
                return node
        return None
