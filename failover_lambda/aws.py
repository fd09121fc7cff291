"""boto3 clients with short timeouts, and the one place that turns AWS errors into "unknown".

Endpoints are never configured here: boto3 honours AWS_ENDPOINT_URL (moto, a local drill) by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Short timeouts: a probe cycle is ~1 s; a hung API call must turn into "unknown" quickly, not stall the loop.
CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 3},
    connect_timeout=1,
    read_timeout=2,
)


class AwsUnavailable(Exception):
    """An AWS call failed (throttling, 5xx, timeout, no endpoint): "unknown", never a node failure."""

    def __init__(self, operation: str, error: Exception) -> None:
        super().__init__(f"{operation} failed: {error_code(error)}: {error}")
        self.operation = operation
        self.code = error_code(error)


def error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


AWS_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)


@dataclass(frozen=True)
class AwsClients:
    dynamodb: Any
    ec2: Any
    ssm: Any
    sns: Any

    @classmethod
    def create(cls, session: boto3.Session | None = None) -> AwsClients:
        """Clients from `session` (default: boto3's default session, i.e. the Lambda's role and region)."""
        make = (session or boto3.Session()).client
        return cls(
            dynamodb=make("dynamodb", config=CLIENT_CONFIG),
            ec2=make("ec2", config=CLIENT_CONFIG),
            ssm=make("ssm", config=CLIENT_CONFIG),
            sns=make("sns", config=CLIENT_CONFIG),
        )
