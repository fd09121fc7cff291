"""The two MinIO health probes over TLS, against a loopback HTTPS server whose certificate comes from the nodes'
own generator (userdata/files/minio-tls.sh): the agent's local check (CA file) and the checker's probe (CA from
the CA-only secret, verified against the fixed server name while connecting to a node address)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from failover_lambda import health
from failover_lambda.health import CaTrust, TlsProbe, http_probe
from failover_lambda.settings import Settings, SettingsError
from node_agent.agent import minio_health
from tests.tls_support import generated_material

SERVER_NAME = "minio.efs-ha.internal"


class _Live(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/minio/health/live" else 404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return generated_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    return generated_material(tmp_path_factory.mktemp("other"))["ca_certificate"]


@pytest.fixture(scope="module")
def tls_port(material: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("server")
    (folder / "public.crt").write_text(material["certificate"])
    (folder / "private.key").write_text(material["private_key"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "public.crt", folder / "private.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Live)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _Secrets:
    """A CA-only secret in moto, with a count of reads."""

    def __init__(self, pem: str) -> None:
        self.client = boto3.client("secretsmanager", region_name="us-east-1")
        self.arn = self.client.create_secret(Name="ca", SecretString=json.dumps({"ca_certificate": pem}))["ARN"]
        self.reads = 0
        original = self.client.get_secret_value

        def counted(**kwargs: object) -> object:
            self.reads += 1
            return original(**kwargs)

        self.client.get_secret_value = counted  # type: ignore[method-assign]

    def put(self, value: str) -> None:
        self.client.put_secret_value(SecretId=self.arn, SecretString=value)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def secrets(material: dict[str, str]) -> Iterator[_Secrets]:
    with mock_aws():
        yield _Secrets(material["ca_certificate"])


# ---------------------------------------------------------------- the agent's local check
def test_agent_check_verifies_minio_against_the_installed_ca(tmp_path: Path, material: dict[str, str],
                                                             other_ca: str, tls_port: int) -> None:
    url = f"https://127.0.0.1:{tls_port}/minio/health/live"
    (tmp_path / "ca.crt").write_text(material["ca_certificate"])
    (tmp_path / "other.crt").write_text(other_ca)
    assert minio_health(url, ca_file=str(tmp_path / "ca.crt")) is True
    assert minio_health(url, ca_file=str(tmp_path / "other.crt")) is False
    # Before MinIO's start installed the CA, or plain HTTP against a TLS MinIO: unhealthy, never an exception.
    assert minio_health(url, ca_file=str(tmp_path / "missing.crt")) is False
    assert minio_health(f"http://127.0.0.1:{tls_port}/minio/health/live") is False


# ---------------------------------------------------------------- the checker's probe
def test_checker_probe_connects_to_the_node_address_and_verifies_the_fixed_server_name(
        secrets: _Secrets, tls_port: int) -> None:
    probe = TlsProbe(SERVER_NAME, CaTrust(secrets.arn, client=secrets.client))
    assert http_probe("127.0.0.1", tls_port, tls=probe) is True
    # A name the certificate does not carry fails verification.
    assert http_probe("127.0.0.1", tls_port, tls=TlsProbe("other.example", probe.trust)) is False


def test_the_ca_is_read_once_and_cached(secrets: _Secrets, tls_port: int) -> None:
    clock = _Clock()
    probe = TlsProbe(SERVER_NAME, CaTrust(secrets.arn, client=secrets.client, clock=clock))
    for _ in range(5):
        assert http_probe("127.0.0.1", tls_port, tls=probe) is True
        clock.now += 1
    assert secrets.reads == 1
    clock.now += health.CA_REFRESH_SECONDS
    assert http_probe("127.0.0.1", tls_port, tls=probe) is True
    assert secrets.reads == 2


def test_a_rotated_ca_is_picked_up_at_the_first_failed_verification(secrets: _Secrets, material: dict[str, str],
                                                                    other_ca: str, tls_port: int) -> None:
    clock = _Clock()
    secrets.put(json.dumps({"ca_certificate": other_ca}))  # the checker holds an old CA ...
    probe = TlsProbe(SERVER_NAME, CaTrust(secrets.arn, client=secrets.client, clock=clock))
    # Just read, the CA cannot be re-read yet: no verdict (not a failure) until it can
    assert http_probe("127.0.0.1", tls_port, tls=probe) is None
    secrets.put(json.dumps({"ca_certificate": material["ca_certificate"]}))  # ... MinIO serves the new one
    clock.now += health.CA_RETRY_SECONDS
    # One probe: the failed verification re-reads the CA and the same probe succeeds with it.
    assert http_probe("127.0.0.1", tls_port, tls=probe) is True


def test_a_rotation_right_after_a_routine_ca_read_costs_no_failed_probe(
        secrets: _Secrets, material: dict[str, str], other_ca: str, tls_port: int) -> None:
    """The sandbox read the CA 10 s before the rotation's switchover: its probes of the node serving the new
    certificate must not fail for the rest of the re-read interval (3 such failures after the start grace would
    fail over from a healthy node and hold it back). Failed before the fix (review finding 6)."""
    clock = _Clock()
    secrets.put(json.dumps({"ca_certificate": other_ca}))
    probe = TlsProbe(SERVER_NAME, CaTrust(secrets.arn, client=secrets.client, clock=clock))
    probe.trust.context()
    clock.now += 10
    secrets.put(json.dumps({"ca_certificate": material["ca_certificate"]}))
    verdicts = []
    for _ in range(25):
        verdicts.append(http_probe("127.0.0.1", tls_port, tls=probe))
        clock.now += 1
    assert False not in verdicts
    assert verdicts[-1] is True  # re-read once allowed: verified with the new CA


def test_a_certificate_that_fails_after_a_re_read_is_a_failed_probe(secrets: _Secrets, other_ca: str,
                                                                     tls_port: int) -> None:
    clock = _Clock()
    secrets.put(json.dumps({"ca_certificate": other_ca}))  # MinIO's certificate never chains to this CA
    probe = TlsProbe(SERVER_NAME, CaTrust(secrets.arn, client=secrets.client, clock=clock))
    probe.trust.context()
    clock.now += health.CA_RETRY_SECONDS
    assert http_probe("127.0.0.1", tls_port, tls=probe) is False


def test_without_a_readable_ca_the_probe_says_nothing(secrets: _Secrets, tls_port: int) -> None:
    secrets.put(json.dumps({"state": "pending"}))  # deployed, no node has generated the certificate yet
    probe = TlsProbe(SERVER_NAME, CaTrust(secrets.arn, client=secrets.client))
    assert http_probe("127.0.0.1", tls_port, tls=probe) is None
    missing = TlsProbe(SERVER_NAME, CaTrust(secrets.arn + "-gone", client=secrets.client))
    assert http_probe("127.0.0.1", tls_port, tls=missing) is None


def test_the_checker_environment_turns_the_tls_probe_on(secrets: _Secrets, tls_port: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "_secrets_client", lambda: secrets.client)
    monkeypatch.setenv("MINIO_TLS", "true")
    monkeypatch.setenv("MINIO_CA_SECRET_ARN", secrets.arn)
    monkeypatch.setenv("MINIO_TLS_SERVER_NAME", SERVER_NAME)
    assert http_probe("127.0.0.1", tls_port) is True
    monkeypatch.setenv("MINIO_TLS", "false")
    assert http_probe("127.0.0.1", tls_port) is False  # plain HTTP against a TLS server


def test_settings_name_the_missing_ca_secret_when_tls_is_on() -> None:
    env = {"STATE_TABLE_NAME": "t", "CLUSTER_ID": "c", "NODE_NAMES": "node1,node2", "ROUTE_TABLE_IDS": "rtb-1",
           "VIP": "172.16.0.1", "MINIO_TLS": "true"}
    with pytest.raises(SettingsError, match="MINIO_CA_SECRET_ARN"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "MINIO_CA_SECRET_ARN": "arn:ca"})
    assert (settings.minio_tls, settings.minio_ca_secret_arn, settings.minio_tls_server_name) == (
        True, "arn:ca", SERVER_NAME)
    assert Settings.from_env({k: v for k, v in env.items() if k != "MINIO_TLS"}).minio_tls is False


def test_the_agent_refuses_an_https_probe_without_a_ca_file_and_a_ca_file_without_https() -> None:
    from node_agent.config import AgentConfig, ConfigError

    base = {"STATE_TABLE_NAME": "t", "NODE_NAME": "node1", "MOUNT_POINT": "/mnt/efs", "AWS_REGION": "us-east-1"}
    with pytest.raises(ConfigError, match="MINIO_CA_FILE"):
        AgentConfig.from_env({**base, "MINIO_HEALTH_URL": "https://127.0.0.1:9000/minio/health/live"})
    with pytest.raises(ConfigError, match="MINIO_CA_FILE"):
        AgentConfig.from_env({**base, "MINIO_CA_FILE": "/run/efs-ha/minio-ca.crt"})


def test_a_certificate_no_fresh_ca_verifies_keeps_failing_until_the_ca_changes(secrets: _Secrets, other_ca: str,
                                                                              material: dict[str, str],
                                                                              tls_port: int) -> None:
    """A certificate that never chains to the published CA must fail probes in a row (the checker counts only
    consecutive failures; a no-verdict probe resets the count), not once per re-read. Failed before the fix
    (second review: 3 failures in 120 probes, never two in a row); a new CA then clears it."""
    clock = _Clock()
    secrets.put(json.dumps({"ca_certificate": other_ca}))
    probe = TlsProbe(SERVER_NAME, CaTrust(secrets.arn, client=secrets.client, clock=clock))
    probe.trust.context()
    verdicts = []
    for _ in range(60):
        verdicts.append(http_probe("127.0.0.1", tls_port, tls=probe))
        clock.now += 1
    first_failure = verdicts.index(False)
    assert set(verdicts[first_failure:]) == {False}
    secrets.put(json.dumps({"ca_certificate": material["ca_certificate"]}))  # the right CA is published
    clock.now += health.CA_RETRY_SECONDS
    assert http_probe("127.0.0.1", tls_port, tls=probe) is True
