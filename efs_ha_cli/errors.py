"""One-line operator errors: every failure leaves the CLI as a short message and a non-zero exit code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from failover_lambda.aws import AwsUnavailable

DEBUG_ENV = "EFS_HA_DEBUG"


class CliError(click.ClickException):
    """An expected failure; click prints `Error: <message>` to stderr and exits with `exit_code` (1)."""


class Interrupted(CliError):
    exit_code = 130


def describe_aws_error(error: Exception) -> str:
    """The one-line explanation of an AWS/botocore error, with the fix where there is an obvious one."""
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return ("no AWS credentials found: run `aws configure` (or `aws sso login`), "
                "or set AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(error, NoRegionError):
        return "no AWS region configured: pass --region (e.g. --region eu-west-1) or run `aws configure`"
    if isinstance(error, EndpointConnectionError | ReadTimeoutError):
        return f"cannot reach AWS: {error}"
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        operation = getattr(error, "operation_name", "AWS call")
        return f"{operation} failed: {info.get('Code', 'ClientError')}: {info.get('Message', '')}".rstrip(": ")
    if isinstance(error, AwsUnavailable):
        return str(error)
    return f"{type(error).__name__}: {error}"


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn anything a command raises into a CliError, so the operator never sees a traceback.

    EFS_HA_DEBUG=1 lets unexpected errors through with their traceback (for bug reports).
    """
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    except (BotoCoreError, ClientError, AwsUnavailable) as error:
        raise CliError(describe_aws_error(error)) from error
    except Exception as error:
        if os.environ.get(DEBUG_ENV):
            raise
        raise CliError(f"internal error: {type(error).__name__}: {error} "
                       f"(set {DEBUG_ENV}=1 for a traceback)") from error
