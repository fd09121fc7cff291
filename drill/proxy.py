"""HTTP proxy between the checker and moto.

- Armed, it lets the first successful ReplaceRoute/CreateRoute reach moto and then kills the checker's sandbox
  before the answer gets back: a run that died halfway through. (The checker writes all route tables at once:
  writes already in flight still reach moto, and their answers find the sandbox gone.)
- It records when each of the checker's Scans of the state table was answered: one per probe cycle, so the
  largest interval between two is the probe gap the drill reports (measured outside the checker, which reports
  the same as its ProbeGapSeconds metric).
- Throttling, it answers the named EC2 actions (DescribeInstances, DescribeRouteTables) itself with EC2's
  throttling error (HTTP 400, `RequestLimitExceeded` in EC2's error XML), as the account-wide API rate limit does
  during an incident; every other call passes.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTE_ACTIONS = (b"Action=ReplaceRoute", b"Action=CreateRoute")
DESCRIBE_ACTIONS = ("DescribeInstances", "DescribeRouteTables")
THROTTLE_STATUS = 400


def throttling_error(request_id: str = "drill-throttled") -> bytes:
    """EC2's error document for RequestLimitExceeded (botocore reads the code and retries it as throttling)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
            '<Message>Request limit exceeded.</Message></Error></Errors>'
            f'<RequestID>{request_id}</RequestID></Response>').encode()


def ec2_action(body: bytes) -> str | None:
    """The Action of an EC2 query-protocol request body."""
    for pair in body.split(b"&"):
        if pair.startswith(b"Action="):
            return pair[len(b"Action="):].decode(errors="replace")
    return None
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection"})


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A killed sandbox resets its connections (pipe broken, answers unread): expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class KillSwitchProxy:
    def __init__(self, listen_port: int, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._armed: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self.fired_at: float | None = None
        self._throttled: frozenset[str] = frozenset()
        self.throttled_calls: dict[str, int] = {}
        self._scans: list[float] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._forward(self)

            do_GET = do_POST

            def log_message(self, *_: object) -> None:
                return

        self._server = _Server(("127.0.0.1", listen_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="proxy", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def arm(self, kill: Callable[[], None]) -> None:
        with self._lock:
            self._armed, self.fired_at = kill, None

    def disarm(self) -> None:
        """Undo arm() and throttle()."""
        with self._lock:
            self._armed = None
            self._throttled = frozenset()

    def throttle(self, actions: tuple[str, ...] = DESCRIBE_ACTIONS) -> None:
        with self._lock:
            self._throttled = frozenset(actions)
            self.throttled_calls = {}

    def scan_times(self, since: float, until: float) -> list[float]:
        with self._lock:
            return [t for t in self._scans if since <= t <= until]

    def _throttle_answer(self, request: BaseHTTPRequestHandler, body: bytes) -> bool:
        action = ec2_action(body)
        with self._lock:
            if action is None or action not in self._throttled:
                return False
            self.throttled_calls[action] = self.throttled_calls.get(action, 0) + 1
        payload = throttling_error()
        request.send_response(THROTTLE_STATUS)
        request.send_header("Content-Type", "text/xml;charset=UTF-8")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)
        return True

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if self._throttle_answer(request, body):
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        upstream = http.client.HTTPConnection("127.0.0.1", self._upstream_port, timeout=10)
        try:
            upstream.request(request.command, request.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        if response.status == 200 and request.headers.get("X-Amz-Target", "").endswith(".Scan"):
            with self._lock:
                self._scans.append(time.time())
        if response.status == 200 and any(action in body for action in ROUTE_ACTIONS) and self._fire():
            request.close_connection = True
            return  # the sandbox is dead: nobody reads an answer
        request.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def _fire(self) -> bool:
        with self._lock:
            kill, self._armed = self._armed, None
        if kill is None:
            return False
        kill()
        self.fired_at = time.time()
        return True

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: never call it before start()
            self._server.shutdown()
        self._server.server_close()
