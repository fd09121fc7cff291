"""The Linux watchdog device (softdog on a node; a simulator in tests and the drill), as Patroni uses it.

- `test()` at agent start, only once MinIO is confirmed stopped: open the device, set the timeout (ioctl
  WDIOC_SETTIMEOUT, verified with WDIOC_GETTIMEOUT), then magic-close it ('V', then close: the kernel stops the
  timer). Success -> `ready`, failure -> `unavailable`: with `watchdog: required` the node then refuses the active
  role. An agent that starts while MinIO may still run (its stop could not be confirmed) arms instead.
- `arm()` before every MinIO start: open and keep the device open, set the timeout, feed once -> `armed`.
  From then on the kernel resets the node unless `feed()` writes to the device every `timeout` seconds.
- `disarm()` only once MinIO is confirmed stopped (and the node is not active): 'V', then close -> `ready`.

The device is opened O_WRONLY | O_NONBLOCK | O_CLOEXEC: a simulator FIFO without a reader then fails at once
(ENXIO) instead of blocking the agent, and a restarted MinIO never inherits the descriptor.

False-reset risk (what the shipped W = 1 s costs): an active node whose agent cannot run its guard thread for W
seconds (a GIL stall, memory thrash, a paused VM, a blocked write in the guard) is reset by the kernel, MinIO with
it. A slow or unreachable state table never resets a node: the guard kills MinIO when the lease ends and keeps
feeding once MinIO is confirmed stopped, unless EFS was failing or hung at that kill (then the node is left to
reset: a killed MinIO's dirty NFS pages must not reach EFS later). A standby is armed only while a MinIO it could
not stop may still run.

Only two kinds of path are accepted: a character device (the real one; the ioctls set and verify its timeout) or
a FIFO (the drill's simulator and the tests: a reader that kills the node's processes when no byte arrives in
time; it skips the two ioctls, the simulator is told its timeout by whoever starts it). Anything else (a regular
file, a directory, a socket) is `unavailable`: a file would report `armed` with nothing behind it. Every other
step (open, feed byte, magic close) is the same code path.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
import threading

from node_agent.decision import WATCHDOG_ARMED, WATCHDOG_OFF, WATCHDOG_READY, WATCHDOG_UNAVAILABLE

log = logging.getLogger("node_agent.watchdog")

# <linux/watchdog.h>: _IOWR('W', 6, int) and _IOR('W', 7, int).
WDIOC_SETTIMEOUT = 0xC0045706
WDIOC_GETTIMEOUT = 0x80045707
MAGIC_CLOSE = b"V"
FEED_BYTE = b"1"
OPEN_FLAGS = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC


class WatchdogError(OSError):
    pass


class Watchdog:
    """One watchdog device. Thread-safe: the guard thread feeds while the reconcile loop arms/disarms."""

    def __init__(self, path: str, timeout_seconds: int, *, required: bool = True) -> None:
        self.path = path
        self.timeout_seconds = int(timeout_seconds)
        self.required = required
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._state = WATCHDOG_READY if required else WATCHDOG_OFF
        self.last_error = ""

    @property
    def state(self) -> str:
        """armed | ready | unavailable | off (the node item's `watchdog`)."""
        return self._state

    @property
    def armed(self) -> bool:
        return self._fd is not None

    def test(self) -> bool:
        """Open, set the timeout, magic-close. True (state `ready`) if the device works; `off` always passes."""
        if not self.required:
            return True
        with self._lock:
            if self._fd is not None:
                return True
            try:
                fd = self._open()
                self._close_magic(fd)
            except OSError as error:
                self._unavailable(error)
            else:
                self._state = WATCHDOG_READY
        if self._state == WATCHDOG_UNAVAILABLE:
            log.error("watchdog unavailable: %s", self.last_error)
            return False
        return True

    def arm(self) -> bool:
        """Open and keep open (the kernel timer runs from now on), feed once. True if armed (or `off`)."""
        if not self.required:
            return True
        with self._lock:
            if self._fd is not None:
                return True
            try:
                fd = self._open()
                try:
                    os.write(fd, FEED_BYTE)
                except OSError:
                    self._close_magic(fd)
                    raise
            except OSError as error:
                self._unavailable(error)
            else:
                self._fd = fd
                self._state = WATCHDOG_ARMED
        if self._fd is None:
            log.error("watchdog cannot be armed: %s", self.last_error)
            return False
        return True

    def feed(self) -> bool:
        """Write one byte to an armed device. False if not armed or the write failed (the device then resets)."""
        with self._lock:
            if self._fd is None:
                return False
            try:
                os.write(self._fd, FEED_BYTE)
            except OSError as error:
                self.last_error = f"watchdog feed failed: {error}"
                return False
            return True

    def disarm(self) -> None:
        """Magic close: the kernel stops the timer. Call only once MinIO is confirmed stopped."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                self._close_magic(fd)
            except OSError as error:
                # The timer may keep running (unexpected close): report it; MinIO is already stopped.
                self._unavailable(error)
            else:
                self._state = WATCHDOG_READY
        if self._state == WATCHDOG_UNAVAILABLE:
            log.error("watchdog magic close failed: %s", self.last_error)

    def _open(self) -> int:
        try:
            fd = os.open(self.path, OPEN_FLAGS)
        except OSError as error:
            raise WatchdogError(error.errno, f"cannot open watchdog device {self.path}: {error.strerror}") from None
        try:
            mode = os.fstat(fd).st_mode
        except OSError as error:
            os.close(fd)
            raise WatchdogError(error.errno, f"cannot inspect watchdog device {self.path}: {error.strerror}") \
                from None
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            os.close(fd)  # nothing written: it is not a device
            raise WatchdogError(errno.ENODEV, f"{self.path} is not a watchdog device (neither a character device "
                                              f"nor the drill's FIFO simulator)")
        try:
            if stat.S_ISCHR(mode):
                self._set_timeout(fd)
        except OSError:
            self._close_magic(fd)
            raise
        return fd

    def _set_timeout(self, fd: int) -> None:
        fcntl.ioctl(fd, WDIOC_SETTIMEOUT, struct.pack("i", self.timeout_seconds))
        (actual,) = struct.unpack("i", fcntl.ioctl(fd, WDIOC_GETTIMEOUT, struct.pack("i", 0)))
        if actual != self.timeout_seconds:
            raise WatchdogError(0, f"watchdog {self.path} timeout is {actual}s, wanted {self.timeout_seconds}s")

    @staticmethod
    def _close_magic(fd: int) -> None:
        try:
            os.write(fd, MAGIC_CLOSE)
        finally:
            os.close(fd)

    def _unavailable(self, error: OSError) -> None:
        """Called with the lock held: no logging here (the caller logs after releasing it)."""
        self.last_error = str(error)
        self._state = WATCHDOG_UNAVAILABLE
