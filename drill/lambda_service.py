"""The Lambda service around the checker: a 1-minute schedule and no reserved concurrency (the stack's default):
each invocation runs in a free warm sandbox, or in a new one (a cold start) when all are busy, up to the account's
concurrency (a trigger beyond it is dropped: the rule has retry_attempts=0). The loop lease in the state table,
not this service, keeps one probe loop: a scheduled run starts beside the running loop and takes it over."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drill.config import SCHEDULE_SECONDS, base_env
from drill.lambda_host import RESULT_MARK
from drill.procs import Child

SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
# A new account's Lambda concurrency quota: the most sandboxes the drill starts at once.
ACCOUNT_CONCURRENCY = 10


@dataclass
class _Sandbox:
    host: Child
    busy_id: int | None = None
    probe_loop: bool = False  # the running invocation is a probe-loop one (no "action")


class LambdaService:
    def __init__(self, env: dict[str, str], log_dir: Path, log: Callable[[str], None], timeout: float,
                 concurrency: int = ACCOUNT_CONCURRENCY) -> None:
        self._env = {**base_env(), **env}
        self.timeout = timeout
        self._concurrency = concurrency
        self._log_dir = log_dir
        self._log = log
        self._lock = threading.Condition()
        self._sandboxes: list[_Sandbox] = []
        self._started = 0
        self._next_id = 0
        self._results: dict[int, dict[str, Any]] = {}
        self.invocations: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._schedule, name="schedule", daemon=True)

    # ----- sandboxes -----
    def _sandbox(self) -> _Sandbox | None:
        """Caller holds the lock. A free warm sandbox, else a new one (cold start), else None (throttled)."""
        self._reap()
        free = next((box for box in self._sandboxes if box.busy_id is None), None)
        if free is not None or len(self._sandboxes) >= self._concurrency:
            return free
        self._started += 1
        # The first sandbox keeps the old log name, so earlier runs' logs read the same.
        name = "checker" if self._started == 1 else f"checker-{self._started}"
        box = _Sandbox(Child(name, [sys.executable, "-m", "drill.lambda_host"], self._env, self._log_dir,
                             on_line=self._on_line, stdin=True))
        self._sandboxes.append(box)
        return box

    def _reap(self) -> None:
        """Caller holds the lock. A sandbox that died fails its invocation and is replaced on demand."""
        for box in [box for box in self._sandboxes if not box.host.alive()]:
            if box.busy_id is not None:
                self._log(f"checker invocation {box.busy_id} died (sandbox crashed)")
                self._results[box.busy_id] = {"id": box.busy_id, "result": {"ok": False, "reason": "crashed"}}
            box.host.stop()
            self._sandboxes.remove(box)

    @property
    def host_pid(self) -> int | None:
        """The sandbox running the probe loop (the newest busy probe-loop invocation's)."""
        with self._lock:
            loops = [box for box in self._sandboxes if box.busy_id is not None and box.probe_loop]
            return max(loops, key=lambda box: box.busy_id or 0).host.pid if loops else None

    def _on_line(self, line: str) -> None:
        if not line.startswith(RESULT_MARK):
            return
        answer = json.loads(line[len(RESULT_MARK):])
        with self._lock:
            self._results[answer["id"]] = answer
            for box in self._sandboxes:
                if box.busy_id == answer["id"]:
                    box.busy_id, box.probe_loop = None, False
            self._lock.notify_all()

    # ----- invoking -----
    def invoke(self, event: dict[str, Any], trigger: str) -> int | None:
        """Asynchronous invoke; None when throttled (every sandbox the concurrency allows is busy)."""
        with self._lock:
            box = self._sandbox()
            if box is None:
                self.invocations.append({"t": time.time(), "trigger": trigger, "throttled": True})
                return None
            self._next_id += 1
            box.busy_id, box.probe_loop = self._next_id, "action" not in event
            box.host.send(json.dumps({"id": self._next_id, "event": event, "timeout": self.timeout}))
            self.invocations.append({"t": time.time(), "trigger": trigger, "id": self._next_id,
                                     "sandbox": box.host.pid})
            return self._next_id

    def invoke_when_free(self, event: dict[str, Any], trigger: str, timeout: float) -> dict[str, Any]:
        """An operator's synchronous invoke, retried until the slot is free (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            request = self.invoke(event, trigger)
            if request is not None:
                return self.wait_result(request, self.timeout + 5)
            time.sleep(0.2)
        raise TimeoutError(f"every checker sandbox stayed busy for {timeout:g}s")

    def wait_result(self, request: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while request not in self._results and time.monotonic() < deadline:
                self._reap()
                self._lock.wait(0.2)
            return self._results.get(request, {"id": request, "result": {"ok": False, "reason": "timeout"}})

    def busy(self) -> bool:
        """A probe loop is running (or a run waits to take it over)."""
        with self._lock:
            self._reap()
            return any(box.busy_id is not None and box.probe_loop for box in self._sandboxes)

    # ----- schedule -----
    def start(self) -> None:
        with self._lock:
            self._sandbox()  # one warm sandbox before the first scheduled run
        self._scheduler.start()

    def _schedule(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            if self.invoke(SCHEDULED_EVENT, "schedule") is None:
                self._log("scheduled invocation throttled (concurrency): dropped, as retry_attempts=0")
            next_tick += SCHEDULE_SECONDS
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            boxes, self._sandboxes = list(self._sandboxes), []
        for box in boxes:
            box.host.stop(timeout=5)
