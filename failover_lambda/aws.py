"""boto3 clients with short timeouts, and the one place that turns AWS errors into "unknown".

Endpoints are never configured here: boto3 honours AWS_ENDPOINT_URL (moto, a local drill) by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from failover_lambda.budget import CONNECT_TIMEOUT_SECONDS, MAX_ATTEMPTS, READ_TIMEOUT_SECONDS

# Short timeouts: a probe cycle is ~1 s; a hung API call must turn into "unknown" quickly, not stall the loop.
# Standard mode (not adaptive): its client-side rate limiter could delay a takeover's writes without bound;
# failover_lambda/budget.py states the worst case of one call from exactly these numbers.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
)
# EC2 Describe*: one attempt. They only refine what the state table says; the next refresh is the retry.
DESCRIBE_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
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
    # EC2 client for Describe* only (DESCRIBE_CONFIG); None = use `ec2`.
    ec2_describe: Any = None

    @property
    def describer(self) -> Any:
        return self.ec2_describe if self.ec2_describe is not None else self.ec2

    @classmethod
    def create(cls, session: boto3.Session | None = None) -> AwsClients:
        """Clients from `session` (default: boto3's default session, i.e. the Lambda's role and region)."""
        make = (session or boto3.Session()).client
        return cls(
            dynamodb=make("dynamodb", config=CLIENT_CONFIG),
            ec2=make("ec2", config=CLIENT_CONFIG),
            ssm=make("ssm", config=CLIENT_CONFIG),
            sns=make("sns", config=CLIENT_CONFIG),
            ec2_describe=make("ec2", config=DESCRIBE_CONFIG),
        )
