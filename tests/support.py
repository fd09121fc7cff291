"""Helpers shared by the moto-based suites (checker, agent, CLI)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from moto import mock_aws


class Clock(Protocol):
    def now(self) -> float: ...


class FakeContext:
    """A Lambda context whose remaining time counts down on the test's fake clock."""

    def __init__(self, clock: Clock, budget_seconds: float = 60.0, request_id: str = "test-request") -> None:
        self.aws_request_id = request_id
        self._clock = clock
        self._deadline = clock.now() + budget_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self._deadline - self._clock.now()) * 1000)


@contextlib.contextmanager
def mocked_aws(env: Mapping[str, str]) -> Iterator[None]:
    """moto with fake credentials; the caller's environment (and any AWS_ENDPOINT_URL) is restored after."""
    saved = {key: os.environ.get(key) for key in [*env, "AWS_ENDPOINT_URL"]}
    os.environ.update(env)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def vip_route_targets(ec2: Any, route_tables: list[str], vip_cidr: str) -> dict[str, str | None]:
    """Route table -> the ENI its VIP route points at (None where the route is missing)."""
    tables = ec2.describe_route_tables(RouteTableIds=route_tables)["RouteTables"]
    return {t["RouteTableId"]: next((r.get("NetworkInterfaceId") for r in t["Routes"]
                                     if r.get("DestinationCidrBlock") == vip_cidr), None) for t in tables}
