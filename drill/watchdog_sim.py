"""A simulated Linux watchdog device for one drill node: a FIFO the agent opens as WATCHDOG_DEVICE.

The node agent uses it exactly as it uses /dev/watchdog (open O_WRONLY|O_NONBLOCK, write a byte to feed, write
'V' then close to disarm); only the two ioctls are skipped, because the path is not a character device. The drill
never opens /dev/watchdog and never loads softdog: this process is the whole "kernel side".

Semantics (those of the kernel's watchdog_dev core):
- a writer's open arms the timer (and counts as a feed): seen through inotify IN_OPEN, because a FIFO's reader
  gets no event when a writer opens;
- every byte written is a feed;
- a writer's close (inotify IN_CLOSE_WRITE) disarms only if the last byte it wrote was 'V' (magic close);
  a close without it, or the writer dying, leaves the timer running ("watchdog did not stop!");
- armed and not fed for `timeout` seconds: the node is reset.

The reader keeps the FIFO open O_RDONLY|O_NONBLOCK and polls it; it also holds one write end itself (opened
once, at start), so the FIFO never reports EOF/POLLHUP when a writer goes away and never has to be reopened:
a reopen would race with the agent's open (ENXIO) and would make its own IN_OPEN events ambiguous. It must be up
before the agent starts: without a reader the agent's open fails with ENXIO and the agent reports the watchdog
`unavailable`.

`python -m drill.watchdog_sim --device PATH --timeout W --namespace NS`: the reset SIGKILLs every process in
the node's network namespace except the drill's sampler (the observer, not part of the node); prints one JSON
line per event (ready, armed, disarmed, reset); the stdin line `poweroff` returns the device to its power-on
state (disarmed), for a node the drill killed as a whole. A separate process, so that no thread of the drill's
orchestrator (busy with moto polls and log readers) can delay a reset.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_OPEN = 0x00000020
_EVENT = struct.Struct("iIII")
MAGIC_CLOSE = ord("V")
POLL_MS = 20
SPARED_MARKERS = ("drill.sampler",)


class Inotify:
    """The few inotify calls the simulator needs (the standard library has no binding)."""

    def __init__(self, path: Path, mask: int) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if self._libc.inotify_add_watch(self.fd, str(path).encode(), mask) < 0:
            error = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(error, f"inotify_add_watch {path} failed")

    def read(self) -> list[int]:
        """The masks of the queued events, in order."""
        masks: list[int] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return masks
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                masks.append(mask)
                offset += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


class SimulatedWatchdog:
    """The device's state machine; `poll_once` is one step, `run` loops until stopped.

    `on_reset()` is called (from the polling thread) when the armed device was not fed for `timeout` seconds;
    the device is then back in its power-on state (disarmed), like a freshly booted machine's.
    """

    def __init__(self, path: Path, timeout: float, on_reset: Callable[[], None],
                 on_event: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self._on_reset = on_reset
        self._on_event = on_event or (lambda _kind: None)
        self._clock = clock
        self._lock = threading.Lock()
        self.armed = False
        self.last_feed = 0.0
        self.feeds = 0
        self.resets = 0
        self._last_byte: int | None = None
        if self.path.exists():
            self.path.unlink()
        os.mkfifo(self.path, 0o600)
        self._inotify = Inotify(self.path, IN_OPEN | IN_CLOSE_WRITE)
        self._reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Our own write end: the FIFO then never signals EOF, and these two opens are the only ones of ours.
        self._keeper = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Their IN_OPEN events are dropped here (inotify merges identical unread events, so they cannot be
        # counted later); no writer exists yet: the agent starts only once this device is ready.
        self._inotify.read()
        self._poller = select.poll()
        self._poller.register(self._reader, select.POLLIN)
        self._poller.register(self._inotify.fd, select.POLLIN)
        self._closed = False

    # ----- one step -----
    def poll_once(self, wait_ms: int = POLL_MS) -> None:
        self._poller.poll(wait_ms)
        with self._lock:
            if self._closed:
                return
            # Events first, data second: a writer's bytes are in the pipe before its close event is queued.
            masks = self._inotify.read()
            data = self._drain()
            self._apply(masks, data)
            if self.armed and self._clock() - self.last_feed > self.timeout:
                self.armed = False
                self.resets += 1
                fire = True
            else:
                fire = False
        if fire:
            self._on_event("reset")
            self._on_reset()

    def _drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(self._reader, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _apply(self, masks: list[int], data: bytes) -> None:
        now = self._clock()
        opens = closes = 0
        last_open = last_close = -1
        for index, mask in enumerate(masks):
            if mask & IN_OPEN:
                opens += 1
                last_open = index
            if mask & IN_CLOSE_WRITE:
                closes += 1
                last_close = index
        if data:
            self.feeds += len(data)
            self.last_feed = now
            self._last_byte = data[-1]
        if opens and last_open > last_close:
            # The latest event is an open: the timer runs (any close before it is superseded).
            self._arm(now)
        elif closes:
            if opens:
                self._arm(now)  # opened and closed within one step: armed unless that close was magic
            if self._last_byte == MAGIC_CLOSE and self.armed:
                self.armed = False
                self._on_event("disarmed")
            # A close without 'V' (or the writer dying): the timer keeps running.
            self._last_byte = None
        elif self.armed is False and data and self._last_byte != MAGIC_CLOSE:
            # Bytes from a writer whose open we have not seen (cannot happen with inotify; kept for safety).
            self._arm(now)

    def _arm(self, now: float) -> None:
        self.last_feed = now
        if not self.armed:
            self.armed = True
            self._on_event("armed")

    # ----- commands -----
    def power_off(self) -> None:
        """The node was killed as a whole: a dead machine's watchdog resets nothing; it boots disarmed."""
        with self._lock:
            self._drain()
            self._inotify.read()
            if self.armed:
                self.armed = False
                self._on_event("disarmed")
            self._last_byte = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._keeper, self._reader):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._inotify.close()


# ----- the node reset -----
def namespace_pids(namespace: str) -> list[int]:
    """Processes whose network namespace is /run/netns/<namespace> (what `ip netns pids` does)."""
    target = os.stat(f"/run/netns/{namespace}")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            info = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry))
    return pids


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def reset_node(namespace: str) -> list[int]:
    """SIGKILL every process of the node (a reset machine runs nothing), sparing the drill's observer."""
    killed = []
    for pid in namespace_pids(namespace):
        if pid == os.getpid() or any(marker in _cmdline(pid) for marker in SPARED_MARKERS):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(pid)
    return killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill.watchdog_sim")
    parser.add_argument("--device", type=Path, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args(argv)
    out_lock = threading.Lock()

    def emit(record: dict[str, object]) -> None:
        with out_lock:
            print(json.dumps({"t": time.time(), **record}), flush=True)

    def on_reset() -> None:
        at = time.time()
        killed = reset_node(args.namespace)
        emit({"k": "reset", "at": at, "killed": killed})

    def on_event(kind: str) -> None:
        if kind != "reset":  # the reset line is printed by on_reset, with what it killed
            emit({"k": kind})

    device = SimulatedWatchdog(args.device, args.timeout, on_reset, on_event=on_event)
    stop = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "poweroff":
                device.power_off()
                emit({"k": "poweroff"})
        stop.set()  # stdin closed: the drill is gone

    threading.Thread(target=commands, name="commands", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emit({"k": "ready", "device": str(args.device), "timeout": args.timeout})
    try:
        device.run(stop)
    finally:
        device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
