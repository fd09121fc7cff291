"""EFS write monitor: write 1 byte to <mount>/.efs-ha/monitor-<node>.txt, fsync, read it back.

The I/O runs in a worker thread bounded by a timeout, because a hung NFS mount blocks a syscall forever; that
includes the mount check (os.path.ismount stats the mount point, which blocks on a hung NFS mount too).
While an earlier probe is still stuck, no new thread is started and the probe keeps failing.

`hung()` tells the agent, at a kill for a lost lease or at any MinIO stop, whether EFS I/O is stuck right now (an
earlier write that timed out and has not returned, or the current one in flight for longer than HUNG_AFTER_SECONDS)
even when the last published result still says "ok". A result that timed out says so too (`hung`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# A probe write (one byte, fsync, read back) in flight for longer than this counts as hung for the guard.
HUNG_AFTER_SECONDS = 0.5


@dataclass(frozen=True)
class EfsResult:
    ok: bool
    detail: str
    hung: bool = False  # the write did not finish in time (or an earlier one is still stuck): the mount is hung


def write_and_verify(path: Path, payload: bytes) -> None:
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    read_back = path.read_bytes()
    if read_back != payload:
        raise OSError(f"read back {read_back!r}, wrote {payload!r}")


def _ismount(path: Path) -> bool:
    return os.path.ismount(path)  # looked up at call time, so a test can replace os.path.ismount


class EfsProbe:
    def __init__(self, mount_point: str, node: str, timeout_seconds: float, *, require_mount: bool = True,
                 writer: Callable[[Path, bytes], None] = write_and_verify,
                 ismount: Callable[[Path], bool] | None = None) -> None:
        self._mount = Path(mount_point)
        self.path = self._mount / ".efs-ha" / f"monitor-{node}.txt"
        self._timeout = timeout_seconds
        self._require_mount = require_mount
        self._writer = writer
        self._ismount = ismount if ismount is not None else _ismount
        self._stuck: threading.Thread | None = None
        self._current: tuple[threading.Thread, float] | None = None  # the attempt in flight, with its start
        self._counter = 0

    def hung(self, now: float | None = None) -> bool:
        """EFS I/O is stuck right now: a timed-out write has not returned, or the current one is overdue."""
        stuck, current = self._stuck, self._current
        if stuck is not None and stuck.is_alive():
            return True
        if current is None:
            return False
        worker, started = current
        return worker.is_alive() and (time.monotonic() if now is None else now) - started > HUNG_AFTER_SECONDS

    def run(self) -> EfsResult:
        if self._stuck is not None and self._stuck.is_alive():
            return EfsResult(False, "an earlier EFS write is still hung", hung=True)
        self._counter = (self._counter + 1) % 10
        payload = str(self._counter).encode()
        outcome: list[EfsResult] = []
        worker = threading.Thread(target=self._attempt, args=(payload, outcome), name="efs-probe",
                                  daemon=True)
        self._current = (worker, time.monotonic())
        worker.start()
        worker.join(self._timeout)
        if worker.is_alive():
            self._stuck = worker
            return EfsResult(False, f"EFS write did not finish within {self._timeout:g}s", hung=True)
        return outcome[0] if outcome else EfsResult(False, "EFS probe thread ended without a result")

    def _attempt(self, payload: bytes, outcome: list[EfsResult]) -> None:
        try:
            # An unmounted EFS would silently write to the local disk: that is a failure, not a success.
            if self._require_mount and not self._ismount(self._mount):
                outcome.append(EfsResult(False, f"{self._mount} is not a mount point"))
                return
            self._writer(self.path, payload)
        except OSError as error:
            outcome.append(EfsResult(False, f"EFS write failed: {error}"))
        else:
            outcome.append(EfsResult(True, "ok"))
