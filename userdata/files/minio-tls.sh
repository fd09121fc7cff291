#!/usr/bin/env bash
# MinIO's TLS material (docs/failover-design.md, "MinIO over TLS"). Two commands:
#   minio-tls ensure   (bootstrap): make sure the cluster's CA and server certificate exist in Secrets Manager
#   minio-tls install  (ExecStartPre=+ of minio.service): ensure, then write them into MinIO's certs dir
# The first node to need them generates them with openssl and stores them with a compare-and-set on the secret's
# current version (PutSecretValue with a ClientRequestToken derived from that version): a node racing it gets
# ResourceExistsException and installs the winner's. The CA key is deleted right after signing. Key material only
# ever sits in files under /run (tmpfs, mode 0600) and in Secrets Manager; it is never printed or put on a
# command line (the secret string is passed as file://).
set -euo pipefail

readonly tls_enabled='{{TLS_ENABLED}}'
readonly secret_arn='{{TLS_SECRET_ARN}}'
readonly ca_secret_arn='{{TLS_CA_SECRET_ARN}}'
readonly region='{{REGION}}'
readonly vip='{{VIP}}'
readonly server_name='{{TLS_SERVER_NAME}}'
# Not readonly: the tests point these at a temporary directory and their own user.
certs_dir='{{MINIO_CERTS_DIR}}'
ca_copy='{{MINIO_CA_COPY}}'
work_parent=/run/efs-ha
owner=minio-user
# 825 days: the longest server-certificate validity Apple clients accept. Rotation: README "MinIO over TLS".
validity_days=825
warn_days=60

secret_get() {  # secret_get ARN: the GetSecretValue response as JSON (VersionId, SecretString)
  aws secretsmanager get-secret-value --region "$region" --secret-id "$1" --output json
}

secret_put() {  # secret_put ARN TOKEN FILE: exit 0 (stored or already identical), 3 (token taken), else failure
  local output
  if output=$(aws secretsmanager put-secret-value --region "$region" --secret-id "$1" \
      --client-request-token "$2" --secret-string "file://$3" --output json 2>&1 >/dev/null); then
    return 0
  fi
  if [[ "$output" == *ResourceExistsException* ]]; then
    return 3
  fi
  echo "minio-tls: PutSecretValue failed: $output" >&2
  return 1
}

json_field() {  # json_field NAME < RESPONSE: one field of a GetSecretValue response, or of its SecretString
  python3 -c '
import json, sys
response = json.load(sys.stdin)
name = sys.argv[1]
if name in response:
    print(response[name])
else:
    try:
        value = json.loads(response.get("SecretString") or "{}")
    except ValueError:
        value = {}
    print(value.get(name, "") if isinstance(value, dict) else "")
' "$1"
}

cas_token() {  # cas_token PREFIX TEXT: a ClientRequestToken (32..64 characters) that is a function of TEXT
  printf '%s-%s' "$1" "$(printf '%s' "$2" | sha256sum | cut -c1-56)"
}

generate() {  # generate DIR: a new CA and server certificate in DIR/secret.json (the CA key is deleted)
  local dir=$1 serial
  cat >"$dir/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
O = efs-ha
CN = efs-ha MinIO CA $(date -u +%Y-%m-%dT%H:%M:%SZ)
[server_dn]
O = efs-ha
CN = ${server_name}
[ca_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:${server_name},DNS:localhost,IP:${vip},IP:127.0.0.1
EOF
  (
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/server.key" 2>/dev/null
  )
  openssl req -x509 -new -config "$dir/openssl.cnf" -extensions ca_ext -key "$dir/ca.key" -sha256 \
    -days "$validity_days" -out "$dir/ca.crt"
  sed -i 's/^distinguished_name = dn$/distinguished_name = server_dn/' "$dir/openssl.cnf"
  openssl req -new -config "$dir/openssl.cnf" -key "$dir/server.key" -out "$dir/server.csr"
  serial="0x$(openssl rand -hex 16)"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -set_serial "$serial" \
    -days "$validity_days" -sha256 -extfile "$dir/openssl.cnf" -extensions server_ext -out "$dir/server.crt" \
    2>/dev/null
  # Nobody can sign another certificate with this CA, so clients that trust it trust this server only.
  rm -f "$dir/ca.key"
  (
    umask 077
    python3 - "$dir" "$server_name" >"$dir/secret.json" <<'PY'
import json, pathlib, sys
folder, server_name = pathlib.Path(sys.argv[1]), sys.argv[2]
print(json.dumps({
    "ca_certificate": (folder / "ca.crt").read_text(),
    "certificate": (folder / "server.crt").read_text(),
    "private_key": (folder / "server.key").read_text(),
    "server_name": server_name,
}))
PY
  )
}

ensure() {  # ensure DIR [publish]: the current TLS secret response in DIR/current.json, generated first if it has
  # none. The CA secret is written after a generation, or always with "publish" (the bootstrap: MinIO's start, on a
  # takeover's critical path, skips that call).
  local dir=$1 publish=${2:-} version token
  secret_get "$secret_arn" >"$dir/current.json"
  if [[ -z "$(json_field certificate <"$dir/current.json")" ]]; then
    publish=publish
    # No certificate yet (the deploy's placeholder) or a rotation request: replace exactly this version.
    version=$(json_field VersionId <"$dir/current.json")
    token=$(cas_token tls "$version")
    generate "$dir"
    local status=0
    secret_put "$secret_arn" "$token" "$dir/secret.json" || status=$?
    case $status in
      0) echo "minio-tls: generated a new CA and server certificate for ${server_name}, ${vip}" ;;
      3) echo "minio-tls: another node stored the certificate first; using that one" ;;
      *) return 1 ;;
    esac
    rm -f "$dir/secret.json" "$dir/server.key"
    secret_get "$secret_arn" >"$dir/current.json"
    [[ -n "$(json_field certificate <"$dir/current.json")" ]] || {
      echo "minio-tls: the TLS secret still has no certificate after storing one" >&2; return 1; }
  fi
  [[ -z "$publish" ]] || publish_ca "$dir"
}

ensure_and_publish() {
  ensure "$1" publish
}

publish_ca() {  # publish_ca DIR: the CA certificate (public) into the CA-only secret the checker and clients read
  local dir=$1 ca_pem status=0
  ca_pem=$(json_field ca_certificate <"$dir/current.json")
  CA_PEM="$ca_pem" python3 -c 'import json, os; print(json.dumps({"ca_certificate": os.environ["CA_PEM"] + "\n"}))' \
    >"$dir/ca.json"
  # Same CA, same token: an idempotent no-op once stored, so an older node never moves the current version back.
  secret_put "$ca_secret_arn" "$(cas_token ca "$ca_pem")" "$dir/ca.json" || status=$?
  if ((status == 3)); then
    echo "minio-tls: the CA secret holds another value under this CA's token" >&2
    return 1
  fi
  return "$status"
}

write_files() {  # write_files DIR: public.crt, private.key and CAs/ from DIR/current.json into the certs dir
  local dir=$1 staging="${certs_dir}.new"
  # MinIO runs as $owner and must traverse the parent; nobody else may.
  install -d -m 0700 "$(dirname "$certs_dir")"
  chown "$owner:$owner" "$(dirname "$certs_dir")"
  rm -rf "$staging"
  install -d -m 0700 "$staging" "$staging/CAs"
  (
    umask 077
    python3 - "$staging" "$dir/current.json" <<'PY'
import json, os, sys
staging, response = sys.argv[1], sys.argv[2]
with open(response) as handle:
    secret = json.loads(json.load(handle)["SecretString"])
for name, key in (("public.crt", "certificate"), ("private.key", "private_key"),
                  ("CAs/efs-ha-ca.crt", "ca_certificate")):
    descriptor = os.open(os.path.join(staging, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret[key])
PY
  )
  chown -R "$owner:$owner" "$staging"
  rm -rf "$certs_dir"
  mv "$staging" "$certs_dir"
  # The CA alone, readable by the agent's local health check and by `efs-ha verify`.
  install -m 0644 "$certs_dir/CAs/efs-ha-ca.crt" "$ca_copy"
}

report_expiry() {
  local not_after
  not_after=$(openssl x509 -noout -enddate -in "$certs_dir/public.crt" | cut -d= -f2)
  echo "minio-tls: certificate for ${server_name} installed in ${certs_dir}, valid until ${not_after}"
  if ! openssl x509 -noout -checkend $((warn_days * 86400)) -in "$certs_dir/public.crt" >/dev/null; then
    echo "minio-tls: WARNING: the certificate expires within ${warn_days} days (${not_after}): rotate it" \
      "(README, MinIO over TLS)" >&2
  fi
}

clear_files() {  # tls off: MinIO serves plain HTTP from an empty certs dir
  rm -rf "$certs_dir" "$ca_copy"
  install -d -m 0700 "$(dirname "$certs_dir")" "$certs_dir"
  chown "$owner:$owner" "$(dirname "$certs_dir")" "$certs_dir"
}

work_dir=""

with_workdir() {  # with_workdir COMMAND: run COMMAND DIR with a private directory on tmpfs, removed afterwards
  # Removed by an EXIT trap, not by `COMMAND || ...`: that form would turn off errexit inside COMMAND.
  install -d -m 0700 "$work_parent"
  work_dir=$(mktemp -d -p "$work_parent" minio-tls.XXXXXX)
  trap 'rm -rf "$work_dir"' EXIT
  "$1" "$work_dir"
  rm -rf "$work_dir"
  trap - EXIT
}

install_certs() {
  if [[ "$tls_enabled" != "true" ]]; then
    clear_files
    return 0
  fi
  with_workdir ensure_and_write
  report_expiry
}

ensure_and_write() {
  ensure "$1"
  write_files "$1"
}

main() {
  case "${1:-}" in
    ensure) [[ "$tls_enabled" != "true" ]] || with_workdir ensure_and_publish ;;
    install) install_certs ;;
    *) echo "usage: minio-tls ensure|install" >&2; return 64 ;;
  esac
}

# Sourcing the script (the tests do) defines the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
