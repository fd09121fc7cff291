"""Start/stop/inspect MinIO: systemd on a node, a plain subprocess in the local drill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

# States in which the unit's process can be running; anything not "inactive"/"failed" may still serve.
_STOPPED_STATES = frozenset({"inactive", "failed"})


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
        """True if the service is or may be running (errors answer True: never claim a stop we cannot see)."""
        ...


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class SystemdController:
    def __init__(self, unit: str, *, runner: Runner = subprocess.run, timeout_seconds: float = 60) -> None:
        self.unit = unit
        self._run = runner
        self._timeout = timeout_seconds

    def start(self) -> None:
        # --no-block: MinIO's start (credentials fetch, Type=notify) must not stall heartbeats and the lease.
        self._systemctl("start", "--no-block", self.unit, check=True)

    def stop(self) -> None:
        # Blocking on purpose: serving=false is reported only after the unit has really stopped.
        self._systemctl("stop", self.unit, check=True)

    def kill(self) -> None:
        # No graceful drain: an unacknowledged request is the client's to retry. Then `stop` cancels the restart
        # that Restart=on-failure would schedule for a killed MinIO. The caller confirms with is_running().
        self._systemctl("kill", "--signal=SIGKILL", self.unit, check=False)
        self._systemctl("stop", self.unit, check=False)

    def is_running(self) -> bool:
        try:
            result = self._systemctl("show", "--property=ActiveState,TasksCurrent", self.unit, check=False)
        except (OSError, subprocess.SubprocessError):
            return True
        properties = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        if properties.get("ActiveState", "unknown") not in _STOPPED_STATES:
            return True
        # A "failed" stop can leave a process stuck in uninterruptible NFS I/O inside the unit's cgroup: it may
        # still write to EFS, so the unit counts as stopped only once its cgroup is empty.
        tasks = properties.get("TasksCurrent", "")
        return tasks.isdigit() and 0 < int(tasks) < 2**63

    def _systemctl(self, *args: str, check: bool) -> subprocess.CompletedProcess[str]:
        return self._run(["systemctl", *args], check=check, capture_output=True, text=True,
                         timeout=self._timeout)


class ProcessController:
    """Runs `argv` as a child process (own process group), e.g. a local S3 server in the drill.

    `env` is added to the agent's environment; `log_path` receives the child's stdout and stderr.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None,
                 *, log_path: str | None = None, stop_timeout_seconds: float = 10) -> None:
        self.argv = list(argv)
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._log_path = log_path
        self._stop_timeout = stop_timeout_seconds
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.is_running():
            return
        output: Any = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(self.argv, env=self._env, cwd=self._cwd, stdout=output,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if output is not subprocess.DEVNULL:
                output.close()

    def stop(self) -> None:
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
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._signal(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(self._stop_timeout)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
