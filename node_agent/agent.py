"""The agent loop: every heartbeat interval probe EFS, read the role, reconcile MinIO, write the heartbeat.

Order in a tick: EFS probe -> cluster read -> MinIO state/health -> decide() and act -> heartbeat write.
Acting before writing lets the heartbeat report the state after the action, so a stop at a new epoch is
visible to the checker (serving=false, seen_epoch=new) one interval sooner.

A lease guard thread stops MinIO when the lease runs out even if a tick is stuck in a slow call, so the
self-fencing deadline does not depend on how long one tick takes.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from node_agent.config import AgentConfig, ConfigError
from node_agent.decision import Action, ClusterView, Decision, Observation, decide
from node_agent.efs_probe import EfsProbe
from node_agent.imds import DEFAULT_ENDPOINT, Imds, ImdsError
from node_agent.sdnotify import notify
from node_agent.service import ProcessController, ServiceController, SystemdController
from node_agent.table import StateTable, dynamodb_client

log = logging.getLogger("node_agent")
GUARD_INTERVAL_SECONDS = 0.2
HEALTH_TIMEOUT_SECONDS = 1.0


def minio_health(url: str, timeout: float = HEALTH_TIMEOUT_SECONDS) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Agent:
    def __init__(self, config: AgentConfig, *, table: StateTable, service: ServiceController, efs: EfsProbe,
                 instance_id: str | None, minio_check: Callable[[], bool],
                 wall_clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 notifier: Callable[[str], bool] = notify) -> None:
        self.config = config
        self._table = table
        self._service = service
        self._efs = efs
        self._instance_id = instance_id
        self._minio_check = minio_check
        self._wall = wall_clock
        self._monotonic = monotonic
        self._notify = notifier
        # Serialises start/stop between the loop and the lease guard.
        self._lock = threading.Lock()
        self._lease_renewed_at: float | None = None
        self._seen_epoch = 0
        self._maybe_serving = True  # until observed: the guard must not assume MinIO is down
        self._ready_sent = False
        self._last_reason = ""
        self._stop_requested = threading.Event()

    @property
    def instance_id(self) -> str | None:
        return self._instance_id

    @property
    def service(self) -> ServiceController:
        return self._service

    # ----- lease -----
    def lease_age(self) -> float:
        if self._lease_renewed_at is None:
            return math.inf
        return self._monotonic() - self._lease_renewed_at

    def lease_expired(self) -> bool:
        return self.lease_age() + self.config.lease_margin_seconds >= self.config.lease_seconds

    def enforce_lease(self) -> bool:
        """Stop MinIO if the lease ran out (True if it stopped it). Called by the guard thread."""
        if not self.lease_expired() or not self._maybe_serving:
            return False
        with self._lock:
            if not self._maybe_serving:
                return False
            log.warning("lease expired (%.1fs): stopping MinIO", self.lease_age())
            return self._stop_service()

    # ----- one iteration -----
    def tick(self) -> Decision:
        efs = self._efs.run()
        cluster = self._read_cluster()
        minio_ok = self._service.is_running() and self._minio_check()
        with self._lock:
            serving = self._service.is_running()
            decision = decide(Observation(
                me=self.config.node_name, cluster=cluster, efs_ok=efs.ok, serving=serving,
                minio_healthy=minio_ok, lease_age_seconds=self.lease_age(),
                lease_seconds=self.config.lease_seconds,
                lease_margin_seconds=self.config.lease_margin_seconds, instance_id=self._instance_id))
            serving = self._apply(decision, serving)
        if cluster is not None:
            self._seen_epoch = cluster.epoch
        self._log_decision(decision, efs.detail)
        detail = decision.reason if efs.ok else f"{decision.reason}; {efs.detail}"
        if self._shadowed(cluster):
            # A deploy is replacing this node and the role is bound to the other instance: the checker must keep
            # seeing that instance's heartbeat in the node's item, so this one stays silent until it is released.
            log.info("role bound to instance %s: not writing the node heartbeat", cluster and cluster.active_instance)
        else:
            self._heartbeat(efs.ok, minio_ok and serving, serving, detail, renew_lease=cluster is not None)
        if not self._ready_sent:
            self._ready_sent = self._notify("READY=1")
        self._notify("WATCHDOG=1")
        return decision

    def _shadowed(self, cluster: ClusterView | None) -> bool:
        return (cluster is not None and cluster.active == self.config.node_name
                and cluster.active_instance is not None and cluster.active_instance != self._instance_id)

    def _read_cluster(self) -> ClusterView | None:
        try:
            return self._table.read_cluster()
        except Exception as error:  # any failure (API, network, parsing) means "could not read"
            log.warning("state table read failed: %s", error)
            return None

    def _apply(self, decision: Decision, serving: bool) -> bool:
        """Carry out the decision; returns whether MinIO may be running afterwards."""
        if decision.action is Action.STOP_MINIO:
            self._stop_service()
        elif decision.action is Action.START_MINIO:
            try:
                self._service.start()
            except Exception as error:
                log.error("MinIO start failed: %s", error)
        else:
            self._maybe_serving = serving
            return serving
        # Right after a start the unit may not report "activating" yet: count it as serving already.
        self._maybe_serving = self._service.is_running() or decision.action is Action.START_MINIO
        return self._maybe_serving

    def _stop_service(self) -> bool:
        try:
            self._service.stop()
        except Exception as error:
            log.error("MinIO stop failed: %s", error)
        self._maybe_serving = self._service.is_running()
        return not self._maybe_serving

    def _heartbeat(self, efs_ok: bool, minio_ok: bool, serving: bool, detail: str, *,
                   renew_lease: bool) -> None:
        # The lease counts from before the write: the table may apply it any time until the call returns.
        started = self._monotonic()
        try:
            self._table.write_heartbeat(self.config.node_name, heartbeat_at=self._wall(), efs_ok=efs_ok,
                                        minio_ok=minio_ok, serving=serving, seen_epoch=self._seen_epoch,
                                        instance_id=self._instance_id, detail=detail)
        except Exception as error:
            log.warning("heartbeat write failed: %s", error)
            return
        if renew_lease:
            self._lease_renewed_at = started

    def _log_decision(self, decision: Decision, efs_detail: str) -> None:
        if decision.action is not Action.NOTHING or decision.reason != self._last_reason:
            log.info("%s: %s (EFS: %s)", decision.action.value, decision.reason, efs_detail)
        self._last_reason = decision.reason

    # ----- service loop -----
    def run(self) -> None:
        guard = threading.Thread(target=self._guard_loop, name="lease-guard", daemon=True)
        guard.start()
        try:
            while not self._stop_requested.is_set():
                started = self._monotonic()
                try:
                    self.tick()
                except Exception:
                    # No watchdog ping for a failed tick: repeated failures let systemd restart the agent.
                    log.exception("tick failed")
                    self.enforce_lease()
                pause = self.config.heartbeat_interval_seconds - (self._monotonic() - started)
                self._stop_requested.wait(max(0.0, pause))
        finally:
            self.shutdown()

    def _guard_loop(self) -> None:
        while not self._stop_requested.wait(GUARD_INTERVAL_SECONDS):
            try:
                self.enforce_lease()
            except Exception:
                log.exception("lease guard failed")

    def request_stop(self, *_: Any) -> None:
        self._stop_requested.set()

    def shutdown(self) -> None:
        """Stop MinIO, then tell the table (best effort) so the checker sees serving=false at once."""
        self._notify("STOPPING=1")
        with self._lock:
            self._stop_service()
        self._heartbeat(False, False, self._service.is_running(), "agent stopped", renew_lease=False)


def instance_id_from_imds(attempts: int = 10, pause_seconds: float = 2.0) -> str:
    """IMDS can be briefly unreachable at boot; retry before giving up (systemd then restarts the agent)."""
    imds = Imds(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_ENDPOINT))
    for attempt in range(1, attempts + 1):
        try:
            return imds.instance_id()
        except ImdsError as error:
            if attempt == attempts:
                raise
            log.warning("instance id not available yet (%s); retrying", error)
            time.sleep(pause_seconds)
    raise AssertionError("unreachable")


def build_service(config: AgentConfig) -> ServiceController:
    """systemd's MinIO unit on a node; MINIO_COMMAND (the local drill) runs the server as a child process."""
    if config.minio_command is not None:
        return ProcessController(config.minio_command, log_path=config.minio_log)
    return SystemdController(config.minio_unit)


def build_agent(config: AgentConfig) -> Agent:
    return Agent(
        config,
        table=StateTable(dynamodb_client(config.region), config.state_table_name),
        service=build_service(config),
        efs=EfsProbe(config.mount_point, config.node_name, config.efs_timeout_seconds,
                     require_mount=config.efs_require_mount),
        instance_id=config.instance_id or instance_id_from_imds(),
        minio_check=lambda: minio_health(config.minio_health_url),
    )


def log_format(env: Mapping[str, str]) -> str:
    """The journal stamps each line itself (systemd sets JOURNAL_STREAM); anywhere else the line carries the time."""
    plain = "%(levelname)s %(name)s: %(message)s"
    return plain if env.get("JOURNAL_STREAM") else f"%(asctime)s {plain}"


def main(env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=log_format(os.environ if env is None else env))
    try:
        config = AgentConfig.from_env(env)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    agent = build_agent(config)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping MinIO and exiting", signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("node agent for %s (instance %s) started", config.node_name, agent.instance_id)
    agent.run()
    return 0
