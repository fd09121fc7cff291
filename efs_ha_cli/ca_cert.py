"""`efs-ha ca-cert`: the cluster's MinIO CA certificate, for clients to verify MinIO's TLS certificate with.

Read from the CA-only secret named by the stack output MinioCaSecretArn (absent when the stack has `tls: off`).
That secret holds the public CA certificate alone; the server key is in another secret only the nodes can read.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import dataclass
from typing import Any

from efs_ha_cli.errors import CliError
from efs_ha_cli.stack import StackOutputs

MINIO_CA_SECRET_ARN = "MinioCaSecretArn"
MINIO_ENDPOINT = "MinioEndpoint"


@dataclass(frozen=True)
class CaCertificate:
    pem: str
    secret_arn: str
    endpoint: str | None

    @property
    def sha256_fingerprint(self) -> str:
        """What `openssl x509 -noout -fingerprint -sha256` prints, to compare out of band."""
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(self.pem)).hexdigest().upper()
        return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "ca_certificate": self.pem, "sha256_fingerprint": self.sha256_fingerprint,
                "secret_arn": self.secret_arn, "endpoint": self.endpoint}


def read_ca_certificate(outputs: StackOutputs, secretsmanager: Any) -> CaCertificate:
    arn = outputs.optional(MINIO_CA_SECRET_ARN)
    if arn is None:
        raise CliError(f"stack {outputs.stack_name} has no {MINIO_CA_SECRET_ARN} output: MinIO serves plain HTTP "
                       f"(tls: off), or the stack predates MinIO over TLS; there is no CA to print")
    secret = secretsmanager.get_secret_value(SecretId=arn)
    pem = _ca_pem(secret.get("SecretString", ""))
    if pem is None:
        raise CliError(f"the CA secret {arn} holds no CA certificate yet: the first node creates it at its first "
                       f"boot; wait until the deploy has finished (efs-ha status)")
    return CaCertificate(pem=pem if pem.endswith("\n") else pem + "\n", secret_arn=arn,
                         endpoint=outputs.optional(MINIO_ENDPOINT))


def _ca_pem(secret_string: str) -> str | None:
    try:
        value = json.loads(secret_string)
    except ValueError:
        return None
    pem = value.get("ca_certificate") if isinstance(value, dict) else None
    if not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem:
        return None
    return pem
