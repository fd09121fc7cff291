"""Runs inside one node's namespace: every ~50 ms asks the node's S3 server (127.0.0.1:9000) whether it answers,
and prints `<time> <0|1>`; also answers the node's name on the identity port, so the client can tell which node
the VIP reached. `python -m drill.sampler NODE`; stops when its stdout closes or after --max-seconds."""

from __future__ import annotations

import argparse
import socket
import socketserver
import sys
import threading
import time

from drill.config import IDENTITY_PORT, S3_PORT

INTERVAL_SECONDS = 0.05
TIMEOUT_SECONDS = 0.25


def answering(port: int = S3_PORT) -> bool:
    """A full HTTP exchange, not just a connect: a half-started or hung server does not count as serving."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS) as sock:
            sock.settimeout(TIMEOUT_SECONDS)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


def serve_identity(node: str) -> socketserver.TCPServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(node.encode())

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("0.0.0.0", IDENTITY_PORT), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("node")
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    serve_identity(args.node)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        up = answering()
        try:
            print(f"{time.time():.3f} {int(up)}", flush=True)
        except BrokenPipeError:
            return 0
        time.sleep(max(0.0, INTERVAL_SECONDS - (time.monotonic() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
