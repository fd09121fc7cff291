"""Worst-case durations of the checker's AWS calls and of one takeover (imports nothing heavy: the stack's
construct sizes the Lambda timeout from these same numbers).

Every AWS client of the checker uses botocore's *standard* retry mode (no adaptive client-side rate limiter,
whose waits have no bound) with these timeouts, so one call ends within CALL_WORST_SECONDS:
  attempts x (connect + read timeout) + the backoff before each retry (throttling: rand(0,1) x 2**i s).
The EC2 describe calls use a client with a single attempt: the next refresh is their retry, and a throttled
Describe* must not slow a probe cycle down.
"""

from __future__ import annotations

CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0
MAX_ATTEMPTS = 2
RETRY_BACKOFF_SECONDS = sum(2.0 ** i for i in range(MAX_ATTEMPTS - 1))
CALL_WORST_SECONDS = MAX_ATTEMPTS * (CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS) + RETRY_BACKOFF_SECONDS
DESCRIBE_WORST_SECONDS = CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS
FENCE_POLL_SECONDS = 0.5
FINISH_MARGIN_SECONDS = 1.0
# The longest probe loop of one invocation. The schedule starts a run every minute, which takes the loop over
# (failover_lambda/loop_lease.py); the 30 s beyond the minute cover a late or missed scheduled run.
LOOP_SECONDS = 90
# A Lambda cold start in a VPC with this package's imports, with room to spare: the probe-gap alarm's allowance
# for a loop that must be started afresh (no run was waiting to take it over).
COLD_START_SECONDS = 10.0


def probe_gap_bound_seconds(probe_interval: float) -> float:
    """The longest gap between two probes the design allows whatever starts the runs (ProbeGapSeconds alarm):
    a hand-over costs at most one interval and a half, a fresh loop a cold start."""
    return 2 * probe_interval + COLD_START_SECONDS


def after_fencing_seconds() -> float:
    """Promote + routes, once fencing is confirmed: an EC2 refresh (2 describes, best effort), the promote
    UpdateItem, one route write per table (all tables in parallel; a missing route costs a second call:
    ReplaceRoute then CreateRoute), and a margin to finish. The verify describe and SNS are best effort."""
    return 2 * DESCRIBE_WORST_SECONDS + CALL_WORST_SECONDS + 2 * CALL_WORST_SECONDS + FINISH_MARGIN_SECONDS


def takeover_seconds(fence_wait: float) -> float:
    """A whole takeover: the fencing UpdateItem, the SSM SendCommand, the fence wait (+ one slow Scan and one
    poll), then everything after fencing."""
    return (2 * CALL_WORST_SECONDS + fence_wait + CALL_WORST_SECONDS + FENCE_POLL_SECONDS
            + after_fencing_seconds())


def fence_wait_bound(*, watchdog_required: bool, lease_deadline: float, fence_timeout: float) -> float:
    """The longest fence wait the checker can time: with an enforcing watchdog, the lease deadline on its own
    clock; without one, the fence timeout and one StopInstances call. (How long a force-stopped instance
    takes to reach `stopped` is EC2's business: that wait may continue in the next run, phase=fencing.)"""
    if watchdog_required:
        return lease_deadline
    return fence_timeout + CALL_WORST_SECONDS


def invocation_timeout_seconds(*, watchdog_required: bool, lease_deadline: float, fence_timeout: float) -> int:
    """Lambda timeout: the probe loop's span plus room for a takeover begun in its last cycle."""
    return LOOP_SECONDS + loop_safety_margin_seconds(watchdog_required=watchdog_required,
                                                     lease_deadline=lease_deadline, fence_timeout=fence_timeout)


def loop_safety_margin_seconds(*, watchdog_required: bool, lease_deadline: float, fence_timeout: float) -> int:
    """LOOP_SAFETY_MARGIN_SECONDS: the loop stops this long before the timeout, so any takeover fits."""
    wait = fence_wait_bound(watchdog_required=watchdog_required, lease_deadline=lease_deadline,
                            fence_timeout=fence_timeout)
    return int(-(-takeover_seconds(wait) // 1))
