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


# Exit codes (documented in `efs-ha --help` and the README runbook). `status` uses 0-3 for its verdict.
EXIT_OK = 0
EXIT_FAILED = 1  # the command failed (any other error); `status`: DEGRADED
EXIT_DOWN = 2  # `status` only: DOWN
EXIT_UNKNOWN = 3  # `status` only: UNKNOWN (cannot tell), also any error of `status` not listed below
EXIT_REFUSED = 4  # refused: by the checker, by a precheck, or not confirmed (--yes)
EXIT_TIMEOUT = 5  # gave up waiting (the checker's answer, a switchover, a confirmation)
EXIT_AWS = 6  # AWS access: credentials, region, permissions, throttling, AWS unreachable, an AWS call failed
EXIT_USAGE = 64  # bad command line (sysexits EX_USAGE; click's own 2 would read as DOWN)
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 success (status: HEALTHY); 1 failed (status: DEGRADED); 2 status: DOWN; 3 status: UNKNOWN "
    "(cannot tell); 4 refused (by the checker, a precheck, or not confirmed); 5 timed out; 6 AWS access "
    "(credentials, region, permissions, throttling, unreachable); 64 usage error; 130 interrupted.")


class CliError(click.ClickException):
    """An expected failure; click prints `Error: <message>` to stderr and exits with `exit_code` (1).
    `kind` names the class of failure in `--json` errors."""

    kind = "error"


class Refused(CliError):
    """The action was refused: by the checker, by the CLI's own precheck, or because it was not confirmed."""

    exit_code = EXIT_REFUSED
    kind = "refused"


class TimedOut(CliError):
    exit_code = EXIT_TIMEOUT
    kind = "timeout"


class AwsAccessError(CliError):
    """An AWS call failed or could not be made (credentials, region, permissions, throttling, network)."""

    exit_code = EXIT_AWS
    kind = "aws"


class BadArgument(CliError):
    """A command-line value that cannot be right (e.g. an unknown node name): a usage error."""

    exit_code = EXIT_USAGE
    kind = "usage"


class Interrupted(CliError):
    exit_code = EXIT_INTERRUPTED
    kind = "interrupted"


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
        raise AwsAccessError(describe_aws_error(error)) from error
    except Exception as error:
        if os.environ.get(DEBUG_ENV):
            raise
        raise CliError(f"internal error: {type(error).__name__}: {error} "
                       f"(set {DEBUG_ENV}=1 for a traceback)") from error
