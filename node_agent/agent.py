"""The node agent: independent threads, so that nothing on the node can starve the lease.

- lease thread, every P (HEARTBEAT_INTERVAL_SECONDS): consistent GetItem of `cluster`, then the conditional
  PutItem of the node item with lease_seq + 1. A renewal counts only if both succeeded and together took at most
  P; the lease is then valid until the GetItem's send time + G (LEASE_SECONDS) on the monotonic clock. It never
  waits for the EFS probe, the health check, a MinIO start/stop or a log write (it does not log at all: its
  errors are published and logged by the reconcile loop).
- guard thread, every 0.1 s: lease not valid while MinIO may run -> SIGKILL MinIO, confirm it is gone, THEN log
  (stop_reason lease_lost). It feeds the watchdog while (lease valid) or (MinIO confirmed stopped), and sends
  systemd's WATCHDOG=1 while the lease thread and the reconcile loop are alive. Exception: a kill for a lost lease
  while EFS was failing or hung (last probe failed, or a probe write stuck) stops the feeding for good (and any
  disarm or new start): the killed MinIO's dirty NFS pages could still reach EFS once the network returns, after
  the standby took over; only the reset (the kernel discards the page cache) ends them. Once a reset is chosen the
  lease thread writes nothing more (nor does shutdown): the checker can fence the node only by lease expiry, which
  comes after the reset, never by a serving=false report. Without an armed watchdog the node instead keeps
  reporting serving=true (`serving_held`), so the checker must force-stop the instance.
- EFS thread (write probe, mount check included, bounded by a timeout) and health thread (MinIO process and
  /minio/health/live) only publish results.
- reconcile loop (the main thread), every P: decide() on the latest snapshot; arms the watchdog before every
  MinIO start, stops MinIO and records the stop reason, disarms the watchdog only once MinIO is confirmed stopped
  and the node is not active. A stop while EFS is hung (a probe write stuck, or the last probe timed out) takes the
  same reset path as a lease lost with EFS failing (arming the device first if a standby never armed it); a plain
  EFS write error (EROFS) queues nothing and stops MinIO gracefully.
- shutdown (SIGTERM): a MinIO that may still run after stop and kill leaves the device armed and unfed (arming it
  if it never was), so the kernel resets the node.

State shared between threads lives in `_Status`, behind `_status_lock`, which is held only to copy values, never
across I/O. `_service_lock` serialises a MinIO start with the guard's kill, so a start cannot slip in between
the guard's lease check and its kill. Logging goes through a queue (main() installs it), so a blocked journal
cannot stall any of these threads either.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import math
import os
import queue
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from node_agent.config import AgentConfig, ConfigError
from node_agent.decision import (
    STOP_AGENT_STOPPED,
    STOP_LEASE_LOST,
    STOP_MINIO_FAILED,
    STOP_NONE,
    STOP_ROLE_LOST,
    STOP_WATCHDOG_UNAVAILABLE,
    WATCHDOG_OFF,
    WATCHDOG_UNAVAILABLE,
    Action,
    ClusterView,
    Decision,
    Observation,
    decide,
)
from node_agent.efs_probe import EfsProbe
from node_agent.imds import DEFAULT_ENDPOINT, Imds, ImdsError
from node_agent.sdnotify import notify
from node_agent.service import START_LIMIT_BURST, ProcessController, ServiceController, SystemdController
from node_agent.table import LeaseSeqConflict, NodeItem, StateTable, dynamodb_client
from node_agent.watchdog import Watchdog

log = logging.getLogger("node_agent")
GUARD_INTERVAL_SECONDS = 0.1
HEALTH_INTERVAL_SECONDS = 1.0
HEALTH_TIMEOUT_SECONDS = 1.0
# systemd's WATCHDOG=1 is withheld once the lease thread or the reconcile loop made no progress for this long
# (a stuck thread then gets the agent restarted; ExecStopPost stops MinIO). Longer than any bounded call in them.
THREAD_STALL_SECONDS = 30.0
# An instance whose node item a newer instance of the node claimed takes it back only after the item's renewal
# counter has not moved for this long on its own clock (the replacement died, e.g. a deploy rolled it back).
SUCCESSOR_SILENT_SECONDS = 10.0
# The instance's first boot (on its root volume: a reboot keeps it, a replacement starts without it).
LAUNCH_RECORD = Path("/var/lib/efs-ha/launched-at")
# A watchdog that could not be opened is tried again this often (softdog may be loaded after the agent started).
WATCHDOG_RETEST_SECONDS = 30.0
# A MinIO that the service manager is restarting after a crash (minio.service: Restart=on-failure) is reported as
# such (`minio_restarting`, the restarts since it was last healthy) for at most this long from the first unhealthy
# check of the episode and for at most START_LIMIT_BURST restarts: the checker does not count those probes as
# failed, so one restart in place (RestartSec, the secret fetch, MinIO's start on EFS) does not fail over. Past
# the budget, or once systemd gives up (the unit "failed"), the report says 0 and the checker counts again.
MINIO_RESTART_BUDGET_SECONDS = 30.0


def minio_health(url: str, timeout: float = HEALTH_TIMEOUT_SECONDS, ca_file: str | None = None) -> bool:
    """GET MinIO's liveness URL; with `ca_file` (MinIO over TLS) the certificate must verify against that CA. The
    CA file is read at every check: it appears when MinIO's start installs it, and a rotation needs no restart."""
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class _Status:
    """Values shared between the threads; copied under the status lock only."""

    view: ClusterView | None = None
    lease_sent_at: float | None = None  # monotonic send time of the last renewal's GetItem
    table_error: str = ""
    renewals: int = 0
    first_report_done: bool = False
    efs_ok: bool = False
    efs_detail: str = "not probed yet"
    efs_hung: bool = False  # the last probe timed out (or an earlier write is still stuck)
    minio_running: bool = False
    minio_healthy: bool = False
    # The restart in progress after a crash (1..START_LIMIT_BURST; 0: none, or past the restart budget).
    minio_restarting: int = 0
    health_at: float = -math.inf
    may_run: bool = True  # MinIO is or may be running: True until a stop is confirmed
    started_at: float = -math.inf
    acted_epoch: int = 0  # the epoch whose role has been acted on (after its start/stop)
    stop_reason: str = STOP_NONE
    detail: str = "starting"
    lease_loop_at: float = 0.0
    reconcile_loop_at: float = 0.0
    # Set (for good) by a kill for a lost lease while EFS was not healthy, or by a MinIO stop while EFS was hung:
    # the watchdog is no longer fed, the node resets, and no node item is written any more (no renewal, no final
    # report): the checker can then fence this node only by lease expiry, which comes after the reset.
    reset_reason: str = ""
    # Set (for good) by a MinIO stop while EFS was hung and no watchdog could be armed: the stopped MinIO's dirty
    # NFS pages may still reach EFS, so every report keeps serving=true (the checker must force-stop the instance).
    serving_held: str = ""
    leaving: bool = False  # set for good by request_handover(): the node is being shut down


@dataclass
class _ItemWatch:
    """How long the node item (its owner and renewal counter) has not moved, on the agent's own clock."""

    seen: tuple[str | None, int] | None = None
    since: float = 0.0

    def still_for(self, owner: str | None, lease_seq: int, now: float) -> float:
        if self.seen != (owner, lease_seq):
            self.seen, self.since = (owner, lease_seq), now
        return now - self.since


class Agent:
    def __init__(self, config: AgentConfig, *, table: StateTable, service: ServiceController, efs: EfsProbe,
                 instance_id: str | None, minio_check: Callable[[], bool], watchdog: Watchdog | None = None,
                 eni_id: str | None = None, private_ip: str | None = None,
                 wall_clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 notifier: Callable[[str], bool] = notify, guard_interval: float = GUARD_INTERVAL_SECONDS,
                 health_interval: float = HEALTH_INTERVAL_SECONDS, launched_at: float | None = None) -> None:
        self.config = config
        self._table = table
        self._service = service
        self._efs = efs
        self._instance_id = instance_id
        self._eni_id = eni_id
        self._private_ip = private_ip
        self._minio_check = minio_check
        self._restart_base = 0  # the restart count when MinIO was last healthy (health thread only)
        self._restart_since: float | None = None  # first unhealthy check since then (health thread only)
        self.watchdog = watchdog if watchdog is not None else Watchdog(
            config.watchdog_device, config.watchdog_timeout_seconds, required=config.watchdog_required)
        self._wall = wall_clock
        self._monotonic = monotonic
        self._notify = notifier
        self._guard_interval = guard_interval
        self._health_interval = health_interval
        self._status_lock = threading.Lock()
        self._service_lock = threading.Lock()
        self._status = _Status(lease_loop_at=monotonic(), reconcile_loop_at=monotonic())
        self._lease_seq: int | None = None  # the last lease_seq used (None until read from the table)
        # The first write of an instance claims the node item (a replacement takes over from the old instance);
        # later writes require it to be still this instance's. Lease thread only.
        self._claimed = False
        self._launched_at = launch_time() if launched_at is None else launched_at
        self._successor: str | None = None  # a newer instance of this node that claimed the item
        self._item_watch = _ItemWatch()  # how long the item has not moved (successor or fenced instance)
        self._stop_requested = threading.Event()  # ends the reconcile loop (SIGTERM)
        self._threads_stop = threading.Event()  # ends the other threads, only once MinIO is confirmed stopped
        self._ready_sent = False
        self._last_logged = ("", "")
        self._last_table_error = ""
        self._watchdog_tested_at = -math.inf
        self._threads: list[threading.Thread] = []

    @property
    def instance_id(self) -> str | None:
        return self._instance_id

    @property
    def service(self) -> ServiceController:
        return self._service

    @property
    def eni_id(self) -> str | None:
        return self._eni_id

    @property
    def lease_seq(self) -> int | None:
        return self._lease_seq

    def status(self) -> _Status:
        """A copy of the shared status (tests and the final report read it)."""
        with self._status_lock:
            return replace(self._status)

    # ----- lease -----
    def lease_age(self, now: float | None = None) -> float:
        with self._status_lock:
            sent = self._status.lease_sent_at
        if sent is None:
            return math.inf
        return (self._monotonic() if now is None else now) - sent

    def lease_valid(self, now: float | None = None) -> bool:
        return self.lease_age(now) < self.config.lease_seconds

    def renew_once(self) -> bool:
        """One lease renewal (the lease thread's body). True if it counted as a renewal. Never logs.

        Once a reset was chosen it writes nothing at all (no serving=false the checker could take as fencing): the
        lease then ends on the checker's clock at the deadline, after the armed watchdog has reset the node.
        """
        if self._reset_chosen():
            return False
        if self._lease_seq is None:
            try:
                stored, owner, owner_launched_at = self._table.read_owner(self.config.node_name)
            except Exception as error:  # any failure means "not yet": the next period retries
                self._publish_table_error(f"reading the node item failed: {error}")
                return False
            self._lease_seq = stored
            if owner and self._instance_id and owner != self._instance_id and owner_launched_at > self._launched_at:
                # A newer instance of this node (a replacement) owns the item: this older one never claims it
                # back, unless the newer one goes silent (_successor_gone).
                self._claimed = True
                self._successor = owner
        # Taken BEFORE the cluster GetItem (serialising, signing, connecting come after it), so the lease never
        # starts later than the real send, which is the earliest the checker can see this renewal.
        sent = self._monotonic()
        try:
            view = self._table.read_cluster()
        except Exception as error:  # a failed read means no write (no false progress)
            self._publish_table_error(f"state table read failed: {error}")
            return False
        with self._status_lock:
            self._status.view = view
            status = replace(self._status)
        if status.reset_reason:
            # Chosen while the read was under way. The check and the copy are one step under the lock, and a stop
            # sets reset_reason no later than may_run=False: a report that says serving=false is never written.
            return False
        if self._shadowed(view) and not self._fenced_instance_gone(view):
            # A deploy is replacing this node and the role is bound to the other instance (or that instance is
            # being fenced, confirmed only by its own report): the checker must keep seeing that instance's item,
            # so this one stays silent (and holds no lease) until it is released. Ready once it may write.
            ready = status.first_report_done or self._may_write()
            with self._status_lock:
                self._status.first_report_done = ready
                self._status.table_error = "" if ready else "silent (another instance holds the role) and not " \
                                                            "yet allowed to write the node item"
            return False
        if self._successor is not None and not self._successor_gone():
            self._publish_table_error(f"node item taken over by instance {self._successor} (a replacement of "
                                      f"this node): not writing it")
            return False
        self._lease_seq += 1  # consumed even if the write fails: a late-applied attempt can never collide
        item = self._report(status, self._lease_seq)
        try:
            self._table.write_node(item, owner=self._instance_id if self._claimed else None)
        except LeaseSeqConflict:
            self._after_conflict(item.lease_seq)
            return False
        except Exception as error:
            self._publish_table_error(f"node item write failed: {error}")
            return False
        self._claimed = True
        took = self._monotonic() - sent
        renewed = took <= self.config.heartbeat_interval_seconds
        read_back = status.first_report_done or self._read_back(item)
        with self._status_lock:
            self._status.first_report_done = read_back
            if renewed and read_back:
                previous = self._status.lease_sent_at
                self._status.lease_sent_at = sent if previous is None else max(previous, sent)
                self._status.renewals += 1
                self._status.table_error = ""
            elif renewed:
                self._status.table_error = f"heartbeat {item.lease_seq} was accepted but did not read back"
            else:
                self._status.table_error = f"renewal took {took:.2f}s (> {self.config.heartbeat_interval_seconds:g}s)"
        return renewed

    def _after_conflict(self, seq: int) -> None:
        """A refused write: another instance of this node claimed the item (yield to it), or another writer (an
        earlier run of this agent, a late-applied write) got further (jump past it)."""
        try:
            stored, owner = self._table.read_back(self.config.node_name)
        except Exception:
            return
        if self._claimed and owner and self._instance_id and owner != self._instance_id:
            self._successor = owner
            self._publish_table_error(f"node item taken over by instance {owner} (a replacement of this node)")
            return
        self._lease_seq = max(self._lease_seq or 0, stored)
        self._publish_table_error(f"lease_seq {seq} was not above the stored one; continuing after {self._lease_seq}")

    def _successor_gone(self) -> bool:
        """Whether the instance that claimed the item stopped renewing it: then this one claims it back."""
        try:
            stored, current = self._table.read_back(self.config.node_name)
        except Exception:
            return False
        if current and current != self._instance_id:
            self._successor = current  # the same one, or a still newer one: wait for it to go silent
            if self._item_watch.still_for(current, stored, self._monotonic()) < SUCCESSOR_SILENT_SECONDS:
                return False
        self._successor, self._claimed = None, False
        self._lease_seq = max(self._lease_seq or 0, stored)
        return True

    def _read_back(self, item: NodeItem) -> bool:
        """Ready (systemd READY, so the deploy goes on) means a heartbeat of this instance is in the table: the
        write's answer alone could come from a policy or endpoint that does not store it for others to read."""
        try:
            seq, instance = self._table.read_back(self.config.node_name)
        except Exception:  # not proven yet: the next renewal tries again
            return False
        return seq >= item.lease_seq and instance == self._instance_id

    def _report(self, status: _Status, seq: int, *, stop_reason: str | None = None) -> NodeItem:
        detail = status.detail if status.efs_ok else f"{status.detail}; EFS: {status.efs_detail}"
        if status.reset_reason:
            detail = f"{status.reset_reason}; {detail}"
        if status.serving_held:
            detail = f"{status.serving_held}; {detail}"
        return NodeItem(
            node=self.config.node_name, lease_seq=seq, heartbeat_at=self._wall(),
            serving=status.may_run or bool(status.serving_held),
            seen_epoch=status.acted_epoch, stop_reason=stop_reason or status.stop_reason, efs_ok=status.efs_ok,
            minio_ok=status.may_run and status.minio_healthy,
            minio_restarting=status.minio_restarting if status.may_run else 0, watchdog=self.watchdog.state,
            watchdog_timeout=self.config.watchdog_timeout_seconds if self.watchdog.required else 0,
            instance_id=self._instance_id, eni_id=self._eni_id, private_ip=self._private_ip, detail=detail,
            lease_seconds=self.config.lease_seconds, leaving=status.leaving, launched_at=self._launched_at)

    def _publish_table_error(self, message: str) -> None:
        with self._status_lock:
            self._status.table_error = message

    def _shadowed(self, view: ClusterView | None) -> bool:
        if view is None:
            return False
        me = self.config.node_name
        bound_elsewhere = view.active == me and view.active_instance not in (None, self._instance_id)
        fenced_elsewhere = view.fencing_node == me and view.fencing_instance not in (None, "", self._instance_id)
        return bound_elsewhere or fenced_elsewhere

    def _fenced_instance_gone(self, view: ClusterView) -> bool:
        """A replacement stays silent while its node's other instance is being fenced (only that instance's own
        report confirms the fence), but not for ever: once the node item has not moved for
        SUCCESSOR_SILENT_SECONDS (own clock), that instance is gone and this one reports, so a takeover waiting
        for a healthy node can take this one. The role bound to another instance keeps it silent regardless."""
        me = self.config.node_name
        if view.active == me or view.fencing_node != me:
            return False
        try:
            stored, owner = self._table.read_back(me)
        except Exception:
            return False
        return self._item_watch.still_for(owner, stored, self._monotonic()) >= SUCCESSOR_SILENT_SECONDS

    def _may_write(self) -> bool:
        try:
            return self._table.may_write(self.config.node_name)
        except Exception:  # not proven yet: the next renewal asks again
            return False

    # ----- guard -----
    def guard_once(self) -> None:
        """Self-fencing and the watchdog feed (the guard thread's body)."""
        with self._status_lock:
            may_run = self._status.may_run
        if may_run and not self.lease_valid():
            may_run = self._kill_for_lost_lease()
        if not may_run:
            self._reset_if_efs_hangs_after_a_lease_kill()
        if self.watchdog.armed and not self._reset_chosen() and (not may_run or self.lease_valid()):
            self.watchdog.feed()
        if self._threads_alive():
            self._notify("WATCHDOG=1")

    def _kill_for_lost_lease(self) -> bool:
        """SIGKILL MinIO, confirm it is gone, then (and only then) log. Returns whether MinIO may still run.

        EFS not healthy at the kill (the last probe failed, or a probe write is stuck right now): the killed MinIO's
        dirty NFS pages could reach EFS after the network returns, so the watchdog is no longer fed (nor disarmed)
        and the node resets. With EFS healthy the node is not reset: the guard keeps feeding once MinIO is gone.
        """
        age = self.lease_age()
        error = ""
        reset = ""
        with self._service_lock:
            with self._status_lock:
                if not self._status.may_run:
                    return False
                efs_ok, efs_detail = self._status.efs_ok, self._status.efs_detail
            efs_hung = self._efs.hung()
            if (not efs_ok or efs_hung) and self.watchdog.armed:
                why = "an EFS write is hung" if efs_hung else efs_detail
                reset = (f"lease lost while EFS was not healthy ({why}): MinIO killed, the watchdog is no longer "
                         f"fed and the node resets, so that MinIO's unwritten EFS pages are discarded")
            # Chosen BEFORE the kill: a shutdown racing a kill that hangs must already see it.
            with self._status_lock:
                chose_reset = bool(reset) and not self._status.reset_reason
                if chose_reset:
                    self._status.reset_reason = reset
            if chose_reset:
                self._persist_reset_intent(reset)
            try:
                self._service.kill()
            except Exception as caught:  # confirmed (or not) by is_running() below
                error = f" ({caught})"
            held = ""
            if (not efs_ok or efs_hung) and not reset:
                why = "an EFS write is hung" if efs_hung else efs_detail
                held = (f"lease lost while EFS was not healthy ({why}) and no watchdog is armed: MinIO killed, its "
                        f"unwritten EFS pages may still reach EFS, so this node keeps reporting serving=true (the "
                        f"checker must force-stop the instance)")
            running = self._service.is_running()
            with self._status_lock:
                if held and not self._status.serving_held:
                    self._status.serving_held = held
                if not running:
                    self._status.may_run = False
                    self._status.stop_reason = STOP_LEASE_LOST
                    self._status.detail = f"lease lost ({age:.1f}s since the last renewal was sent): MinIO killed"
        if running:
            log.error("lease lost (%.1fs): MinIO kill not confirmed yet%s; the watchdog is no longer fed", age,
                      error)
        else:
            log.warning("lease lost (%.1fs since the last renewal was sent): MinIO killed", age)
        if reset:
            log.error("%s", reset)
        elif not efs_ok or efs_hung:
            log.error("lease lost while EFS was not healthy, but no watchdog is armed: MinIO's unwritten EFS pages "
                      "may still reach EFS")
        return running

    def _reset_if_efs_hangs_after_a_lease_kill(self) -> None:
        """A whole-network partition can end the lease before the EFS probe in flight counts as hung, so the kill
        found EFS healthy. An EFS hang found while the lease is still lost, within the time a silent node is trusted
        to be dead (G + 2W), means the killed MinIO's pages may still be queued: take the reset path after all."""
        if self._reset_chosen() or not self.watchdog.armed or self.lease_valid():
            return
        if self.lease_age() >= self.config.lease_seconds + 2 * self.config.watchdog_timeout_seconds:
            return
        with self._status_lock:
            killed_for_lease = self._status.stop_reason == STOP_LEASE_LOST
        why_hung = self._efs_hung_now() if killed_for_lease else ""
        if why_hung:
            self._reset_for_hung_efs(Decision(Action.STOP_MINIO, "lease lost", STOP_LEASE_LOST), why_hung)

    def _reset_if_efs_hung(self, reason: str, stop_reason: str) -> None:
        """Stopping MinIO while EFS is hung takes the reset path whoever stops it (reconcile loop, shutdown)."""
        why_hung = self._efs_hung_now()
        if why_hung and not self._reset_chosen() and self._watchdog_armed_for_reset():
            self._reset_for_hung_efs(Decision(Action.STOP_MINIO, reason, stop_reason), why_hung)

    def _persist_reset_intent(self, reason: str) -> None:
        """A restarted agent (a crash, WatchdogSec's SIGKILL) must not undo the reset: it would find MinIO stopped,
        disarm the device and renew the lease while the killed MinIO's pages may still reach EFS."""
        path = Path(self.config.reset_intent_path)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_text(reason)
        except OSError as error:
            log.error("could not record the chosen reset in %s: %s", path, error)

    def _inherit_reset(self) -> bool:
        """prepare(): a reset chosen by an earlier run of this agent since the last boot is this run's too."""
        try:
            earlier = Path(self.config.reset_intent_path).read_text().strip()
        except FileNotFoundError:
            return False
        except OSError as error:  # unreadable: cannot tell, so the reset stands
            earlier = f"its record is unreadable: {error}"
        with self._status_lock:
            self._status.reset_reason = f"a previous run of this agent chose a reset ({earlier}): waiting for it"
            self._status.may_run = True
            self._status.detail = "waiting for the watchdog reset chosen before this agent restarted"
        if not self.watchdog.armed and not self.watchdog.arm():
            log.error("a reset was chosen before this agent restarted, and the watchdog cannot be armed: nothing "
                      "resets the node, the checker must force-stop the instance")
        log.error("%s", self._status.reset_reason)
        return True

    def _reset_chosen(self) -> bool:
        with self._status_lock:
            return bool(self._status.reset_reason)

    def _threads_alive(self) -> bool:
        now = self._monotonic()
        with self._status_lock:
            oldest = min(self._status.lease_loop_at, self._status.reconcile_loop_at)
        return now - oldest < THREAD_STALL_SECONDS

    # ----- probes -----
    def probe_efs_once(self) -> None:
        result = self._efs.run()
        with self._status_lock:
            self._status.efs_ok = result.ok
            self._status.efs_detail = result.detail
            self._status.efs_hung = result.hung

    def check_health_once(self) -> None:
        running = self._service.is_running()
        healthy = running and self._minio_check()
        restarts = self._service.restarts()
        now = self._monotonic()
        restarting = self._restart_episode(running, healthy, restarts, now)
        with self._status_lock:
            previous = self._status.minio_restarting
            self._status.minio_running = running
            self._status.minio_healthy = healthy
            self._status.minio_restarting = restarting
            self._status.health_at = now
        if restarting != previous:
            if restarting:
                log.warning("MinIO restarting in place (restart %d since it was last healthy): reported, the checker "
                            "does not count these probes", restarting)
            elif healthy:
                log.info("MinIO healthy again after its restart in place")
            else:
                log.error("MinIO no longer restarting in place and not healthy (start limit hit, %gs restart budget "
                          "spent, or stopped): the checker counts its probes again", MINIO_RESTART_BUDGET_SECONDS)

    def _restart_episode(self, running: bool, healthy: bool, restarts: int, now: float) -> int:
        """The restart in progress (restarts since MinIO was last healthy), within the restart budget; else 0.

        Only the health thread calls this. A restart count that went down (an explicit start reset it) becomes the
        new baseline. Not running means stopped for good (systemd's start limit refused the next restart)."""
        if healthy or restarts < self._restart_base:
            self._restart_base = restarts
            self._restart_since = None
            return 0
        if not running:
            return 0
        episode = restarts - self._restart_base
        if episode <= 0:
            return 0
        since = self._restart_since = now if self._restart_since is None else self._restart_since
        if episode > START_LIMIT_BURST or now - since > MINIO_RESTART_BUDGET_SECONDS:
            return 0
        return episode

    # ----- reconcile -----
    def reconcile_once(self) -> Decision:
        now = self._monotonic()
        running = self._service.is_running()
        with self._status_lock:
            self._status.reconcile_loop_at = now
            status = replace(self._status)
        self._retest_watchdog(now)
        decision = decide(Observation(
            me=self.config.node_name, cluster=status.view, efs_ok=status.efs_ok, serving=running,
            minio_healthy=status.minio_healthy, lease_age_seconds=self.lease_age(now),
            lease_seconds=self.config.lease_seconds, instance_id=self._instance_id,
            watchdog=self.watchdog.state if self.watchdog.required else WATCHDOG_OFF, leaving=status.leaving))
        epoch = status.view.epoch if status.view is not None else status.acted_epoch
        if running and not status.may_run:
            # Running although this agent confirmed it stopped (started by hand?): it may serve, so guard it.
            with self._status_lock:
                self._status.may_run = True
            status.may_run = True
        if decision.action is Action.START_MINIO:
            decision = self._start(decision, epoch)
        elif decision.action is Action.STOP_MINIO and decision.stop_reason == STOP_LEASE_LOST:
            self._kill_for_lost_lease()  # no graceful stop without a lease: the same kill as the guard's
        elif decision.action is Action.STOP_MINIO or (status.may_run and not running):
            # Also when MinIO is not running but may be (a queued start, a crash): stop settles it for good.
            self._stop(decision, epoch, status)
        else:
            asked = self._asked_to_serve(status.view)
            with self._status_lock:
                self._status.acted_epoch = max(self._status.acted_epoch, epoch)
                if not self._status.may_run and asked and decision.stop_reason != STOP_NONE:
                    # Named active but refusing to serve (EFS, lease, watchdog): say why. A standby that was
                    # never asked keeps its last reason ("none" if it never served).
                    self._status.stop_reason = decision.stop_reason
                self._status.detail = decision.reason
        self._maybe_disarm()
        self._after_reconcile(decision)
        return decision

    def _start(self, decision: Decision, epoch: int) -> Decision:
        """Arm, THEN check the lease, then start: a freeze anywhere in here is bounded by the armed device.

        Checking first and arming after would let a freeze between the two start MinIO at any time after the lease
        ended, on a freshly armed (fed) device. `may_run` is set before the lease check, so from that check on the
        guard feeds only with a valid lease (a guard that still feeds for a stopped MinIO would not be bounded).
        """
        with self._service_lock:
            if self._reset_chosen():
                return Decision(Action.NOTHING, "waiting for the watchdog reset: no start", STOP_LEASE_LOST)
            if self.watchdog.required and not self.watchdog.arm():
                with self._status_lock:
                    self._status.stop_reason = STOP_WATCHDOG_UNAVAILABLE
                    self._status.detail = f"watchdog cannot be armed: {self.watchdog.last_error}"
                    self._status.acted_epoch = max(self._status.acted_epoch, epoch)
                return Decision(Action.NOTHING, "watchdog cannot be armed: refusing the active role",
                                STOP_WATCHDOG_UNAVAILABLE)
            with self._status_lock:
                was_running = self._status.may_run
                self._status.may_run = True
            if not self.lease_valid():
                # Not started: MinIO stays as confirmed stopped as it was. An armed device stays armed and is fed
                # by the guard (MinIO confirmed stopped), so this never resets the node.
                reason = "lease ended before the start"
                with self._status_lock:
                    self._status.may_run = was_running
                    if not was_running:
                        self._status.stop_reason = STOP_LEASE_LOST
                    self._status.detail = reason
                return Decision(Action.NOTHING, reason, STOP_LEASE_LOST)
            with self._status_lock:
                if not was_running:
                    self._status.started_at = self._monotonic()  # health checks after this judge this start
                self._status.stop_reason = STOP_NONE
                self._status.acted_epoch = max(self._status.acted_epoch, epoch)
                self._status.detail = decision.reason
            error = ""
            try:
                self._service.start()
            except Exception as caught:  # MinIO stays "may run"; the next loop retries
                error = str(caught)
        if error:
            log.error("MinIO start failed: %s", error)
        return decision

    def _stop(self, decision: Decision, epoch: int, status: _Status) -> None:
        """Stop MinIO; serving=false is reported only once the stop is confirmed.

        EFS hung at the stop (a probe write stuck right now, or the last probe timed out): the stopped MinIO's dirty
        NFS pages could still reach EFS once the mount recovers, after the checker promoted the standby on the
        strength of a serving=false report. With a watchdog that is (or can now be) armed: the reset path instead
        (`_reset_for_hung_efs`). Without one: the graceful stop, but the node keeps reporting serving=true, so the
        checker must force-stop the instance. A plain write error (EROFS) queues nothing: the usual stop.
        """
        why_hung = self._efs_hung_now()
        if why_hung and self._watchdog_armed_for_reset():
            self._reset_for_hung_efs(decision, why_hung)
            return
        error = ""
        try:
            self._service.stop()
        except Exception as caught:  # confirmed (or not) by is_running() below
            error = str(caught)
        if self._service.is_running():
            log.error("MinIO stop not confirmed%s: still reported as serving", f" ({error})" if error else "")
            return
        reason = decision.stop_reason
        if reason in (STOP_ROLE_LOST, STOP_NONE) and self._minio_failed(status):
            reason = STOP_MINIO_FAILED
        reset = ""
        if not why_hung:
            # EFS may have hung while MinIO was stopping: its pages are as unwritten. MinIO is gone already, so a
            # reset needs no kill: reset_reason is published with may_run=False (never a serving=false report).
            why_hung = self._efs_hung_now()
            if why_hung and self._watchdog_armed_for_reset():
                reset = (f"MinIO stopped ({reason}: {decision.reason}) while EFS hung ({why_hung}): the watchdog is "
                         f"no longer fed, the lease no longer renewed and the node resets, so that MinIO's "
                         f"unwritten EFS pages are discarded")
        held = ""
        if why_hung and not reset:
            held = (f"MinIO stopped while EFS was hung ({why_hung}) and no watchdog is armed: its unwritten EFS pages "
                    f"may still reach EFS, so this node keeps reporting serving=true (the checker must force-stop "
                    f"the instance)")
        with self._status_lock:
            # A MinIO that stopped for this epoch: serving=false and seen_epoch=epoch are published together.
            self._status.may_run = False
            self._status.stop_reason = reason if reason != STOP_NONE else STOP_ROLE_LOST
            self._status.acted_epoch = max(self._status.acted_epoch, epoch)
            self._status.detail = decision.reason
            if reset and not self._status.reset_reason:
                self._status.reset_reason = reset
            else:
                reset = ""
            if held and not self._status.serving_held:
                self._status.serving_held = held
            else:
                held = ""
        if reset or held:
            log.error("%s", reset or held)

    def _efs_hung_now(self) -> str:
        """Why EFS counts as hung right now ("" if it does not)."""
        if self._efs.hung():
            return "an EFS write is hung"
        with self._status_lock:
            if self._status.efs_hung:
                return self._status.efs_detail
        return ""

    def _watchdog_armed_for_reset(self) -> bool:
        """The device is armed, or (watchdog required) can be armed now: a standby never armed it."""
        if self.watchdog.armed:
            return True
        return self.watchdog.required and self.watchdog.arm() and self.watchdog.armed

    def _reset_for_hung_efs(self, decision: Decision, why_hung: str) -> None:
        """MinIO must stop while EFS is hung, the watchdog armed: the reset path (as a lease lost with EFS failing).

        reset_reason is set BEFORE the kill: from then on the guard feeds no more, the lease thread writes no more
        (so no serving=false report), nothing disarms the device and nothing starts MinIO; the kernel resets the
        node within W, discarding the killed MinIO's dirty pages.
        """
        reset = (f"MinIO had to stop ({decision.stop_reason}: {decision.reason}) while EFS was hung ({why_hung}): "
                 f"MinIO killed, the watchdog is no longer fed, the lease no longer renewed and the node resets, so "
                 f"that MinIO's unwritten EFS pages are discarded")
        error = ""
        with self._service_lock:
            with self._status_lock:
                first = not self._status.reset_reason
                if first:
                    self._status.reset_reason = reset
            if first:
                self._persist_reset_intent(reset)
            try:
                self._service.kill()
            except Exception as caught:  # confirmed (or not) by is_running() below
                error = f" ({caught})"
            running = self._service.is_running()
            with self._status_lock:
                if not running:
                    self._status.may_run = False
                    self._status.stop_reason = decision.stop_reason
                    self._status.detail = f"{decision.reason}: MinIO killed (EFS hung), waiting for the reset"
        if first:
            log.error("%s", reset)
        if running:
            log.error("MinIO kill not confirmed yet%s; the watchdog is no longer fed", error)

    @staticmethod
    def _minio_failed(status: _Status) -> bool:
        """MinIO itself failed here: its last health check, taken after its start, said unhealthy or not running."""
        return status.health_at > status.started_at and not status.minio_healthy

    def _maybe_disarm(self) -> None:
        if not self.watchdog.armed or self._reset_chosen():
            return
        with self._status_lock:
            may_run, view = self._status.may_run, self._status.view
        if not may_run and not self._asked_to_serve(view):
            self.watchdog.disarm()

    def _asked_to_serve(self, view: ClusterView | None) -> bool:
        return view is not None and view.active == self.config.node_name and not self._shadowed(view)

    def _retest_watchdog(self, now: float) -> None:
        if (self.watchdog.required and self.watchdog.state == WATCHDOG_UNAVAILABLE
                and now - self._watchdog_tested_at >= WATCHDOG_RETEST_SECONDS):
            self._watchdog_tested_at = now
            with self._status_lock:
                may_run = self._status.may_run
            if may_run:
                self.watchdog.arm()  # never test() (its magic close disarms) while MinIO may run
            else:
                self.watchdog.test()

    def _after_reconcile(self, decision: Decision) -> None:
        with self._status_lock:
            table_error = self._status.table_error
            ready = self._status.first_report_done
        if table_error != self._last_table_error:
            if table_error:
                log.warning("%s", table_error)
            else:
                log.info("state table reachable again")
            self._last_table_error = table_error
        key = (decision.action.value, decision.reason)
        if decision.action is not Action.NOTHING or key != self._last_logged:
            log.info("%s: %s [stop_reason %s, watchdog %s]", decision.action.value, decision.reason,
                     decision.stop_reason, self.watchdog.state)
        self._last_logged = key
        if ready and not self._ready_sent:
            self._ready_sent = self._notify("READY=1")

    # ----- threads -----
    def _every(self, interval: float, body: Callable[[], Any], name: str,
               progress: Callable[[float], None] | None = None) -> None:
        while not self._threads_stop.is_set():
            started = self._monotonic()
            if progress is not None:
                progress(started)
            try:
                body()
            except Exception:  # a thread must never die; the failure is logged via the queue
                log.exception("%s failed", name)
            pause = interval - (self._monotonic() - started)
            self._threads_stop.wait(max(0.0, pause))

    def _mark_lease_loop(self, now: float) -> None:
        with self._status_lock:
            self._status.lease_loop_at = now

    def start_threads(self) -> None:
        p = self.config.heartbeat_interval_seconds
        specs: list[tuple[str, float, Callable[[], Any], Callable[[float], None] | None]] = [
            ("lease", p, self.renew_once, self._mark_lease_loop),
            ("guard", self._guard_interval, self.guard_once, None),
            ("efs-probe", self.config.efs_probe_interval_seconds, self.probe_efs_once, None),
            ("health", self._health_interval, self.check_health_once, None),
        ]
        for name, interval, body, progress in specs:
            thread = threading.Thread(target=self._every, args=(interval, body, name, progress), name=name,
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def prepare(self) -> None:
        """Before any thread runs: MinIO is not running without this agent, and the watchdog works (or not).

        The device is tested (open + magic close = disarmed) only when MinIO is confirmed stopped. A MinIO that may
        still run (a stop that could not be confirmed: a process in D state on a hung EFS mount, a failed unit with
        tasks left) keeps the device ARMED, as the previous agent left it on purpose: the guard then feeds it only
        while this node holds a lease or once MinIO is confirmed stopped, and nothing magic-closes it before that.
        """
        if self._inherit_reset():
            return
        running = self._service.is_running()
        if running:
            log.warning("MinIO runs without an agent decision: stopping it")
            running = self._stop_or_kill()
        with self._status_lock:
            self._status.may_run = running
            if running:
                self._status.detail = "MinIO may still run: its stop at agent start could not be confirmed"
        self._watchdog_tested_at = self._monotonic()
        if not self.watchdog.required:
            return
        if running:
            if self.watchdog.arm():
                log.error("MinIO may still run (its stop could not be confirmed): watchdog %s armed (timeout %ds); "
                          "it is fed only while this node holds a lease or once MinIO is confirmed stopped",
                          self.watchdog.path, self.watchdog.timeout_seconds)
            else:
                log.error("MinIO may still run (its stop could not be confirmed) and the watchdog cannot be armed")
        elif self.watchdog.test():
            log.info("watchdog %s ready (timeout %ds)", self.watchdog.path, self.watchdog.timeout_seconds)

    def _stop_or_kill(self) -> bool:
        """Graceful stop, SIGKILL if that did not end it; returns whether MinIO may still run."""
        with contextlib.suppress(Exception):
            self._service.stop()
        if self._service.is_running():
            with contextlib.suppress(Exception):
                self._service.kill()
        return self._service.is_running()

    def run(self) -> None:
        self.prepare()
        self.start_threads()
        try:
            while not self._stop_requested.is_set():
                started = self._monotonic()
                try:
                    self.reconcile_once()
                except Exception:
                    log.exception("reconcile failed")
                pause = self.config.heartbeat_interval_seconds - (self._monotonic() - started)
                self._stop_requested.wait(max(0.0, pause))
        finally:
            self.shutdown()

    def request_stop(self, *_: Any) -> None:
        self._stop_requested.set()

    def request_handover(self, *_: Any) -> None:
        """The OS is shutting this node down (efs-ha-handover.service's stop, SIGUSR1): from the next renewal on
        the node item says `leaving`, so the checker switches over to a healthy standby while MinIO still serves
        here; this node never takes the role again. Signal-safe: one assignment under no lock."""
        self._status.leaving = True

    def shutdown(self) -> None:
        """Stop MinIO (confirmed), disarm the watchdog, then tell the table: serving=false, agent_stopped.

        The lease, guard and probe threads run on until MinIO is confirmed stopped: MinIO's graceful stop may
        take longer than the watchdog timeout, and a planned stop must neither reset the node nor go unguarded.

        A MinIO that may still run after stop and kill: the device stays armed and unfed (the guard has ended), and
        a device that was never armed (a MinIO started by hand on a standby) is armed now, so the kernel resets the
        node. Once a reset was chosen, no final report is written (it would say serving=false).
        """
        self._stop_requested.set()
        self._notify("STOPPING=1")
        with self._status_lock:
            was_serving = self._status.may_run
        self._reset_if_efs_hung("agent stopping", STOP_AGENT_STOPPED)
        running = self._stop_or_kill()
        self._reset_if_efs_hung("agent stopping", STOP_AGENT_STOPPED)  # EFS may have hung during the stop
        if was_serving:
            self._hold_serving_if_efs_hung()
        with self._status_lock:
            self._status.may_run = running
            if not running:
                self._status.stop_reason = STOP_AGENT_STOPPED
                if self._status.view is not None:
                    # Stopped now, after the latest view was read: stopped for that epoch too.
                    self._status.acted_epoch = max(self._status.acted_epoch, self._status.view.epoch)
            self._status.detail = "agent stopped" if not running else "agent stopped; MinIO may still run"
        self._threads_stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * self.config.heartbeat_interval_seconds + 1)
        if running:
            self._arm_for_exit()
        elif not self._reset_chosen():
            # Left armed (closed without the magic 'V') if MinIO may still run, or a reset was chosen: the kernel
            # then resets the node.
            self.watchdog.disarm()
        if self._reset_chosen():
            log.error("waiting for the watchdog reset: no final node item (the lease ends on the checker's clock)")
            return
        self._final_report()

    def _hold_serving_if_efs_hung(self) -> None:
        """No reset possible (no watchdog) and MinIO stopped while EFS hangs: its pages may still reach EFS, so the
        final report keeps serving=true (the checker must force-stop the instance), as in the reconcile loop."""
        why_hung = "" if self._reset_chosen() else self._efs_hung_now()
        if not why_hung:
            return
        held = (f"MinIO stopped at agent shutdown while EFS was hung ({why_hung}) and no watchdog is armed: its "
                f"unwritten EFS pages may still reach EFS, so this node keeps reporting serving=true")
        with self._status_lock:
            if not self._status.serving_held:
                self._status.serving_held = held
        log.error("%s", held)

    def _arm_for_exit(self) -> None:
        """MinIO may still run and this agent is exiting: leave an armed, unfed device, so the kernel resets the node.

        Called once the guard thread has ended (nothing feeds the device any more).
        """
        if self.watchdog.armed:
            outcome = (f"watchdog {self.watchdog.path} left armed and no longer fed: the node resets within "
                       f"{self.watchdog.timeout_seconds}s")
        elif not self.watchdog.required:
            outcome = "no watchdog (watchdog: off): nothing resets the node, the checker must force-stop the instance"
        elif self.watchdog.arm():
            outcome = (f"watchdog {self.watchdog.path} armed now and never fed: the node resets within "
                       f"{self.watchdog.timeout_seconds}s")
        else:
            outcome = (f"the watchdog cannot be armed ({self.watchdog.last_error}): nothing resets the node, the "
                       f"checker must force-stop the instance")
        log.error("agent stopping while MinIO may still run (stop and kill not confirmed): %s", outcome)
        with self._status_lock:
            self._status.detail = f"agent stopped; MinIO may still run: {outcome}"

    def _final_report(self) -> None:
        """serving=false, agent_stopped: only from the instance that owns the node item. A silent replacement,
        or an instance that yielded to a newer one, writes nothing (taking the item would make the owner yield
        and lose its lease while it may be the active node)."""
        with self._status_lock:
            status = replace(self._status)
        if not self._claimed or self._successor is not None or self._shadowed(status.view):
            return
        for _ in range(2):
            try:
                assert self._lease_seq is not None  # set by the first renewal, before the item was claimed
                self._lease_seq += 1
                self._table.write_node(self._report(status, self._lease_seq), owner=self._instance_id)
                return
            except LeaseSeqConflict:
                try:
                    stored, owner = self._table.read_back(self.config.node_name)
                except Exception:
                    return
                if owner and self._instance_id and owner != self._instance_id:
                    return  # another instance of this node owns the item now
                self._lease_seq = max(self._lease_seq or 0, stored)
            except Exception as error:  # best effort on the way out
                log.warning("final node item write failed: %s", error)
                return


def boot_time(uptime_path: str = "/proc/uptime") -> float:
    """When this machine last booted, on its wall clock."""
    try:
        with open(uptime_path) as handle:
            return time.time() - float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time()


def launch_time(record: Path = LAUNCH_RECORD, *, now: Callable[[], float] = time.time,
                boot: Callable[[], float] = boot_time) -> float:
    """When this instance was launched: its first boot, recorded on its root volume (deleted with the instance),
    so a reboot keeps it and a replacement instance has a later one. Unrecordable: this boot (best effort)."""
    try:
        return float(record.read_text().strip())
    except (OSError, ValueError):
        pass
    first = boot()
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{first:.3f}\n")
    except OSError as error:
        log.warning("could not record the instance's launch time in %s: %s", record, error)
    return first if first <= now() else now()


@dataclass(frozen=True)
class Identity:
    instance_id: str
    eni_id: str | None
    private_ip: str | None


def identity_from_imds(config: AgentConfig, attempts: int = 10, pause_seconds: float = 2.0) -> Identity:
    """The instance, its primary ENI and private IP from IMDS; IMDS can be briefly unreachable at boot.

    INSTANCE_ID set (the drill, tests) means no IMDS at all: ENI_ID / PRIVATE_IP then come from the environment too.
    """
    if config.instance_id:
        return Identity(config.instance_id, config.eni_id, config.private_ip)
    imds = Imds(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_ENDPOINT))
    for attempt in range(1, attempts + 1):
        try:
            instance_id = imds.instance_id()
            eni_id, private_ip = imds.primary_interface()
            return Identity(instance_id, config.eni_id or eni_id, config.private_ip or private_ip)
        except ImdsError as error:
            if attempt == attempts:
                raise
            log.warning("instance identity not available yet (%s); retrying", error)
            time.sleep(pause_seconds)
    raise AssertionError("unreachable")


def build_service(config: AgentConfig) -> ServiceController:
    """systemd's MinIO unit on a node; MINIO_COMMAND (the local drill) runs the server as a child process."""
    if config.minio_command is not None:
        return ProcessController(config.minio_command, log_path=config.minio_log)
    return SystemdController(config.minio_unit)


def build_agent(config: AgentConfig) -> Agent:
    identity = identity_from_imds(config)
    return Agent(
        config,
        table=StateTable(dynamodb_client(config.region, config.table_timeout_seconds), config.state_table_name),
        service=build_service(config),
        efs=EfsProbe(config.mount_point, config.node_name, config.efs_timeout_seconds,
                     require_mount=config.efs_require_mount),
        instance_id=identity.instance_id, eni_id=identity.eni_id, private_ip=identity.private_ip,
        minio_check=lambda: minio_health(config.minio_health_url, ca_file=config.minio_ca_file),
        launched_at=config.launched_at,
    )


def log_format(env: Mapping[str, str]) -> str:
    """The journal stamps each line itself (systemd sets JOURNAL_STREAM); anywhere else the line carries the time."""
    plain = "%(levelname)s %(name)s: %(message)s"
    return plain if env.get("JOURNAL_STREAM") else f"%(asctime)s {plain}"


def queued_logging(env: Mapping[str, str]) -> logging.handlers.QueueListener:
    """Log records go into an unbounded queue; one listener thread writes them, so no agent thread blocks on I/O."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(log_format(env)))
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(logging.INFO)
    listener = logging.handlers.QueueListener(records, stream)
    listener.start()
    return listener


class Signals:
    """SIGTERM/SIGINT stop the agent; SIGUSR1 (the handover unit's stop) asks for a planned switchover first.

    Installed before anything else in main(): building the agent can take a while (IMDS retries), and SIGUSR1's
    default action would kill the process. A signal that arrives before the agent exists is applied to it then.
    """

    def __init__(self) -> None:
        self._agent: Agent | None = None
        self._stop = self._handover = False
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_handover)

    def attach(self, agent: Agent) -> None:
        self._agent = agent
        if self._handover:
            agent.request_handover()
        if self._stop:
            agent.request_stop()

    def _on_stop(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop = True
        if self._agent is not None:
            self._agent.request_stop()

    def _on_handover(self, _signum: int, _frame: FrameType | None) -> None:
        self._handover = True
        if self._agent is not None:
            self._agent.request_handover()


def main(env: Mapping[str, str] | None = None) -> int:
    source = os.environ if env is None else env
    try:
        config = AgentConfig.from_env(env)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    signals = Signals()
    listener = queued_logging(source)
    try:
        agent = build_agent(config)
        signals.attach(agent)
        log.info("node agent for %s (instance %s, ENI %s, %s) started: renewal every %gs, lease %gs, watchdog %s",
                 config.node_name, agent.instance_id, agent.eni_id or "-", config.watchdog_device,
                 config.heartbeat_interval_seconds, config.lease_seconds, config.watchdog)
        agent.run()
        log.info("node agent stopped")
    finally:
        listener.stop()
    return 0

