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
    def create(cls) -> AwsClients:
        return cls(
            dynamodb=boto3.client("dynamodb", config=CLIENT_CONFIG),
            ec2=boto3.client("ec2", config=CLIENT_CONFIG),
            ssm=boto3.client("ssm", config=CLIENT_CONFIG),
            sns=boto3.client("sns", config=CLIENT_CONFIG),
        )
