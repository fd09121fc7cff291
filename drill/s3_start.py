"""`python -m drill.s3_start CONTROL_DIR -- SERVER ARGV...`: the drill's S3 server start, as minio.service's.

A real restart of MinIO is not instant: RestartSec, the secret fetch in ExecStartPre and MinIO's own start on EFS
take seconds. This wrapper sleeps for the delay written in CONTROL_DIR/s3-start-delay (seconds; no file: none)
and then execs the server (same pid, so the agent's ProcessController sees one process). With
CONTROL_DIR/s3-crash-on-start present, the start fails after the delay instead (exit 1): a MinIO that keeps
crashing. The scenarios write these files (drill/scenarios.py) and the heal removes them.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

DELAY_FILE = "s3-start-delay"
CRASH_FILE = "s3-crash-on-start"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m drill.s3_start CONTROL_DIR -- SERVER ARGV...", file=sys.stderr)
        return 64
    control, server = Path(argv[0]), argv[2:]
    try:
        delay = float((control / DELAY_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        delay = 0.0
    if delay > 0:
        print(f"s3_start: start delayed {delay:g} s (ExecStartPre + MinIO's start on EFS)", flush=True)
        time.sleep(delay)
    if (control / CRASH_FILE).exists():
        print("s3_start: crashing at start (drill fault)", flush=True)
        return 1
    os.execvp(server[0], server)
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
