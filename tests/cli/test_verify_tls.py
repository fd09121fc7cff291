"""`efs-ha verify` with MinIO over TLS: the scripts fetch the CA from the CA-only secret on the client node and
curl verifies MinIO's certificate with it (the real scripts, in bash, against a loopback HTTPS S3 stand-in whose
certificate comes from the nodes' own generator)."""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from efs_ha_cli.verify import Target, Verifier, cleanup_script, read_script, write_script
from tests.cli.conftest import FakeClock
from tests.cli.test_verify import TARGET, BashRunner, StubS3, _two_node_status
from tests.tls_support import generated_material

CA_ARN = "arn:aws:secretsmanager:eu-central-1:111122223333:secret:minio-tls-ca-AbCdEf"


def test_with_a_ca_secret_every_script_uses_https_and_verifies_with_the_ca() -> None:
    target = Target(vip="172.16.0.1", region="eu-west-1", secret_arn=TARGET.secret_arn, bucket="b",
                    ca_secret_arn=CA_ARN)
    for script in (write_script(target, "x"), read_script(target), cleanup_script(target)):
        assert "https://172.16.0.1:9000" in script and "http://" not in script
        assert '--cacert "$ca_file"' in script
        assert f"--region eu-central-1 \\\n  --secret-id {CA_ARN} --query SecretString" in script
        assert "--insecure" not in script and " -k " not in script
    plain = write_script(TARGET, "x")
    assert "http://" in plain and "--cacert" not in plain and CA_ARN not in plain


@pytest.fixture
def tls_s3(tmp_path: Path) -> Iterator[tuple[int, type[StubS3], dict[str, str], dict[str, str]]]:
    material = generated_material(tmp_path / "tls")
    (tmp_path / "public.crt").write_text(material["certificate"])
    (tmp_path / "private.key").write_text(material["private_key"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "public.crt", tmp_path / "private.key")
    store = type("Store", (StubS3,), {"objects": {}, "buckets": set(), "tamper": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), store)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "ca.json").write_text(json.dumps({"ca_certificate": material["ca_certificate"]}))
    aws = bin_dir / "aws"
    read = "secretsmanager get-secret-value --region eu-central-1 --secret-id"
    aws.write_text(f"""#!/bin/bash
case "$*" in
  "{read} {TARGET.secret_arn} --query SecretString --output text")
    echo '{{"username": "minio-admin", "password": "pw"}}' ;;
  "{read} {CA_ARN} --query SecretString --output text")
    cat {tmp_path / "ca.json"} ;;
  *) echo "unexpected aws call: $*" >&2; exit 1 ;;
esac
""")
    aws.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    try:
        yield server.server_address[1], store, env, material
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_real_scripts_verify_minio_over_tls_and_compare_the_sha256(
        tls_s3: tuple[int, type[StubS3], dict[str, str], dict[str, str]]) -> None:
    port, store, env, _material = tls_s3
    target = Target(vip="127.0.0.1", region=TARGET.region, secret_arn=TARGET.secret_arn, bucket=TARGET.bucket,
                    port=port, ca_secret_arn=CA_ARN)
    active = ["node1"]

    def switch(node: str) -> str:
        active[0] = node
        return f"-> {node}"

    report = Verifier(target, BashRunner(env), _two_node_status(active), switch, FakeClock(), content="tls").run()
    assert report.ok, report.to_json()
    assert store.objects == {} and store.buckets == set()


def test_a_certificate_from_another_ca_fails_the_write(
        tls_s3: tuple[int, type[StubS3], dict[str, str], dict[str, str]], tmp_path: Path) -> None:
    port, store, env, _material = tls_s3
    other = generated_material(tmp_path / "other")["ca_certificate"]
    ca_json = next(Path(p) for p in env["PATH"].split(":")[:1]).parent / "ca.json"
    ca_json.write_text(json.dumps({"ca_certificate": other}))
    target = Target(vip="127.0.0.1", region=TARGET.region, secret_arn=TARGET.secret_arn, bucket=TARGET.bucket,
                    port=port, ca_secret_arn=CA_ARN)
    report = Verifier(target, BashRunner(env), _two_node_status(["node1"]), lambda n: n, FakeClock()).run()
    assert not report.ok
    write = report.steps[1]
    assert write.name.startswith("write") and not write.ok and "HTTP 000" in write.detail
    assert "did not verify against the cluster CA" in write.detail
    assert store.buckets == set()
