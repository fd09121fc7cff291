"""MinIO's TLS material: two secrets the nodes fill at first boot (userdata/files/minio-tls.sh).

- `secret`: the server certificate, its private key and the CA certificate. Only the nodes may read and write it.
- `ca_secret`: the CA certificate alone (public). The checker's health probe and `efs-ha ca-cert` read it, so
  nothing but the nodes can ever read the server key.

Both start as a placeholder without a certificate: the template, the user-data and CloudFormation never see a PEM.
Why the nodes generate the material (instead of a custom resource at deploy time): docs/failover-design.md,
"MinIO over TLS".
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct

# The node script replaces exactly the version it read (ClientRequestToken from its VersionId): only the first of
# two racing nodes stores its certificate. The placeholder's random nonce means nothing.
_PLACEHOLDER = secretsmanager.SecretStringGenerator(
    secret_string_template='{"state": "pending: the first cluster node generates the certificate"}',
    generate_string_key="nonce", password_length=16, exclude_punctuation=True)


class MinioTls(Construct):
    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        self.secret = secretsmanager.Secret(
            self, "Secret",
            description="MinIO TLS: server certificate, private key and CA certificate (nodes only)",
            generate_secret_string=_PLACEHOLDER,
            # A lost secret only means a new CA at the next MinIO start (clients then trust the new CA).
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.ca_secret = secretsmanager.Secret(
            self, "CaSecret",
            description="MinIO TLS: the cluster CA certificate only (public; clients and the checker verify with it)",
            generate_secret_string=_PLACEHOLDER,
            removal_policy=RemovalPolicy.DESTROY,
        )
        for secret in (self.secret, self.ca_secret):
            Validations.of(secret).acknowledge(Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="Certificates are rotated by replacing the CA (README, MinIO over TLS: a rotate request "
                       "and a planned MinIO restart); a Secrets Manager rotation Lambda would add nothing."))

    def grant_node(self, grantee: iam.IGrantable) -> None:
        """Read and write both: the first node to need the material generates and stores it."""
        for secret in (self.secret, self.ca_secret):
            secret.grant_read(grantee)
        # PutSecretValue only (grant_write would add UpdateSecret and moving version stages).
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["secretsmanager:PutSecretValue"],
            resources=[self.secret.secret_arn, self.ca_secret.secret_arn]))

    def grant_ca_read(self, grantee: iam.IGrantable) -> None:
        self.ca_secret.grant_read(grantee)
