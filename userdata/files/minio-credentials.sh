#!/usr/bin/env bash
# ExecStartPre of minio.service: MinIO root credentials from Secrets Manager into a root-only runtime file.
set -euo pipefail
readonly secret_arn='{{SECRET_ARN}}'
readonly region='{{REGION}}'
readonly env_file=/run/efs-ha/minio.env

secret_json=$(aws secretsmanager get-secret-value --region "$region" --secret-id "$secret_arn" \
  --query SecretString --output text)
install -d -m 0700 /run/efs-ha
umask 077
SECRET_JSON="$secret_json" python3 -c '
import json, os
secret = json.loads(os.environ["SECRET_JSON"])
print("MINIO_ROOT_USER=" + secret["username"])
print("MINIO_ROOT_PASSWORD=" + secret["password"])
' > "$env_file.tmp"
mv "$env_file.tmp" "$env_file"
