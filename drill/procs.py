"""Child processes of the orchestrator: started with a log file or a line reader, stopped by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

LineSink = Callable[[str], None]


class Child:
    """One child process; stdout lines go to `on_line` (if given) and to its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 on_line: LineSink | None = None, stdin: bool = False) -> None:
        self.name = name
        self._log = open(log_dir / f"{name}.log", "a", buffering=1)  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        self._on_line = on_line
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, line: str) -> bool:
        stream: IO[str] | None = self.process.stdin
        if stream is None or not self.alive():
            return False
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            return False
        return True

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):  # the log may already be closed at shutdown
                self._log.write(line)
            if self._on_line is not None:
                try:
                    self._on_line(line.rstrip("\n"))
                except Exception as error:  # a bad line must not kill the reader
                    self._log.write(f"[drill] line handler failed: {error!r}\n")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.process.wait(5)
        self._reader.join(2)
        self._log.close()

    def wait_line_reader(self, timeout: float) -> None:
        self._reader.join(timeout)
