"""IMDSv2 client: the session token is cached until shortly before it expires (not fetched per call)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_SECONDS = 21600
REFRESH_BEFORE_SECONDS = 300


class ImdsError(RuntimeError):
    pass


class Imds:
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, timeout_seconds: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._timeout = timeout_seconds
        self._monotonic = monotonic
        self._token: str | None = None
        self._token_expires = 0.0

    def token(self) -> str:
        if self._token is None or self._monotonic() >= self._token_expires - REFRESH_BEFORE_SECONDS:
            request = urllib.request.Request(
                f"{self._endpoint}/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
            self._token = self._open(request)
            self._token_expires = self._monotonic() + TOKEN_TTL_SECONDS
        return self._token

    def get(self, path: str) -> str:
        for attempt in range(2):
            request = urllib.request.Request(f"{self._endpoint}/latest/meta-data/{path}",
                                             headers={"X-aws-ec2-metadata-token": self.token()})
            try:
                return self._open(request)
            except ImdsError as error:
                if attempt == 0 and "401" in str(error):
                    self._token = None  # token revoked or expired early: fetch a new one once
                    continue
                raise
        raise ImdsError(f"IMDS {path}: unauthorised")

    def instance_id(self) -> str:
        return self.get("instance-id")

    def primary_interface(self) -> tuple[str, str]:
        """(ENI id, private IPv4) of the primary network interface: the route target and the node's address."""
        mac = self.get("mac")
        return self.get(f"network/interfaces/macs/{mac}/interface-id"), self.get("local-ipv4")

    def _open(self, request: urllib.request.Request) -> str:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return str(response.read().decode().strip())
        except urllib.error.HTTPError as error:
            raise ImdsError(f"IMDS {request.full_url}: HTTP {error.code}") from error
        except (urllib.error.URLError, OSError) as error:
            raise ImdsError(f"IMDS {request.full_url}: {error}") from error
