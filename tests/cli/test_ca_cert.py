"""`efs-ha ca-cert` against moto: the CA from the CA-only secret named by the stack output, as PEM or JSON."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from tests.cli.conftest import FakeCluster, aws_client, invoke
from tests.tls_support import generated_material


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return generated_material(tmp_path_factory.mktemp("ca"))["ca_certificate"]


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


def _stack(name: str, outputs: dict[str, str]) -> None:
    FakeCluster.create_stack(name, outputs)


def _ca_secret(value: dict[str, str]) -> str:
    arn: str = aws_client("secretsmanager").create_secret(Name="minio-tls-ca", SecretString=json.dumps(value))["ARN"]
    return arn


def test_prints_the_ca_pem_for_clients(aws: None, ca_pem: str) -> None:
    _stack("Tls", {"MinioCaSecretArn": _ca_secret({"ca_certificate": ca_pem}),
                   "MinioEndpoint": "https://172.16.0.1:9000"})
    result = invoke("--stack-name", "Tls", "ca-cert")
    assert result.exit_code == 0, result.output
    assert result.stdout == ca_pem


def test_json_adds_the_fingerprint_openssl_prints_and_the_endpoint(aws: None, ca_pem: str, tmp_path: Path) -> None:
    arn = _ca_secret({"ca_certificate": ca_pem})
    _stack("Tls", {"MinioCaSecretArn": arn, "MinioEndpoint": "https://172.16.0.1:9000"})
    result = invoke("--stack-name", "Tls", "ca-cert", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    (tmp_path / "ca.pem").write_text(ca_pem)
    openssl = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(tmp_path / "ca.pem")],
                             check=True, capture_output=True, text=True).stdout
    assert openssl.strip().endswith("=" + answer["sha256_fingerprint"])
    assert answer == {"ok": True, "ca_certificate": ca_pem, "sha256_fingerprint": answer["sha256_fingerprint"],
                      "secret_arn": arn, "endpoint": "https://172.16.0.1:9000"}


def test_a_stack_with_tls_off_has_no_ca_to_print(aws: None) -> None:
    _stack("Plain", {"MinioEndpoint": "http://172.16.0.1:9000"})
    result = invoke("--stack-name", "Plain", "ca-cert")
    assert result.exit_code == 1
    assert "MinioCaSecretArn" in result.stderr and "tls: off" in result.stderr
    assert "Traceback" not in result.output


def test_before_the_first_node_generated_it_says_to_wait(aws: None) -> None:
    _stack("New", {"MinioCaSecretArn": _ca_secret({"state": "pending", "nonce": "x"})})
    result = invoke("--stack-name", "New", "ca-cert", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["ok"] is False
    assert "no CA certificate yet" in result.stderr
