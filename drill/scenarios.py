"""The faults. Each starts from a clean cluster (both nodes healthy, one serving, every route on it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drill.netns import kill_pid

if TYPE_CHECKING:
    from drill.lab import Lab

Inject = Callable[["Lab", str, str], "float | None"]  # (lab, active, standby) -> fault time if not "now"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    inject: Inject
    moves: bool  # the role must move (False: the product recovers in place)
    recovery_timeout: float = 90.0


def kill_active(lab: Lab, active: str, _standby: str) -> None:
    lab.nodes[active].kill()


def network_cut(lab: Lab, active: str, _standby: str) -> None:
    # Both ends of the node's only link: it loses the client, the other node and the state table at once.
    lab.nodes[active].set_links(False)


def s3_crash(lab: Lab, active: str, _standby: str) -> None:
    lab.nodes[active].crash_s3()


def efs_read_only(lab: Lab, active: str, _standby: str) -> None:
    lab.storage.set_read_only(active, True)


def switchover(lab: Lab, _active: str, standby: str) -> float:
    """The operator's synchronous invoke; with reserved concurrency 1 it waits for the probe loop's gap."""
    return lab.start_switchover(standby)


def checker_killed(lab: Lab, active: str, _standby: str) -> None:
    """A failover whose checker sandbox dies right after its first successful route write."""
    lab.proxy.arm(lambda: kill_pid(lab.checker.host_pid or -1))
    lab.nodes[active].kill()


SCENARIOS = {s.name: s for s in (
    Scenario("kill-active", "kill -9 of the active node (agent + S3 server)", kill_active, moves=True),
    Scenario("network-cut", "active node's links down", network_cut, moves=True),
    Scenario("s3-crash", "S3 server crash only (kill -9)", s3_crash, moves=False),
    Scenario("efs-readonly", "active node's EFS view read-only (EROFS)", efs_read_only, moves=True),
    Scenario("switchover", "manual switchover (handler action)", switchover, moves=True, recovery_timeout=150),
    Scenario("checker-killed", "checker killed after its first ReplaceRoute", checker_killed, moves=True,
             recovery_timeout=150),
)}
