"""Probe verdicts, as pure functions of the table (judged by the lease tracker, on the checker's own clock),
EC2 when it answered, and the optional MinIO HTTP probe. A node's `heartbeat_at` is never read here."""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failover_lambda.aws import AWS_ERRORS, CLIENT_CONFIG
from failover_lambda.lease import LeaseTracker
from failover_lambda.model import HOLD_STOP_REASON, ClusterState, Instance, NodeReport
from failover_lambda.settings import Settings

HTTP_TIMEOUT_SECONDS = 1.0
LIVE_PATH = "/minio/health/live"
# MinIO over TLS (docs/failover-design.md): the certificate names this fixed DNS name, which the probe verifies
# while it connects to a node's own address (node addresses change with every replacement; the name does not).
DEFAULT_TLS_SERVER_NAME = "minio.efs-ha.internal"
# The CA is re-read this often (a rotation), and at a failed verification once this long after the last read.
CA_REFRESH_SECONDS = 300.0
CA_RETRY_SECONDS = 30.0
# OpenSSL's "the issuer is not (or no longer) trusted" verify codes: unable to get the issuer (2, 20), a
# self-signed certificate at depth 0 or in the chain (18, 19), unable to verify the leaf's signature (21).
UNKNOWN_ISSUER_CODES = frozenset({2, 18, 19, 20, 21})
log = logging.getLogger(__name__)
_CA_READ_ERRORS: tuple[type[Exception], ...] = (*AWS_ERRORS, ValueError, KeyError, ssl.SSLError)
# A standby seen for the first time in this invocation is not fresh until one renewal has been observed;
# this problem alone means "wait one renewal period", not "unhealthy".
NOT_OBSERVED_YET = "no lease renewal observed yet"
LEAVING = "shutting down (it asked for a handover): never made active"
MINIO_PREFIX = "MinIO "


def lease_problem(settings: Settings, tracker: LeaseTracker, node: str) -> str | None:
    """A standby's lease: fresh, or why not."""
    if tracker.fresh(node):
        return None
    age = tracker.renewal_age(node)
    if age is not None:
        return f"no lease renewal seen for {age:.1f}s"
    silent = tracker.silent_for(node)
    if silent < settings.heartbeat_stale_seconds:
        return NOT_OBSERVED_YET
    return f"no lease renewal seen for {silent:.1f}s (since first read)"


def _instance_problems(instance: Instance | None, ec2_known: bool) -> list[str]:
    if instance is None:
        return ["no instance" if ec2_known else "instance unknown (EC2 unreadable, no instance in the node item)"]
    problems = []
    if ec2_known and not instance.running:
        problems.append(f"instance {instance.instance_id} is {instance.state}")
    elif instance.eni is None:
        problems.append(f"instance {instance.instance_id} has no primary network interface")
    return problems


def node_problems(settings: Settings, tracker: LeaseTracker, node: str, report: NodeReport | None,
                  instance: Instance | None, ec2_known: bool = True) -> list[str]:
    """Why a node cannot take the role. Empty = healthy standby: a fresh lease renewal (checker clock), EFS
    writable, a watchdog that is armed, or ready while not serving (WATCHDOG=required), and no EC2 evidence
    against it. With EC2 unreadable the instance comes from the node item and a fresh renewal proves that it runs.

    MinIO is not required: it runs only on the active node.
    """
    problems = _instance_problems(instance, ec2_known)
    if report is None:
        problems.append("no node item")
        return problems
    lease = lease_problem(settings, tracker, node)
    if lease:
        problems.append(lease)
    if instance and report.instance_id and report.instance_id != instance.instance_id:
        problems.append(f"node item comes from {report.instance_id}, not {instance.instance_id}")
    if report.leaving:
        problems.append(LEAVING)
    if not report.efs_ok:
        problems.append(f"EFS not writable ({report.detail or 'no detail'})")
    if settings.watchdog_required and not report.watchdog_enforces(settings.watchdog_timeout_seconds):
        timeout = f", timeout {report.watchdog_timeout:g}s" if report.watchdog_timeout is not None else ""
        serving = " while serving" if report.serving and report.watchdog == "ready" else ""
        problems.append(f"watchdog {report.watchdog}{timeout}{serving} (required: armed, or ready while not "
                        f"serving; timeout <= {settings.watchdog_timeout_seconds:g}s)")
    return problems


def only_not_observed(problems: list[str]) -> bool:
    """Healthy as far as anything says, but no renewal observed yet in this invocation."""
    return problems == [NOT_OBSERVED_YET]


def active_problems(settings: Settings, tracker: LeaseTracker, now: float, cluster: ClusterState,
                    report: NodeReport | None, instance: Instance | None, http_ok: bool | None,
                    ec2_known: bool = True) -> list[str]:
    """A failed probe of the active node: no renewal observed for S s (a first sighting counts as an
    observation), instance not running (EC2, when readable), EFS failing, or MinIO down once the start
    grace (`now` - changed_at, both the checker's wall clock) has passed."""
    node = cluster.active or ""
    problems = _instance_problems(instance, ec2_known)
    if report is None:
        problems.append("no node item")
        return problems
    silent = tracker.silent_for(node)
    if silent >= settings.heartbeat_stale_seconds:
        problems.append(f"no lease renewal seen for {silent:.1f}s")
    if instance and report.instance_id and report.instance_id != instance.instance_id:
        problems.append(f"node item comes from {report.instance_id}, not {instance.instance_id}")
    if not report.efs_ok:
        problems.append(f"EFS not writable ({report.detail or 'no detail'})")
    if now - cluster.changed_at < settings.minio_start_grace_seconds:
        return problems
    if not report.serving:
        problems.append(f"{MINIO_PREFIX}not running (stop reason: {report.stop_reason})")
    elif not report.minio_ok:
        problems.append(f"{MINIO_PREFIX}health check failing")
    if http_ok is False:
        problems.append(f"{MINIO_PREFIX}HTTP probe failed")
    return problems


def restart_excused(settings: Settings, report: NodeReport | None, problems: list[str],
                    restarting_for: float) -> bool:
    """A failed probe that does not count: the active node's only problems are MinIO's, it still serves (MinIO
    may run) and reports a restart in progress (`minio_restarting` 1..MINIO_RESTART_LIMIT: systemd restarts a
    crashed MinIO in place), and the episode's probes have failed for less than MINIO_RESTART_BUDGET_SECONDS.
    The HTTP probe fails during a restart too, so it is a MinIO problem like the others."""
    if report is None or not report.serving or not service_only(problems):
        return False
    if not 1 <= report.minio_restarting <= settings.minio_restart_limit:
        return False
    return restarting_for < settings.minio_restart_budget_seconds


class CaTrust:
    """The cluster CA that MinIO's certificate must chain to, read from the CA-only secret (the checker may read
    that one, never the secret with the server key) and kept for CA_REFRESH_SECONDS."""

    def __init__(self, secret_arn: str, client: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.secret_arn = secret_arn
        self._client = client
        self._clock = clock
        self._context: ssl.SSLContext | None = None
        self._read_at = -math.inf
        self._distrusted: ssl.SSLContext | None = None  # the CA (context) that failed a fresh verification

    def context(self) -> ssl.SSLContext | None:
        """The verifying context, or None while the CA cannot be read (not generated yet, AWS unreachable)."""
        if self._clock() - self._read_at >= CA_REFRESH_SECONDS:
            self._read()
        return self._context

    @property
    def distrusted(self) -> bool:
        """The certificate failed verification with the CA read after it first failed: not a rotation."""
        return self._distrusted is not None and self._distrusted is self._context

    def distrust(self) -> None:
        self._distrusted = self._context

    def may_reread(self) -> bool:
        """A certificate that failed verification may come from a rotated CA: it may be re-read at most every
        CA_RETRY_SECONDS."""
        return self._clock() - self._read_at >= CA_RETRY_SECONDS

    def reread(self) -> None:
        self._read()

    def _read(self) -> None:
        self._read_at = self._clock()
        try:
            client = self._client or _secrets_client()
            secret = json.loads(client.get_secret_value(SecretId=self.secret_arn)["SecretString"])
            pem = secret.get("ca_certificate") if isinstance(secret, dict) else None
            if not pem:
                log.warning("MinIO CA secret has no CA yet (the first node creates it); TLS probe skipped")
                return
            self._context = verifying_context(pem)
        except _CA_READ_ERRORS as error:
            log.warning("MinIO CA secret unreadable; the TLS probe keeps the CA it has: %s", error)


def verifying_context(ca_pem: str) -> ssl.SSLContext:
    """Trust only the cluster CA, check the name, and apply Python 3.13's strict X.509 rules on every version."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


@dataclass(frozen=True)
class TlsProbe:
    server_name: str
    trust: CaTrust


class _NamedHttps(http.client.HTTPSConnection):
    """HTTPS to an address, verifying the certificate for another name (curl's --connect-to, as a connection)."""

    def __init__(self, host: str, port: int, *, server_name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._verifying = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._verifying.wrap_socket(self.sock, server_hostname=self._server_name)


_environment_probes: dict[tuple[str, str], TlsProbe] = {}


def _secrets_client() -> Any:
    import boto3

    return boto3.client("secretsmanager", config=CLIENT_CONFIG)


def environment_tls() -> TlsProbe | None:
    """The checker's TLS probe from its environment (MINIO_TLS, MINIO_CA_SECRET_ARN, MINIO_TLS_SERVER_NAME, set
    by the stack and validated by Settings at cold start); one cached CA per sandbox."""
    if os.environ.get("MINIO_TLS", "").strip().lower() not in ("true", "1", "yes"):
        return None
    arn = os.environ.get("MINIO_CA_SECRET_ARN", "").strip()
    name = os.environ.get("MINIO_TLS_SERVER_NAME", "").strip() or DEFAULT_TLS_SERVER_NAME
    if not arn:
        return None
    key = (arn, name)
    if key not in _environment_probes:
        _environment_probes[key] = TlsProbe(name, CaTrust(arn))
    return _environment_probes[key]


def http_probe(ip: str, port: int, timeout: float = HTTP_TIMEOUT_SECONDS, tls: TlsProbe | None = None) -> bool | None:
    """GET /minio/health/live from inside the VPC; any error or non-200 is a failed probe. Over TLS (`tls`, else
    the checker's environment) the certificate must verify against the cluster CA for the fixed server name;
    None (no verdict, not a failure) while the CA cannot be read: the agent's own check still covers MinIO."""
    probe = tls or environment_tls()
    if probe is None:
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}{LIVE_PATH}", timeout=timeout) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False
    context = probe.trust.context()
    if context is None:
        return None
    try:
        return _https_live(ip, port, probe.server_name, context, timeout)
    except ssl.SSLCertVerificationError as error:
        if error.verify_code not in UNKNOWN_ISSUER_CODES:
            return False  # e.g. a name the certificate does not carry: no CA re-read changes that
        if not probe.trust.may_reread():
            # Maybe a rotated CA (the node serves a certificate of a CA published after this sandbox's read): no
            # verdict until the CA can be read again, so a rotation never counts as failed probes; unless a CA
            # read after the certificate first failed did not verify it either.
            return False if probe.trust.distrusted else None
        probe.trust.reread()
    fresh = probe.trust.context()
    try:
        return fresh is not None and _https_live(ip, port, probe.server_name, fresh, timeout)
    except ssl.SSLCertVerificationError:
        probe.trust.distrust()  # fails with a freshly read CA: failed probes until the CA changes
        return False
    except (OSError, http.client.HTTPException, ValueError):
        return False


def _https_live(ip: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float) -> bool:
    """Raises ssl.SSLCertVerificationError for a certificate that does not verify; False for any other error."""
    connection = _NamedHttps(ip, port, server_name=server_name, context=context, timeout=timeout)
    try:
        connection.request("GET", LIVE_PATH)
        return int(connection.getresponse().status) == 200
    except ssl.SSLCertVerificationError:
        raise
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()


def service_only(problems: list[str]) -> bool:
    """The node is fine and only MinIO failed on it (it would likely fail the same way again right away)."""
    return bool(problems) and all(problem.startswith(MINIO_PREFIX) for problem in problems)


def holds_back(report: NodeReport | None, problems: list[str]) -> bool:
    """Whether the node losing the role goes on the no-ping-pong hold. A node that stopped MinIO says why:
    only `minio_failed` holds it back (`lease_lost`, `efs_failed`, `role_lost`, ... never do). A node that
    still serves is held back when its probe problems are MinIO-only."""
    if report is not None and not report.serving:
        return report.stop_reason == HOLD_STOP_REASON and service_only(problems)
    return service_only(problems)
