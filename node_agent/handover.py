"""The OS stop path's wait for a planned switchover (efs-ha-handover.service's ExecStop, before MinIO stops).

systemd stops this unit first at shutdown (it is ordered after MinIO and the agent), right after it sent the
agent SIGUSR1 (the agent then reports `leaving` and the checker switches over to a healthy standby). This waits,
bounded, until the cluster item shows the role settled on another node: by then this node's MinIO is stopped
(a switchover promotes the target only once the old node confirmed its stop). Whatever happens, it exits 0 so the
shutdown goes on; with no healthy standby the checker alerts and the shutdown ends in a failover later.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping

from node_agent.config import AgentConfig, ConfigError
from node_agent.decision import STABLE
from node_agent.table import StateTable, dynamodb_client

NOT_ACTIVE = "not active"
HANDED_OVER = "handed over"
TIMED_OUT = "timed out"
TABLE_UNREADABLE = "table unreadable"

# A switchover measured 1.7 s in the drill; the checker sees `leaving` within a probe interval (1 s) + a renewal.
DEFAULT_TIMEOUT_SECONDS = 12.0
POLL_SECONDS = 0.2


def wait_for_handover(table: StateTable, node: str, *, timeout_seconds: float, poll_seconds: float = POLL_SECONDS,
                      monotonic: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> str:
    """NOT_ACTIVE (nothing to hand over), HANDED_OVER, TIMED_OUT, or TABLE_UNREADABLE (gives up at once: a node
    that cannot read the table has lost its lease anyway and stops serving by itself)."""
    deadline = monotonic() + timeout_seconds
    first = True
    while True:
        try:
            view = table.read_cluster()
        except Exception:  # any API or network error: do not hold the shutdown up
            return TABLE_UNREADABLE
        if view.active != node and view.active is not None and view.phase == STABLE:
            return NOT_ACTIVE if first else HANDED_OVER
        if view.active is None and first:
            return NOT_ACTIVE  # nobody is active: there is nothing to hand over
        first = False
        if monotonic() >= deadline:
            return TIMED_OUT
        sleep(poll_seconds)


def _timeout(raw: str) -> float:
    try:
        timeout = float(raw) if raw else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        timeout = -1.0
    if not 0 < timeout < 300:
        raise ConfigError("HANDOVER_TIMEOUT_SECONDS", f"must be a number of seconds between 0 and 300, got {raw!r}")
    return timeout


def _run(env: Mapping[str, str]) -> str:
    config = AgentConfig.from_env(env)
    timeout = _timeout(env.get("HANDOVER_TIMEOUT_SECONDS", "").strip())
    table = StateTable(dynamodb_client(config.region, config.table_timeout_seconds), config.state_table_name)
    outcome = wait_for_handover(table, config.node_name, timeout_seconds=timeout)
    messages = {
        NOT_ACTIVE: f"{config.node_name} is not (or no longer) the active node: nothing to wait for",
        HANDED_OVER: f"{config.node_name} handed the role over: MinIO stopped in a planned switchover",
        TIMED_OUT: f"the role did not move off {config.node_name} within {timeout:g}s (no healthy standby?): "
                   "shutting down anyway; the checker fails over once a standby is healthy",
        TABLE_UNREADABLE: "the state table is unreadable: shutting down without a handover",
    }
    print(f"efs-ha handover: {messages[outcome]}", file=sys.stderr)
    return outcome


def main(env: Mapping[str, str] | None = None) -> int:
    try:
        _run(os.environ if env is None else env)
    except ConfigError as error:
        print(f"efs-ha handover: not attempted: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
