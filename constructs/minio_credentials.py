"""MinIO root credentials, generated and kept in Secrets Manager; nodes read them at MinIO start."""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct


class MinioCredentials(Construct):
    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        self.secret = secretsmanager.Secret(
            self, "Secret",
            description="MinIO root user of the EFS HA cluster (read by the nodes at MinIO start)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"username": "minio-admin"}',
                generate_string_key="password",
                password_length=40,
                exclude_punctuation=True,
            ),
            # MinIO encrypts its IAM data on EFS with the root credentials; the data is retained, so is the key.
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(self.secret).acknowledge(Acknowledgment(
            id="AwsSolutions-SMG4",
            reason="MinIO reads its root credentials only at start; rotating them needs a planned MinIO restart "
                   "on the active node (README runbook), so rotation is an operator step, not a schedule."))

    def grant_read(self, grantee: iam.IGrantable) -> None:
        self.secret.grant_read(grantee)
