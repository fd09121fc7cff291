"""Start/stop/inspect MinIO: systemd on a node, a plain subprocess in the local drill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

# States in which the unit's process can be running; anything not "inactive"/"failed" may still serve.
_STOPPED_STATES = frozenset({"inactive", "failed"})

# userdata/files/minio.service's restart policy (tests/test_userdata.py holds them equal): a crashed MinIO is
# restarted RESTART_SEC after it died, and at most START_LIMIT_BURST starts within START_LIMIT_INTERVAL_SEC are
# made; the next one is refused and the unit is "failed". ProcessController (the drill) behaves the same way.
RESTART_SEC = 1.0
# Exits that systemd's Restart=on-failure treats as clean (not restarted): exit code 0 and these signals.
_CLEAN_EXITS = frozenset({0, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP, -signal.SIGPIPE})
START_LIMIT_BURST = 3
START_LIMIT_INTERVAL_SEC = 60.0


class ServiceController(Protocol):
    def start(self) -> None:
        """Ask the service to start (may return before it is up)."""
        ...

    def stop(self) -> None:
        """Stop the service and return only once it no longer runs."""
        ...

    def kill(self) -> None:
        """SIGKILL every process of the service at once (self-fencing on a lost lease), then make it stay down."""
        ...

    def is_running(self) -> bool:
        """True if the service is or may be running (errors answer True: never claim a stop we cannot see).
        A crashed service whose automatic restart is pending counts as running (systemd: "activating
        (auto-restart)"); one whose restarts were refused by the start limit does not ("failed")."""
        ...

    def restarts(self) -> int:
        """Automatic restarts of the service (after a crash) since it was last started on purpose, counting one
        that is scheduled but not made yet: systemd's NRestarts, + 1 in the "auto-restart" sub-state (RestartSec
        running). 0 when unknown."""
        ...


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


# cgroup v2, as on Amazon Linux 2023.
CGROUP_ROOT = Path("/sys/fs/cgroup")
# minio.service's TimeoutStopSec (1 s), plus slack for systemd to reap MinIO and settle the unit: after this a
# SIGTERM is followed by SIGKILL, and a SIGKILL that does not end it within this again fails the stop.
STOP_TIMEOUT_SECONDS = 2.0


class SystemdController:
    def __init__(self, unit: str, *, runner: Runner = subprocess.run, timeout_seconds: float = 60,
                 cgroup_root: Path = CGROUP_ROOT, stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
                 poll_seconds: float = 0.1) -> None:
        self.unit = unit
        self._run = runner
        self._timeout = timeout_seconds
        self._cgroup_root = cgroup_root
        self._stop_timeout = stop_timeout_seconds
        self._poll = poll_seconds

    def start(self) -> None:
        # --no-block: MinIO's start (credentials fetch, Type=notify) must not stall heartbeats and the lease.
        self._systemctl("start", "--no-block", self.unit, check=True)

    def stop(self) -> None:
        """Stop MinIO and return once it has really stopped (serving=false is reported only then); raises if not.

        Never a blocking `systemctl stop`: at shutdown MinIO's stop job waits behind efs-ha-handover.service's
        stop, which waits for the role to move, which waits for this stop; a blocking stop would join that job and
        deadlock. So the stop job is only enqueued (a pending stop job also keeps Restart= from restarting
        MinIO), MinIO is signalled now, and its state confirms the stop.
        """
        self._systemctl("stop", "--no-block", self.unit, check=True)
        self._systemctl("kill", "--signal=SIGTERM", self.unit, check=False)
        if self._stopped_within(self._stop_timeout):
            return
        # As the unit's TimeoutStopSec would (it does not apply while the stop job waits its turn at shutdown).
        self._systemctl("kill", "--signal=SIGKILL", self.unit, check=False)
        if not self._stopped_within(self._stop_timeout):
            raise TimeoutError(f"{self.unit} still runs after SIGTERM and SIGKILL")

    def _stopped_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(self._poll)
        return True

    def kill(self) -> None:
        # No graceful drain: an unacknowledged request is the client's to retry. The stop job enqueued first keeps
        # Restart=on-failure from restarting the killed MinIO. The caller confirms with is_running().
        self._systemctl("stop", "--no-block", self.unit, check=False)
        self._systemctl("kill", "--signal=SIGKILL", self.unit, check=False)

    def is_running(self) -> bool:
        try:
            result = self._systemctl("show", "--property=ActiveState,TasksCurrent,ControlGroup", self.unit,
                                     check=False)
        except (OSError, subprocess.SubprocessError):
            return True
        properties = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        if properties.get("ActiveState", "unknown") not in _STOPPED_STATES:
            return True
        # A "failed" stop can leave a process stuck in uninterruptible NFS I/O inside the unit's cgroup: it may
        # still write to EFS, so the unit counts as stopped only once its cgroup is empty.
        tasks = properties.get("TasksCurrent", "")
        if tasks.isdigit() and int(tasks) < 2**63:
            return int(tasks) > 0
        # "[not set]" (task accounting off) or the unset maximum: ask the cgroup itself.
        return self._cgroup_has_processes(properties.get("ControlGroup", ""))

    def _cgroup_has_processes(self, control_group: str) -> bool:
        if not control_group.strip("/"):
            return False  # systemd removed the unit's cgroup: nothing is left in it
        try:
            return bool((self._cgroup_root / control_group.lstrip("/") / "cgroup.procs").read_text().strip())
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: a process may still write to EFS

    def restarts(self) -> int:
        try:
            result = self._systemctl("show", "--property=NRestarts,SubState", self.unit, check=False)
        except (OSError, subprocess.SubprocessError):
            return 0
        properties = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        made = properties.get("NRestarts", "")
        if not made.isdigit():
            return 0
        return int(made) + (1 if properties.get("SubState") == "auto-restart" else 0)

    def _systemctl(self, *args: str, check: bool) -> subprocess.CompletedProcess[str]:
        return self._run(["systemctl", *args], check=check, capture_output=True, text=True,
                         timeout=self._timeout)


class ProcessController:
    """Runs `argv` as a child process (own process group), e.g. a local S3 server in the drill.

    `env` is added to the agent's environment; `log_path` receives the child's stdout and stderr.
    It restarts a crashed child as minio.service's Restart=on-failure does: `restart_sec` after the crash (seen
    when the agent next asks), while fewer than `start_limit_burst` starts were made in `start_limit_interval`
    seconds; meanwhile is_running() is True, as systemd's "activating (auto-restart)". A refused restart leaves it
    stopped ("failed"), and an explicit start() is then refused until `start_limit_interval` has passed. A clean
    exit (0, or SIGTERM/SIGINT/SIGHUP/SIGPIPE, as for systemd) is not restarted. One difference: systemd counts
    explicit starts against the start limit too; here an explicit start begins the count afresh.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None,
                 *, log_path: str | None = None, stop_timeout_seconds: float = 10,
                 restart_sec: float = RESTART_SEC, start_limit_burst: int = START_LIMIT_BURST,
                 start_limit_interval: float = START_LIMIT_INTERVAL_SEC,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.argv = list(argv)
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._log_path = log_path
        self._stop_timeout = stop_timeout_seconds
        self._restart_sec = restart_sec
        self._burst = start_limit_burst
        self._interval = start_limit_interval
        self._monotonic = monotonic
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()  # the reconcile, guard and health threads all call in
        self._wanted = False  # started on purpose and not stopped since: a crash is restarted
        self._starts: deque[float] = deque()
        self._restarts = 0
        self._died_at: float | None = None
        self._failed_at: float | None = None  # when the start limit refused a restart

    def start(self) -> None:
        with self._lock:
            if self._alive():
                return
            if self._failed_at is not None and self._monotonic() - self._failed_at < self._interval:
                raise RuntimeError("start request repeated too quickly: the start limit was hit "
                                   f"({self._burst} starts in {self._interval:g}s)")
            self._failed_at = None
            self._wanted = True
            self._starts.clear()
            self._restarts = 0
            self._died_at = None
            self._spawn()

    def stop(self) -> None:
        with self._lock:
            self._wanted = False
            process = self._process
        if process is None or process.poll() is not None:
            return
        self._signal(process, signal.SIGTERM)
        try:
            process.wait(self._stop_timeout)
        except subprocess.TimeoutExpired:
            self._signal(process, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        with self._lock:
            self._wanted = False
            process = self._process
        if process is None or process.poll() is not None:
            return
        self._signal(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(self._stop_timeout)

    def is_running(self) -> bool:
        with self._lock:
            self._supervise()
            return self._alive() or self._wanted

    def restarts(self) -> int:
        with self._lock:
            self._supervise()
            return self._restarts + (1 if self._wanted and not self._alive() else 0)

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _supervise(self) -> None:
        """Restart=on-failure: a child that died unclean while wanted is started again after restart_sec."""
        process = self._process
        if not self._wanted or process is None or process.poll() is None:
            return
        if process.returncode in _CLEAN_EXITS:  # not a failure for Restart=on-failure: not restarted
            self._wanted = False
            return
        now = self._monotonic()
        if self._died_at is None:
            self._died_at = now
        if now - self._died_at < self._restart_sec:
            return
        while self._starts and now - self._starts[0] >= self._interval:
            self._starts.popleft()
        if len(self._starts) >= self._burst:
            self._wanted = False  # start limit hit: "failed"
            self._failed_at = now
            return
        self._died_at = None
        self._restarts += 1
        self._spawn()

    def _spawn(self) -> None:
        self._starts.append(self._monotonic())
        output: Any = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(self.argv, env=self._env, cwd=self._cwd, stdout=output,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if output is not subprocess.DEVNULL:
                output.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
