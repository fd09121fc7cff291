"""`python -m drill.inflight`: a slow GET in flight through the VIP when the active node dies, read by two boto3
clients side by side, one with boto3's stock settings and one with the README's recommended ones ("Clients").

Run in the client namespace (it reaches the cluster only through the VIP). It PUTs one object of --size-mib MiB
and prints {"k": "ready"}; on the stdin line "go" both readers GET it and read the body at --rate-mib MiB/s (an
application that streams slowly, so the GET is still in flight when the fault comes), each printing
{"k": "reading", ...} once data flows. The application code is the same for both: on any error it records it and
asks again with a ranged GET from the offset it has (from 0 when the server ignores the Range: the drill's S3
stand-in, local-s3-server, does), until the object is complete (checked with SHA-256) or
--deadline s have passed. Each reader prints one {"k": "result", ...}: its settings, when it finished (wall clock,
the drill's clock too), whether the data was complete and intact, and every error the application saw.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from typing import Any

import boto3
from botocore.config import Config

from drill.config import BUCKET, S3_PORT, VIP

KEY = "inflight/large-object"
CHUNK = 256 * 1024
# Not timing settings: what the drill's S3 stand-in needs (IP endpoint, no trailing checksums).
COMPAT: dict[str, Any] = {"s3": {"addressing_style": "path"}, "request_checksum_calculation": "when_required",
                          "response_checksum_validation": "when_required"}
# The README's recommendation ("Clients"): a stalled connection is given up after 5 s instead of 60 s, a connect
# to a dead node after 1 s, and the SDK retries a failed request (connect errors, timeouts, 5xx) for longer than
# a failover takes.
RECOMMENDED: dict[str, Any] = {"connect_timeout": 1, "read_timeout": 5,
                               "retries": {"mode": "standard", "total_max_attempts": 10}}
SETTINGS: dict[str, dict[str, Any]] = {"stock": {}, "recommended": RECOMMENDED}
_lock = threading.Lock()


def emit(record: dict[str, Any]) -> None:
    with _lock:
        print(json.dumps(record), flush=True)


def client(settings: dict[str, Any]) -> Any:
    return boto3.client("s3", endpoint_url=f"http://{VIP}:{S3_PORT}", config=Config(**COMPAT, **settings),
                        aws_access_key_id=os.environ.get("DRILL_S3_USER", "drill"),
                        aws_secret_access_key=os.environ.get("DRILL_S3_PASSWORD", "drill-secret"))


def upload(size: int) -> str:
    body = os.urandom(size)
    s3 = client(RECOMMENDED)
    for _ in range(30):
        try:
            s3.head_bucket(Bucket=BUCKET)
            break
        except Exception:  # the drill's client creates the bucket: wait for it
            time.sleep(1)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    return hashlib.sha256(body).hexdigest()


def read_slowly(name: str, size: int, digest: str, rate: float, deadline: float, go: threading.Event) -> None:
    s3 = client(SETTINGS[name])
    go.wait()
    started = time.time()
    data = bytearray()
    errors: list[dict[str, Any]] = []
    attempts = 0
    announced = False
    pause = CHUNK / rate
    while len(data) < size and time.time() - started < deadline:
        attempts += 1
        try:
            extra = {"Range": f"bytes={len(data)}-"} if data else {}
            response = s3.get_object(Bucket=BUCKET, Key=KEY, **extra)
            if data and "ContentRange" not in response:
                data.clear()  # the server ignored the Range (HTTP allows it): the whole object again
            body = response["Body"]
            while len(data) < size:
                chunk = body.read(CHUNK)
                if not chunk:
                    break
                data += chunk
                if not announced:
                    announced = True
                    emit({"k": "reading", "client": name, "t": time.time()})
                time.sleep(pause)
        except Exception as error:  # what the application sees, recorded as is
            errors.append({"t": time.time(), "type": type(error).__name__, "error": str(error)[:200],
                           "offset": len(data)})
    emit({"k": "result", "client": name, "settings": SETTINGS[name] or "boto3 defaults", "started": started,
          "done": time.time() if len(data) >= size else None, "bytes": len(data),
          "intact": len(data) == size and hashlib.sha256(bytes(data)).hexdigest() == digest,
          "attempts": attempts, "errors": errors})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill.inflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=float, default=48)
    parser.add_argument("--rate-mib", type=float, default=4, help="how fast the application reads the body")
    parser.add_argument("--deadline", type=float, default=150, help="the application gives up after this")
    args = parser.parse_args(argv)
    size = int(args.size_mib * 1024 * 1024)
    digest = upload(size)
    go = threading.Event()
    readers = [threading.Thread(target=read_slowly, args=(name, size, digest, args.rate_mib * 1024 * 1024,
                                                          args.deadline, go), daemon=True) for name in SETTINGS]
    for reader in readers:
        reader.start()
    emit({"k": "ready", "t": time.time(), "size": size})
    for line in sys.stdin:
        if line.strip() == "go":
            go.set()
            break
    for reader in readers:
        reader.join(args.deadline + 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
