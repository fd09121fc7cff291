"""What MinIO on this node should do now: a pure function of what the agent observed.

Serve only while: the table names this node active (and this instance, when the item binds one), the phase is
stable, EFS is writable, and the lease is valid. Anything else stops MinIO (self-fencing).

The lease is valid while `lease_age + lease_margin < lease_seconds`, where lease_age counts from the start of
the last heartbeat write that succeeded in a tick whose cluster read also succeeded. The checker treats the
node as fenced once `heartbeat_at + lease_seconds < now`; the margin (default: one heartbeat interval + 1 s)
leaves room for the stop itself, so MinIO is down before the checker's view of the lease ends.

MinIO unhealthy while running is NOT restarted here: systemd restarts a crashed MinIO (Restart=on-failure,
bounded by StartLimitBurst); a MinIO that answers unhealthy is reported (minio_ok=false) and the checker fails
over after its threshold. A MinIO that is not running at all on the active node is started again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

STABLE = "stable"


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


@dataclass(frozen=True)
class Observation:
    me: str
    cluster: ClusterView | None  # None: the table could not be read this tick
    efs_ok: bool
    serving: bool  # MinIO is (or may be) running on this node
    minio_healthy: bool
    lease_age_seconds: float  # math.inf before the first successful heartbeat
    lease_seconds: float
    lease_margin_seconds: float = 0.0
    instance_id: str | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def lease_valid(obs: Observation) -> bool:
    return obs.lease_age_seconds + obs.lease_margin_seconds < obs.lease_seconds


def decide(obs: Observation) -> Decision:
    stop_or_stay = Action.STOP_MINIO if obs.serving else Action.NOTHING
    if not lease_valid(obs):
        return Decision(stop_or_stay, f"lease not valid ({obs.lease_age_seconds:.1f}s since last renewal)")
    if obs.cluster is None:
        # A table blip alone does not stop MinIO: the lease (checked above) bounds how long it may go on.
        return Decision(Action.NOTHING, "state table unreadable; holding on while the lease is valid")
    role = _role_problem(obs, obs.cluster)
    if role:
        return Decision(stop_or_stay, role)
    if not obs.efs_ok:
        return Decision(stop_or_stay, "EFS not writable")
    if not obs.serving:
        return Decision(Action.START_MINIO, f"active for epoch {obs.cluster.epoch}")
    if not obs.minio_healthy:
        return Decision(Action.NOTHING, "serving, MinIO unhealthy: reported, the checker decides")
    return Decision(Action.NOTHING, f"serving for epoch {obs.cluster.epoch}")


def _role_problem(obs: Observation, cluster: ClusterView) -> str | None:
    if cluster.active != obs.me:
        return f"standby (active: {cluster.active or 'none'}, phase {cluster.phase}, epoch {cluster.epoch})"
    if cluster.phase != STABLE:
        return f"phase {cluster.phase} at epoch {cluster.epoch}"
    if cluster.active_instance and obs.instance_id != cluster.active_instance:
        # Another instance of this node (e.g. the one a deploy is replacing) holds the role.
        return f"the role is bound to instance {cluster.active_instance}, not {obs.instance_id}"
    return None
