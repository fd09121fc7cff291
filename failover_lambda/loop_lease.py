"""The loop lease: one probe loop at a time, without a Lambda concurrency reservation.

The `loop` item names the invocation that runs the probe loop (`holder`). Every write to it is conditional on
who holds it (failover_lambda/state_store.py), so of two invocations that race for a free lease exactly one
wins. Only probe loops use it; operator actions (status, switchover, maintenance, confirm_fenced) never wait for
it: every role change they make is an epoch compare-and-set, which is what keeps two writers safe.

  - A probe loop that finds the lease free, or expired, takes it and probes.
  - A scheduled run that finds it held asks for it (`successor`) and waits: the holder hands it over at the start
    of its next cycle and stops, so the new loop's first probe follows the old loop's last one within about one
    and a half probe intervals. Loops run longer than the schedule's minute (budget.LOOP_SECONDS), so a holder
    is normally relieved by the next scheduled run instead of stopping on its own.
  - An EC2 state-change run that finds it held returns at once: the loop already probes every interval.
  - The holder renews it every LOOP_RENEW_SECONDS; a holder that freezes or is killed stops renewing, and the
    lease expires LOOP_LEASE_SECONDS after its last renewal.

Expiry compares two wall clocks: the holder's (it wrote `expires_at`) and the taker's (the condition's `:now`).
Lambda sandboxes keep time with the Amazon Time Sync Service, and the design already compares the checker's wall
clock across invocations (failure ages, the MinIO start grace, the no-ping-pong hold); a disagreement of d seconds
only moves a takeover of an abandoned lease by d. Too early is safe: the old holder, if it still runs, sees
another holder at its next cycle's read and stops, and meanwhile every role change is still an epoch
compare-and-set. So the lease only decides who does the work, never who may change the role.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from failover_lambda.aws import AwsUnavailable
from failover_lambda.clock import Clock
from failover_lambda.model import LoopState
from failover_lambda.state_store import StateStore
from failover_lambda.telemetry import logger

# How long a lease lasts after its last renewal: longer than a renewal period plus one slow write, so a live
# holder never loses it, short enough that the next run takes an abandoned loop over quickly.
LOOP_LEASE_SECONDS = 15.0
# The holder renews this often (one conditional UpdateItem): 12 writes a minute, like the probe record.
LOOP_RENEW_SECONDS = 5.0


class LoopEnded(Exception):
    """The holder must stop its loop: it handed it over, or another invocation holds it now."""


class LoopLease:
    def __init__(self, store: StateStore, clock: Clock, *, poll_seconds: float) -> None:
        # Not the Lambda request id: an asynchronous retry of the same event keeps it.
        self.me = uuid.uuid4().hex
        self._store = store
        self._clock = clock
        self._poll = poll_seconds
        self._renewed_at: float | None = None  # monotonic time of the last successful take or renewal
        self.last_probe_at = 0.0  # wall clock of this invocation's latest probe (0: none yet)
        self.previous_probe_at = 0.0  # the latest probe before this loop began, as the lease item had it

    @property
    def held(self) -> bool:
        return self._renewed_at is not None

    # ----- a contender -----
    def acquire(self, *, wait: bool, time_left: Callable[[], float]) -> str | None:
        """Take the lease; None when taken, else why not. With `wait`, ask the holder for it and poll until it
        is handed over, freed or expired, while `time_left()` is positive."""
        state = self._store.read_loop()
        if self._try_take(state):
            return None
        if not wait:
            return f"a probe loop is running (held by {state.holder})"
        if not self._store.ask_for_loop(self.me):
            state = self._store.read_loop()
            return None if self._try_take(state) else f"the loop lease changed meanwhile (held by {state.holder})"
        while time_left() > 0:
            self._clock.sleep(self._poll)
            state = self._store.read_loop()
            if self._try_take(state):
                return None
            if state.successor != self.me:
                return f"a newer run asked for the loop (held by {state.holder}, next {state.successor})"
        return "no time left waiting for the probe loop to be handed over"

    def _try_take(self, state: LoopState) -> bool:
        now = self._clock.now()
        free = state.holder is None or state.holder == self.me or state.expires_at < now
        if not free or not self._store.take_loop(self.me, now, now + LOOP_LEASE_SECONDS):
            return False
        self._renewed_at = self._clock.monotonic()
        self.previous_probe_at = state.last_probe_at
        if state.holder not in (None, self.me):
            logger.warning("took over an expired probe-loop lease",
                           extra={"previous_holder": state.holder, "expired_for": round(now - state.expires_at, 3)})
        return True

    # ----- the holder -----
    def check(self, state: LoopState) -> None:
        """At the start of a cycle, with the cycle's own read: go on, or raise LoopEnded (handed over or lost)."""
        if state.holder != self.me:
            self._renewed_at = None
            raise LoopEnded(f"lost the probe-loop lease to {state.holder or 'nobody (released)'}")
        successor = state.successor
        if successor and successor != self.me and self._store.hand_over_loop(
                self.me, successor, self._clock.now() + LOOP_LEASE_SECONDS, self.last_probe_at):
            self._renewed_at = None
            raise LoopEnded(f"handed the probe loop over to {successor}")

    def renew_if_due(self) -> None:
        """Renew every LOOP_RENEW_SECONDS, also inside a long cycle (a takeover's fence wait)."""
        if self._renewed_at is None or self._clock.monotonic() - self._renewed_at < LOOP_RENEW_SECONDS:
            return
        try:
            renewed = self._store.renew_loop(self.me, self._clock.now() + LOOP_LEASE_SECONDS, self.last_probe_at)
        except AwsUnavailable as error:
            logger.warning("could not renew the probe-loop lease; the next read retries", extra={"error": str(error)})
            return
        if renewed:
            self._renewed_at = self._clock.monotonic()
        else:
            # Another run took it (ours expired: a frozen sandbox). This cycle finishes; the next one stops.
            logger.warning("the probe-loop lease was taken over; stopping after this cycle")

    def release(self) -> None:
        """At the end of the loop: free the lease, or leave it to the run it was handed to. Best effort: an
        unreleased lease expires on its own."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        self._store.release_loop(self.me, self.last_probe_at)
