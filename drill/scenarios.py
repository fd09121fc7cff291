"""The faults. Each starts from a clean cluster (both nodes healthy, one serving, every route on it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drill.netns import kill_pid
from node_agent.handover import DEFAULT_TIMEOUT_SECONDS as HANDOVER_DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from drill.lab import Lab

Inject = Callable[["Lab", str, str], "float | None"]  # (lab, active, standby) -> fault time if not "now"
Prepare = Callable[["Lab", str, str], None]  # (lab, active, standby), before the client starts
Collect = Callable[["Lab", float], "dict[str, Any]"]  # (lab, fault time) -> extra results, before the heal

CLOCK_SKEW_SECONDS = 5.0
# One restart of MinIO on a node: ExecStartPre's secret fetch (an HTTPS call to Secrets Manager) and MinIO's start
# on EFS, after systemd's RestartSec (1 s, in the agent's ProcessController). Longer than 3 probes 1 s apart.
S3_START_DELAY_SECONDS = 4.0
# The checker's MinIO start grace after a role change (failover_lambda/settings.py): MinIO faults are faked after it.
MINIO_START_GRACE_SECONDS = 15.0
# Past the restarts in place (after the scheduled restart and the start limit) and the checker's count.
S3_CRASH_OBSERVE_SECONDS = 12.0
# The in-flight GET: the cut comes this long after both readers have data flowing (their GETs are mid-body).
INFLIGHT_CUT_AFTER_SECONDS = 1.0
INFLIGHT_DEADLINE_SECONDS = 150.0  # the application gives up after this (drill/inflight.py --deadline)
# The recommended client must have all its data within this long after the fault: detection + failover (~7 s),
# its 5 s read timeout, the rest of the object at the application's pace (~10 s) and some slack.
INFLIGHT_RECOMMENDED_BOUND_SECONDS = 30.0
THROTTLED_BEFORE_FAULT_SECONDS = 6.0  # longer than the checker's EC2 cache (5 s): every Describe now fails
SLOW_MONITOR_WRITE_SECONDS = 1.5  # each write to the agent's EFS monitor file
SLOW_OTHER_WRITE_SECONDS = 0.2  # each other write (the S3 server's objects): see drill/README.md
SLOW_EFS_OBSERVE_SECONDS = 25.0
# A cut node keeps its cut this long: well past its self-fence plus the watchdog timeout, so that a watchdog
# the self-fenced agent stopped feeding would have fired before the heal.
CUT_OBSERVE_SECONDS = 10.0
# A replacement instance boots after this (minutes in AWS; compressed here), and must report in as a healthy
# standby within the timeout.
REPLACEMENT_BOOT_SECONDS = 5.0
REPLACEMENT_STANDBY_TIMEOUT_SECONDS = 60.0
# The first takeover of the three-node chain: detection + failover (~6 s) and the client served again, with slack.
CHAIN_TAKEOVER_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    inject: Inject
    moves: bool  # the role must move (False: the product recovers in place, or nothing may move at all)
    recovery_timeout: float = 90.0
    # True: the old active node must be reset by its (simulated) watchdog; False: no watchdog may fire.
    expect_reset: bool = False
    # The old active node's agent must report a self-fence (`lease_lost`) in its log.
    expect_self_fence: bool = False
    # No takeover at all may happen while the fault lasts (a slow but healthy node).
    no_failover: bool = False
    prepare: Prepare | None = None
    # Observe at least this long after the fault before calling it recovered.
    min_observe: float = 3.0
    # Why this scenario cannot run here (None: it can); asked once, before it runs.
    unavailable: Callable[[], str | None] | None = None
    # The old active node's S3 server must answer again after the fault (restarted in place, no move).
    expect_restart_in_place: bool = False
    # The old active node must be on the checker's no-ping-pong hold (a MinIO that failed there for good).
    expect_hold: bool = False
    # Called once the run recovered, before the heal (the fault still on): more measurements for the results.
    collect: Collect | None = None
    # Nodes in the drill's cluster for this scenario (node1..nodeN, one zone each, priority in that order).
    nodes: int = 2


def kill_active(lab: Lab, active: str, _standby: str) -> None:
    lab.nodes[active].kill()


def network_cut(lab: Lab, active: str, _standby: str) -> None:
    # Both ends of the node's only link: it loses the client, the other node and the state table at once.
    lab.nodes[active].set_links(False)


def past_start_grace(lab: Lab, _active: str, _standby: str) -> None:
    """Wait until the checker counts MinIO problems again: MINIO_START_GRACE_SECONDS after the cluster item's
    changed_at (the bootstrap or the last promotion), else a crash right after it would prove nothing."""
    lab.wait_past_start_grace(MINIO_START_GRACE_SECONDS + 1)


def s3_crash(lab: Lab, active: str, _standby: str) -> None:
    """kill -9 of the S3 server; its restart (RestartSec 1 s, then the start wrapper) takes as long as a real one."""
    lab.nodes[active].set_s3_start(delay=S3_START_DELAY_SECONDS)
    lab.nodes[active].crash_s3()


def s3_crash_loop(lab: Lab, active: str, _standby: str) -> None:
    """kill -9 of the S3 server, and every restart of it fails again (after the same start delay)."""
    lab.nodes[active].set_s3_start(delay=S3_START_DELAY_SECONDS, crash=True)
    lab.nodes[active].crash_s3()


def client_inflight(lab: Lab, active: str, _standby: str) -> float:
    """A slow GET (drill/inflight.py, stock and recommended boto3 side by side) is streaming through the VIP when
    the active node's links go down: the host vanishes silently, mid-response."""
    lab.start_inflight()
    time.sleep(INFLIGHT_CUT_AFTER_SECONDS)
    cut_at = time.time()
    lab.nodes[active].set_links(False)
    return cut_at


def collect_inflight(lab: Lab, fault_at: float) -> dict[str, Any]:
    """Each client's outcome, from the fault: when the application had all its data (or gave up), its errors."""
    results = lab.inflight_results(INFLIGHT_DEADLINE_SECONDS + 30)
    clients: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        done = result.get("done")
        errors = result.get("errors", [])
        clients[name] = {
            "settings": result.get("settings"),
            "data_after_fault_s": round(done - fault_at, 2) if done else None,
            "intact": result.get("intact"), "attempts": result.get("attempts"),
            "errors": len(errors), "error_types": sorted({e["type"] for e in errors}),
            "first_error_after_fault_s": round(errors[0]["t"] - fault_at, 2) if errors else None,
        }
    recommended = clients.get("recommended", {})
    if not recommended.get("intact"):
        lab.problem(f"the client with the recommended settings did not get its data: {recommended}")
    elif (recommended.get("data_after_fault_s") or 0) > INFLIGHT_RECOMMENDED_BOUND_SECONDS:
        lab.problem(f"the client with the recommended settings needed {recommended['data_after_fault_s']} s "
                    f"(> {INFLIGHT_RECOMMENDED_BOUND_SECONDS:g} s)")
    return {"clients": clients}


def efs_read_only(lab: Lab, active: str, _standby: str) -> None:
    lab.storage.set_read_only(active, True)


def switchover(lab: Lab, _active: str, standby: str) -> float:
    """The operator's synchronous invoke; with reserved concurrency 1 it waits for the probe loop's gap."""
    return lab.start_switchover(standby)


def checker_killed(lab: Lab, active: str, _standby: str) -> None:
    """A failover whose checker sandbox dies right after its first successful route write."""
    lab.proxy.arm(lambda: kill_pid(lab.checker.host_pid or -1))
    lab.nodes[active].kill()


def frozen_agent(lab: Lab, active: str, _standby: str) -> None:
    """The agent process stalls (SIGSTOP: a GIL stall, a blocked journal write, a paused VM) while its MinIO runs
    on, and SSM cannot reach the node. Only the watchdog, which the frozen agent no longer feeds, can stop it."""
    node = lab.nodes[active]
    node.ssm_reachable = False
    if node.freeze() is None:
        lab.problem(f"the agent of {active} was not running: nothing to freeze")


def skewed_active(offset: float) -> Prepare:
    """Make the standby's wall clock `offset` seconds off (agent restarted with it), then make it the active node
    by a queued operator switchover, so that the fault hits an active node whose clock is wrong."""

    def prepare(lab: Lab, _active: str, standby: str) -> None:
        node = lab.nodes[standby]
        node.clock_offset = offset
        node.restart_agent()
        lab.wait_clean()
        lab.queue_switchover(standby)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if lab.clean_state() == standby:
                # Stay a while: a checker that compared clocks would fail a node "behind" over while healthy.
                time.sleep(5)
                if lab.clean_state() == standby:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{standby} (clock {offset:+g}s) did not become and stay the active node")

    return prepare


def table_cut(lab: Lab, active: str, _standby: str) -> None:
    """Only the node's path to the state table is cut (client, EFS and the other node still reachable)."""
    lab.nodes[active].set_table_cut(True)


def describe_throttled(lab: Lab, active: str, _standby: str) -> float:
    """DescribeInstances and DescribeRouteTables answer RequestLimitExceeded to the checker (sustained), then the
    active node dies. The throttling alone must move nothing."""
    epoch = lab.epoch()
    lab.proxy.throttle()
    time.sleep(THROTTLED_BEFORE_FAULT_SECONDS)
    if lab.epoch() != epoch:
        lab.problem("the role moved while EC2 Describe was throttled and every node was healthy")
    killed_at = time.time()
    lab.nodes[active].kill()
    return killed_at


def slow_efs(lab: Lab, active: str, _standby: str) -> None:
    """The active node's EFS turns slow but stays healthy: each write on its view waits before it is done."""
    try:
        lab.nodes[active].start_slow_efs(lab.storage.root, SLOW_OTHER_WRITE_SECONDS, SLOW_MONITOR_WRITE_SECONDS)
    except RuntimeError as error:
        lab.problem(f"the fault was not injected: {error}")


def graceful_shutdown(lab: Lab, active: str, _standby: str) -> None:
    """The OS shuts the active node down: the handover unit's stop asks for a planned switchover and waits for it
    before MinIO stops (issue 12: a deploy or instance refresh costs a switchover, not a failover)."""
    outcome = lab.nodes[active].shut_down(HANDOVER_DEFAULT_TIMEOUT)
    # Judged by what the checker did, not by the wait's own account: on a busy machine the switchover can be
    # over before `node_agent.handover` first reads the table (it then says there was nothing to wait for).
    reason = lab.cluster_reason()
    if f"(handover: {active} is shutting down)" not in reason:
        lab.problem(f"no handover at the shutdown of {active}: {outcome}; the cluster item says: {reason}")


def kill_active_twice(lab: Lab, active: str, _standby: str) -> float | None:
    """kill -9 of the active node; once the next node in priority order has taken over and the client is served
    again, kill -9 of that one too: the role must land on the third node. Measured from the second kill."""
    first_at, epoch = time.time(), lab.epoch()
    lab.nodes[active].kill()
    second = lab.wait_new_active(active, epoch, first_at, CHAIN_TAKEOVER_TIMEOUT_SECONDS)
    if second is None:
        lab.problem(f"no node took over from {active} within {CHAIN_TAKEOVER_TIMEOUT_SECONDS:g} s")
        return None
    second_epoch = lab.epoch()
    lab.notes.update({"faulted": second, "epoch_before": second_epoch, "chain": [active, second],
                      "first_fault_at": first_at})
    second_at = time.time()
    lab.nodes[second].kill()
    lab.notes["second_fault_at"] = second_at
    return second_at


def collect_chain(lab: Lab, fault_at: float) -> dict[str, Any]:
    """The role is on the node neither kill hit, and the first takeover's own figures (the run's are the second's)."""
    from drill.analysis import Window, rto_seconds

    chain = lab.notes.get("chain", [])
    survivors = [name for name in lab.node_names if name not in chain]
    cluster = lab.timeline.latest_cluster()
    landed = cluster.active if cluster is not None else None
    if len(chain) == 2 and landed not in survivors:
        lab.problem(f"after killing {chain[0]} and then {chain[1]} the role is on {landed}, not on {survivors}")
    first_at = lab.notes.pop("first_fault_at", None)
    second_at = lab.notes.pop("second_fault_at", None)
    if first_at is None or second_at is None:
        return {"landed_on": landed}
    first = Window(first_at, second_at, 0, chain[0])
    return {"landed_on": landed, "first_rto_s": _rounded(rto_seconds(lab.ops_since(first_at - 5), first)),
            "between_kills_s": _rounded(second_at - first_at)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def instance_replaced(lab: Lab, active: str, _standby: str) -> None:
    """The active node's instance is terminated (impaired: its Auto Scaling group replaces it): kill -9 of the
    node, the instance terminated in EC2, and REPLACEMENT_BOOT_SECONDS later the group's new instance (new id, ENI
    and address) boots the node again."""
    lab.replace_instance(active, REPLACEMENT_BOOT_SECONDS)


def collect_replacement(lab: Lab, fault_at: float) -> dict[str, Any]:
    """The replaced node is back as a healthy standby on its new instance, with no operator action: when."""
    replaced, instance_id = lab.last_replaced
    deadline = time.time() + REPLACEMENT_STANDBY_TIMEOUT_SECONDS
    while time.time() < deadline and not lab.node_reports_from(replaced, instance_id):
        time.sleep(0.2)
    back = lab.node_reports_from(replaced, instance_id)
    cluster = lab.timeline.latest_cluster()
    if not back:
        lab.problem(f"{replaced}'s replacement instance {instance_id} did not report in as a healthy standby within "
                    f"{REPLACEMENT_STANDBY_TIMEOUT_SECONDS:g} s")
    elif cluster is not None and cluster.active == replaced:
        lab.problem(f"{replaced}'s replacement instance was made active (it must come back as a standby)")
    return {"replacement_standby_s": round(time.time() - fault_at, 2) if back else None}


def _fuse_unavailable() -> str | None:
    from drill.slowfs import ensure_fuse

    return ensure_fuse()


SCENARIOS = {s.name: s for s in (
    Scenario("kill-active", "kill -9 of the active node (agent + S3 server)", kill_active, moves=True),
    Scenario("network-cut", "active node's links down", network_cut, moves=True, min_observe=CUT_OBSERVE_SECONDS),
    Scenario("s3-crash", f"S3 server crash only (kill -9); its start takes {S3_START_DELAY_SECONDS:g} s "
             "+ RestartSec", s3_crash, moves=False, no_failover=True, expect_restart_in_place=True,
             min_observe=S3_CRASH_OBSERVE_SECONDS, prepare=past_start_grace),
    Scenario("s3-crash-loop", "S3 server crash (kill -9), and every restart crashes again", s3_crash_loop,
             moves=True, expect_hold=True, prepare=past_start_grace),
    Scenario("client-inflight", "slow GET in flight (stock and recommended boto3) when the active node's links go "
             "down", client_inflight, moves=True, min_observe=CUT_OBSERVE_SECONDS, collect=collect_inflight),
    Scenario("efs-readonly", "active node's EFS view read-only (EROFS)", efs_read_only, moves=True),
    Scenario("switchover", "manual switchover (handler action)", switchover, moves=True, recovery_timeout=150),
    Scenario("checker-killed", "checker killed after its first ReplaceRoute", checker_killed, moves=True,
             recovery_timeout=150),
    Scenario("frozen-agent", "active node's agent frozen (SIGSTOP, S3 server runs on), SSM cannot reach it",
             frozen_agent, moves=True, expect_reset=True),
    Scenario("clock-behind", f"active node's clock {CLOCK_SKEW_SECONDS:g} s behind, then kill -9 of it",
             kill_active, moves=True, prepare=skewed_active(-CLOCK_SKEW_SECONDS)),
    Scenario("clock-ahead", f"active node's clock {CLOCK_SKEW_SECONDS:g} s ahead, then kill -9 of it",
             kill_active, moves=True, prepare=skewed_active(CLOCK_SKEW_SECONDS)),
    Scenario("table-cut", "active node cut off from the state table only (client and EFS reachable)", table_cut,
             moves=True, expect_self_fence=True, min_observe=CUT_OBSERVE_SECONDS),
    Scenario("describe-throttled", "EC2 Describe* throttled for the checker, then kill -9 of the active node",
             describe_throttled, moves=True),
    Scenario("graceful-shutdown", "the OS shuts the active node down (handover unit's stop, then MinIO and the "
             "agent)", graceful_shutdown, moves=True),
    Scenario("instance-replaced", "the active node's instance terminated and replaced (new instance id, ENI and "
             f"address, booting {REPLACEMENT_BOOT_SECONDS:g} s later)", instance_replaced, moves=True,
             collect=collect_replacement),
    Scenario("slow-efs", f"active node's EFS slow ({SLOW_MONITOR_WRITE_SECONDS:g} s per monitor write, "
             f"{SLOW_OTHER_WRITE_SECONDS:g} s per other write): nothing may move", slow_efs, moves=False,
             no_failover=True, min_observe=SLOW_EFS_OBSERVE_SECONDS, unavailable=_fuse_unavailable),
    Scenario("three-node-chain", "three nodes in three zones: kill -9 of the active node, then of the node that "
             "took over (the role must land on the third)", kill_active_twice, moves=True, nodes=3,
             collect=collect_chain),
)}
