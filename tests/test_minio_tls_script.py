"""userdata/files/minio-tls.sh run for real (openssl, python3, bash) against a stand-in Secrets Manager: the first
node generates, a racing node installs the winner's certificate, a restart reuses it, rotation replaces it, and no
key material is ever printed or put on a command line."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.tls_support import CA_SECRET, TLS_SECRET, VIP, TlsNode, new_account, tls_inputs, tls_node


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


def _no_key_material(node: TlsNode, *results: subprocess.CompletedProcess[str]) -> None:
    for result in results:
        assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert not any("BEGIN" in arg for call in node.calls() for arg in call)


def test_first_install_generates_stores_publishes_and_installs_with_private_modes(tmp_path: Path) -> None:
    node = tls_node(tmp_path / "node1", new_account(tmp_path / "account"))
    result = node.run("install_certs")
    assert result.returncode == 0, result.stderr
    assert "generated a new CA and server certificate" in result.stdout
    assert "valid until" in result.stdout
    stored = node.current_value(TLS_SECRET)
    assert (node.certs_dir / "public.crt").read_text() == stored["certificate"]
    assert (node.certs_dir / "private.key").read_text() == stored["private_key"]
    assert (node.certs_dir / "CAs/efs-ha-ca.crt").read_text() == stored["ca_certificate"]
    # The CA-only secret holds the CA and nothing else.
    assert node.current_value(CA_SECRET) == {"ca_certificate": stored["ca_certificate"]}
    assert node.ca_copy.read_text() == stored["ca_certificate"]
    for path in (node.certs_dir.parent, node.certs_dir, node.certs_dir / "CAs"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for name in ("public.crt", "private.key", "CAs/efs-ha-ca.crt"):
        path = node.certs_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert path.stat().st_uid == os.getuid()
    assert stat.S_IMODE(node.ca_copy.stat().st_mode) == 0o644
    _no_key_material(node, result)
    # The work directory with the CA key is gone.
    assert not list((node.root / "run/efs-ha").glob("minio-tls.*"))


def test_the_certificate_names_the_vip_loopback_and_the_fixed_server_name_and_chains_to_the_ca(
        tmp_path: Path) -> None:
    node = tls_node(tmp_path / "node1", new_account(tmp_path / "account"))
    assert node.run("install_certs").returncode == 0
    text = _openssl("x509", "-noout", "-text", "-in", str(node.certs_dir / "public.crt"))
    assert f"DNS:minio.efs-ha.internal, DNS:localhost, IP Address:{VIP}, IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text
    verified = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(node.ca_copy),
                               str(node.certs_dir / "public.crt")], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ca_text = _openssl("x509", "-noout", "-text", "-in", str(node.ca_copy))
    assert "CA:TRUE, pathlen:0" in ca_text


def test_a_node_racing_the_first_one_installs_the_winners_certificate(tmp_path: Path) -> None:
    account = new_account(tmp_path / "account")
    first = tls_node(tmp_path / "node1", account)
    second = tls_node(tmp_path / "node2", account)
    assert first.run("install_certs").returncode == 0
    # node2 read the secret before node1 stored its certificate: it generates too, and its write must lose.
    raced = second.run("install_certs", stale_reads=1)
    assert raced.returncode == 0, raced.stderr
    assert "another node stored the certificate first" in raced.stdout
    assert (second.certs_dir / "public.crt").read_text() == (first.certs_dir / "public.crt").read_text()
    assert (second.certs_dir / "private.key").read_text() == (first.certs_dir / "private.key").read_text()
    assert len(first.secret(TLS_SECRET)["versions"]) == 2  # the placeholder and one certificate
    assert len(first.secret(CA_SECRET)["versions"]) == 2
    _no_key_material(second, raced)


def test_a_minio_restart_only_reads_the_secret(tmp_path: Path) -> None:
    node = tls_node(tmp_path / "node1", new_account(tmp_path / "account"))
    assert node.run("install_certs").returncode == 0
    before = len(node.calls())
    again = node.run("install_certs")
    assert again.returncode == 0, again.stderr
    assert [call[:2] for call in node.calls()[before:]] == [["secretsmanager", "get-secret-value"]]


def test_the_bootstrap_ensure_publishes_the_ca_without_writing_files(tmp_path: Path) -> None:
    node = tls_node(tmp_path / "node1", new_account(tmp_path / "account"))
    result = node.run("main ensure")
    assert result.returncode == 0, result.stderr
    assert node.current_value(CA_SECRET)["ca_certificate"] == node.current_value(TLS_SECRET)["ca_certificate"]
    assert not node.certs_dir.exists()
    # Run again (a bootstrap retry): the same CA is published again, which Secrets Manager ignores.
    assert node.run("main ensure").returncode == 0
    assert len(node.secret(CA_SECRET)["versions"]) == 2


def test_rotation_replaces_the_ca_and_certificate_after_a_rotate_request(tmp_path: Path) -> None:
    node = tls_node(tmp_path / "node1", new_account(tmp_path / "account"))
    assert node.run("install_certs").returncode == 0
    old = node.current_value(TLS_SECRET)
    # README "MinIO over TLS", rotation: put a value without a certificate, then restart MinIO.
    request = tmp_path / "rotate.json"
    request.write_text('{"rotate": "requested"}')
    assert node.run(f"aws secretsmanager put-secret-value --region us-east-1 --secret-id {TLS_SECRET} "
                    f"--client-request-token rotate-request-0000000000000000000000001 "
                    f"--secret-string file://{request}").returncode == 0
    rotated = node.run("install_certs")
    assert rotated.returncode == 0, rotated.stderr
    new = node.current_value(TLS_SECRET)
    assert new["ca_certificate"] != old["ca_certificate"]
    assert node.current_value(CA_SECRET)["ca_certificate"] == new["ca_certificate"]
    assert (node.certs_dir / "public.crt").read_text() == new["certificate"]


def test_with_tls_off_the_certs_dir_is_empty_and_no_aws_call_is_made(tmp_path: Path) -> None:
    node = tls_node(tmp_path / "node1", new_account(tmp_path / "account"),
                    tls_inputs(tls=False, tls_secret_arn="", tls_ca_secret_arn=""))
    (node.certs_dir).mkdir(parents=True)
    (node.certs_dir / "public.crt").write_text("left over from tls on")
    result = node.run("install_certs && main ensure")
    assert result.returncode == 0, result.stderr
    assert list(node.certs_dir.iterdir()) == []
    assert not node.ca_copy.exists()
    assert node.calls() == []


def test_a_failed_store_fails_the_start_without_installing_anything(tmp_path: Path) -> None:
    account = new_account(tmp_path / "account")
    node = tls_node(tmp_path / "node1", account)
    (account / "bin" / "aws").write_text("#!/bin/sh\n"
                                         "case \"$2\" in get-secret-value) echo '{\"VersionId\": \"v0\", "
                                         "\"SecretString\": \"{}\"}';; *) echo 'AccessDeniedException' >&2; "
                                         "exit 254;; esac\n")
    result = node.run("main install")
    assert result.returncode != 0
    assert "PutSecretValue failed: AccessDeniedException" in result.stderr
    assert not node.certs_dir.exists()
    assert not list((node.root / "run/efs-ha").glob("minio-tls.*"))  # the generated keys were removed
    _no_key_material(node, result)
