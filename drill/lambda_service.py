"""The Lambda service around the checker: a 1-minute schedule, reserved concurrency 1 (a trigger that finds the
slot busy is dropped: the rule has retry_attempts=0), a warm sandbox that is replaced after it dies."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drill.config import SCHEDULE_SECONDS, base_env
from drill.lambda_host import RESULT_MARK
from drill.procs import Child

SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


class LambdaService:
    def __init__(self, env: dict[str, str], log_dir: Path, log: Callable[[str], None], timeout: float) -> None:
        self._env = {**base_env(), **env}
        self.timeout = timeout
        self._log_dir = log_dir
        self._log = log
        self._lock = threading.Condition()
        self._host: Child | None = None
        self._busy_id: int | None = None
        self._next_id = 0
        self._results: dict[int, dict[str, Any]] = {}
        self.invocations: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._schedule, name="schedule", daemon=True)

    # ----- sandbox -----
    def _ensure_host(self) -> Child:
        if self._host is None or not self._host.alive():
            if self._host is not None:
                self._host.stop()
            # A new sandbox: a cold start, as Lambda does after a crashed invocation.
            self._host = Child("checker", [sys.executable, "-m", "drill.lambda_host"], self._env, self._log_dir,
                               on_line=self._on_line, stdin=True)
        return self._host

    @property
    def host_pid(self) -> int | None:
        return self._host.pid if self._host else None

    def _on_line(self, line: str) -> None:
        if not line.startswith(RESULT_MARK):
            return
        answer = json.loads(line[len(RESULT_MARK):])
        with self._lock:
            self._results[answer["id"]] = answer
            if self._busy_id == answer["id"]:
                self._busy_id = None
            self._lock.notify_all()

    def _free(self) -> bool:
        """Caller holds the lock. A sandbox that died frees the slot (its invocation failed)."""
        if self._busy_id is not None and self._host is not None and not self._host.alive():
            self._log(f"checker invocation {self._busy_id} died (sandbox crashed)")
            self._results[self._busy_id] = {"id": self._busy_id, "result": {"ok": False, "reason": "crashed"}}
            self._busy_id = None
        return self._busy_id is None

    # ----- invoking -----
    def invoke(self, event: dict[str, Any], trigger: str) -> int | None:
        """Asynchronous invoke; None when throttled (the only slot is busy)."""
        with self._lock:
            if not self._free():
                self.invocations.append({"t": time.time(), "trigger": trigger, "throttled": True})
                return None
            host = self._ensure_host()
            self._next_id += 1
            self._busy_id = self._next_id
            host.send(json.dumps({"id": self._next_id, "event": event, "timeout": self.timeout}))
            self.invocations.append({"t": time.time(), "trigger": trigger, "id": self._next_id})
            return self._next_id

    def invoke_when_free(self, event: dict[str, Any], trigger: str, timeout: float) -> dict[str, Any]:
        """An operator's synchronous invoke, retried until the slot is free (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            request = self.invoke(event, trigger)
            if request is not None:
                return self.wait_result(request, self.timeout + 5)
            time.sleep(0.2)
        raise TimeoutError(f"the checker's slot stayed busy for {timeout:g}s")

    def wait_result(self, request: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while request not in self._results and time.monotonic() < deadline:
                self._free()
                self._lock.wait(0.2)
            return self._results.get(request, {"id": request, "result": {"ok": False, "reason": "timeout"}})

    def busy(self) -> bool:
        with self._lock:
            return not self._free()

    # ----- schedule -----
    def start(self) -> None:
        with self._lock:
            self._ensure_host()
        self._scheduler.start()

    def _schedule(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            if self.invoke(SCHEDULED_EVENT, "schedule") is None:
                self._log("scheduled invocation throttled (slot busy): dropped, as retry_attempts=0")
            next_tick += SCHEDULE_SECONDS
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._host is not None:
            self._host.stop(timeout=5)
