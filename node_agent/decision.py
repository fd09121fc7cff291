"""What MinIO on this node should do now: a pure function of what the agent observed.

Serve only while: the table names this node active (and this instance, when the item binds one), the phase is
stable, EFS is writable, the lease is valid and the watchdog (when required) can be armed. Anything else stops
MinIO (self-fencing) and names a structured stop reason (the node item's `stop_reason`).

START only when the cluster item binds the role to THIS instance (`active_instance` == own instance id): with the
role unbound, both instances of the active node (a deploy replacing it) would start. A MinIO that already serves
while the role is unbound keeps serving (an upgrade from an item written before the binding never stops it); the
checker always binds the role.

The lease is valid while `lease_age < lease_seconds`, where lease_age counts on the agent's monotonic clock from
the SEND time of the cluster GetItem of the last renewal (GetItem + conditional PutItem that both succeeded within
one heartbeat interval). The checker judges the lease on its own clock from when it saw `lease_seq` advance, which
is never earlier than that send time (docs/failover-design.md, "Lease, watchdog and one clock").

MinIO unhealthy while running is NOT restarted here: systemd restarts a crashed MinIO (Restart=on-failure,
bounded by StartLimitBurst), and meanwhile the agent reports `minio_restarting` so that the checker does not count
those probes (within its restart budget: restart in place first); a MinIO that answers unhealthy without being
restarted, or whose restarts the start limit refused, is reported (minio_ok=false) and the checker fails over
after its threshold. A MinIO that is not running at all on the active node is started again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

STABLE = "stable"

# stop_reason values (the node item contract; failover_lambda/model.py STOP_REASONS parses the same strings).
STOP_NONE = "none"
STOP_ROLE_LOST = "role_lost"
STOP_LEASE_LOST = "lease_lost"
STOP_EFS_FAILED = "efs_failed"
STOP_MINIO_FAILED = "minio_failed"
STOP_WATCHDOG_UNAVAILABLE = "watchdog_unavailable"
STOP_AGENT_STOPPED = "agent_stopped"
STOP_REASONS = (STOP_NONE, STOP_ROLE_LOST, STOP_LEASE_LOST, STOP_EFS_FAILED, STOP_MINIO_FAILED,
                STOP_WATCHDOG_UNAVAILABLE, STOP_AGENT_STOPPED)

# watchdog values (the node item's `watchdog`).
WATCHDOG_ARMED = "armed"
WATCHDOG_READY = "ready"
WATCHDOG_UNAVAILABLE = "unavailable"
WATCHDOG_OFF = "off"
WATCHDOG_STATES = (WATCHDOG_ARMED, WATCHDOG_READY, WATCHDOG_UNAVAILABLE, WATCHDOG_OFF)


UNBOUND_ROLE = "the role is not bound to an instance yet"


class Action(enum.Enum):
    START_MINIO = "start_minio"
    STOP_MINIO = "stop_minio"
    NOTHING = "nothing"


@dataclass(frozen=True)
class ClusterView:
    """The `cluster` item as this agent read it."""

    active: str | None
    epoch: int
    phase: str
    active_instance: str | None = None
    # While a takeover fences a node: that node and the instance being fenced (only its own report confirms it).
    fencing_node: str | None = None
    fencing_instance: str | None = None


@dataclass(frozen=True)
class Observation:
    me: str
    cluster: ClusterView | None  # None: the table has not been read (successfully) yet
    efs_ok: bool
    serving: bool  # MinIO is (or may be) running on this node
    minio_healthy: bool
    lease_age_seconds: float  # math.inf before the first renewal
    lease_seconds: float
    instance_id: str | None = None
    # The node's watchdog state: "unavailable" refuses the active role (watchdog: required and it cannot be armed).
    # The default keeps callers that do not model a watchdog (the checker's simulated agents) working unchanged.
    watchdog: str = WATCHDOG_OFF
    # The node is being shut down (the OS stop path asked for a handover): it serves on until the checker has
    # moved the role, and never takes the role again.
    leaving: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str  # human-readable, for the log and the node item's `detail`
    stop_reason: str = STOP_NONE  # why MinIO does not (or must not) run here; "none" when it may serve


def lease_valid(obs: Observation) -> bool:
    return obs.lease_age_seconds < obs.lease_seconds


def decide(obs: Observation) -> Decision:
    stop_or_stay = Action.STOP_MINIO if obs.serving else Action.NOTHING
    if not lease_valid(obs):
        return Decision(stop_or_stay, f"lease not valid ({obs.lease_age_seconds:.1f}s since the last renewal was "
                                      f"sent, lease {obs.lease_seconds:g}s)", STOP_LEASE_LOST)
    if obs.cluster is None:
        # Only reachable before the first read: a valid lease implies a successful read.
        return Decision(Action.NOTHING, "state table not read yet", STOP_NONE)
    if obs.leaving and not obs.serving:
        return Decision(Action.NOTHING, "shutting down: this node no longer takes the role", STOP_AGENT_STOPPED)
    role = _role_problem(obs, obs.cluster)
    if role:
        return Decision(stop_or_stay, role, _role_stop_reason(obs))
    if not obs.efs_ok:
        return Decision(stop_or_stay, "EFS not writable", STOP_EFS_FAILED)
    if obs.watchdog == WATCHDOG_UNAVAILABLE:
        return Decision(stop_or_stay, "watchdog required but unavailable: refusing the active role",
                        STOP_WATCHDOG_UNAVAILABLE)
    if not obs.serving:
        if not obs.cluster.active_instance or obs.cluster.active_instance != obs.instance_id:
            # Unbound: every instance of this node (the old and the new one during a deploy replacement) would
            # read itself as active. Start only once the checker has bound the role to this instance.
            return Decision(Action.NOTHING, UNBOUND_ROLE, STOP_ROLE_LOST)
        return Decision(Action.START_MINIO, f"active for epoch {obs.cluster.epoch}")
    if not obs.minio_healthy:
        return Decision(Action.NOTHING, "serving, MinIO unhealthy: reported, the checker decides")
    return Decision(Action.NOTHING, f"serving for epoch {obs.cluster.epoch}")


def _role_stop_reason(obs: Observation) -> str:
    """Why the role was lost, as far as this node can tell: only a MinIO that failed here is `minio_failed`."""
    if not obs.efs_ok:
        return STOP_EFS_FAILED
    if obs.serving and not obs.minio_healthy:
        return STOP_MINIO_FAILED
    return STOP_ROLE_LOST


def _role_problem(obs: Observation, cluster: ClusterView) -> str | None:
    if cluster.active != obs.me:
        return f"standby (active: {cluster.active or 'none'}, phase {cluster.phase}, epoch {cluster.epoch})"
    if cluster.phase != STABLE:
        return f"phase {cluster.phase} at epoch {cluster.epoch}"
    if cluster.active_instance and obs.instance_id != cluster.active_instance:
        # Another instance of this node (e.g. the one a deploy is replacing) holds the role.
        return f"the role is bound to instance {cluster.active_instance}, not {obs.instance_id}"
    return None
