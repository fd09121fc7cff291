"""The cluster's client, run inside the client namespace: it reaches the cluster only through the VIP.

`python -m drill.client --prefix P`: writes new objects and reads back acknowledged ones in a loop, printing one
JSON line per operation and per VIP identity probe; on the stdin line "verify" it stops, reads every acknowledged
object back, prints a summary and exits. Bounded by --max-seconds and --max-ops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import sys
import threading
import time
from typing import Any

import boto3
from botocore.config import Config

from drill.config import BUCKET, IDENTITY_PORT, S3_PORT, VIP

PAUSE_SECONDS = 0.05
IDENTITY_EVERY_SECONDS = 0.1
_lock = threading.Lock()


def emit(record: dict[str, Any]) -> None:
    with _lock:
        print(json.dumps(record), flush=True)


def s3_client() -> Any:
    config = Config(connect_timeout=0.5, read_timeout=1.0, retries={"max_attempts": 1, "mode": "standard"},
                    s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return boto3.client("s3", endpoint_url=f"http://{VIP}:{S3_PORT}", config=config,
                        aws_access_key_id=os.environ.get("DRILL_S3_USER", "drill"),
                        aws_secret_access_key=os.environ.get("DRILL_S3_PASSWORD", "drill-secret"))


def vip_identity() -> str | None:
    try:
        with socket.create_connection((VIP, IDENTITY_PORT), timeout=0.3) as sock:
            sock.settimeout(0.3)
            return sock.recv(64).decode() or None
    except OSError:
        return None


def identity_loop(stop: threading.Event) -> None:
    while not stop.wait(IDENTITY_EVERY_SECONDS):
        emit({"k": "id", "t": time.time(), "node": vip_identity()})


def ensure_bucket(s3: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            s3.head_bucket(Bucket=BUCKET)
            return
        except Exception:
            try:
                s3.create_bucket(Bucket=BUCKET)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


class Workload:
    def __init__(self, s3: Any, prefix: str) -> None:
        self.s3 = s3
        self.prefix = prefix
        self.acked: dict[str, str] = {}  # key -> sha256 of what the server acknowledged
        self._seq = 0

    def put(self) -> None:
        self._seq += 1
        key = f"{self.prefix}/{self._seq:06d}"
        body = os.urandom(random.randint(512, 8192))
        digest = hashlib.sha256(body).hexdigest()
        started = time.time()
        try:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        except Exception as error:
            emit({"k": "put", "t0": started, "t1": time.time(), "ok": 0, "key": key, "err": type(error).__name__})
            return
        self.acked[key] = digest
        emit({"k": "put", "t0": started, "t1": time.time(), "ok": 1, "key": key, "sha": digest})

    def get(self) -> None:
        if not self.acked:
            return
        key = random.choice(list(self.acked))
        started = time.time()
        record: dict[str, Any] = {"k": "get", "t0": started, "key": key}
        try:
            data = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except Exception as error:
            record.update(ok=0, err=type(error).__name__)
        else:
            good = hashlib.sha256(data).hexdigest() == self.acked[key]
            record.update(ok=int(good), bad=not good)
        record["t1"] = time.time()
        emit(record)

    def verify(self, attempts: int = 10) -> list[str]:
        """Every acknowledged object, read back through the VIP; transient errors are retried."""
        lost = []
        for key, digest in self.acked.items():
            for attempt in range(attempts):
                try:
                    data = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                    ok = hashlib.sha256(data).hexdigest() == digest
                    break
                except self.s3.exceptions.NoSuchKey:
                    ok = False
                    break
                except Exception:
                    ok = False
                    if attempt < attempts - 1:
                        time.sleep(0.5)
            if not ok:
                lost.append(key)
        return lost


def wait_command(commands: list[str]) -> None:
    for line in sys.stdin:
        commands.append(line.strip())
        if line.strip() in ("verify", "quit"):
            return
    commands.append("quit")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--max-ops", type=int, default=40000)
    args = parser.parse_args()
    s3 = s3_client()
    ensure_bucket(s3)
    work = Workload(s3, args.prefix)
    commands: list[str] = []
    threading.Thread(target=wait_command, args=(commands,), daemon=True).start()
    stop_identity = threading.Event()
    threading.Thread(target=identity_loop, args=(stop_identity,), daemon=True).start()
    emit({"k": "ready", "t": time.time()})
    deadline = time.monotonic() + args.max_seconds
    for op in range(args.max_ops):
        if commands or time.monotonic() > deadline:
            break
        if op % 2 == 0:
            work.put()
        else:
            work.get()
        time.sleep(PAUSE_SECONDS)
    while not commands and time.monotonic() < deadline:
        time.sleep(0.1)
    stop_identity.set()
    if commands and commands[-1] == "verify":
        lost = work.verify()
        emit({"k": "verify", "t": time.time(), "checked": len(work.acked), "lost": lost})
    return 0


if __name__ == "__main__":
    sys.exit(main())
