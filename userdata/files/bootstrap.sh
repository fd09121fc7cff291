#!/usr/bin/env bash
# First-boot setup of a cluster node: EFS mount, MinIO (installed, started only by the agent), node agent.
# Rendered by userdata/render.py: each double-braced placeholder is filled in at synthesis time.
set -euo pipefail
exec > >(tee -a /var/log/efs-ha-bootstrap.log) 2>&1

readonly file_system_id='{{FILE_SYSTEM_ID}}'
readonly mount_point='{{MOUNT_POINT}}'
readonly mount_unit='{{MOUNT_UNIT}}'
readonly minio_source='{{MINIO_SOURCE}}'
readonly minio_sha256='{{MINIO_SHA256}}'
readonly agent_source='{{AGENT_SOURCE}}'
readonly region='{{REGION}}'
readonly stack_name='{{STACK_NAME}}'
readonly instance_logical_id='{{INSTANCE_LOGICAL_ID}}'
# The agent's kernel watchdog (watchdog: required): softdog, the only watchdog driver AL2023 ships.
readonly watchdog_required='{{WATCHDOG_REQUIRED}}'
readonly watchdog_timeout='{{WATCHDOG_TIMEOUT_SECONDS}}'
# A fixed uid/gid, identical on every node, so files MinIO writes on EFS stay readable after a failover.
readonly minio_uid=2049

fetch() {  # fetch SOURCE DEST: s3:// through the instance role (asset bucket), https:// with retries
  case "$1" in
    s3://*) aws s3 cp --only-show-errors --region "$region" "$1" "$2" ;;
    https://*) curl --fail --silent --show-error --location --retry 5 --retry-connrefused -o "$2" "$1" ;;
    *) echo "unsupported source: $1" >&2; return 1 ;;
  esac
}

install_packages() {
  dnf install -y --setopt=retries=10 amazon-efs-utils python3-boto3 unzip
}

mount_efs() {
  install -d -m 0755 "$mount_point"
  local fstab_line="${file_system_id}:/ ${mount_point} efs _netdev,tls 0 0"
  grep -qxF "$fstab_line" /etc/fstab || echo "$fstab_line" >> /etc/fstab
  systemctl daemon-reload  # lets systemd-fstab-generator create the mount unit
  systemctl start "$mount_unit"
}

install_minio() {
  getent group minio-user >/dev/null || groupadd --system --gid "$minio_uid" minio-user
  id minio-user >/dev/null 2>&1 || useradd --system --uid "$minio_uid" --gid minio-user \
    --no-create-home --shell /sbin/nologin minio-user
  local download
  download=$(mktemp)
  fetch "$minio_source" "$download"
  # Never run a binary we did not pin: a wrong checksum stops the bootstrap here.
  echo "${minio_sha256}  ${download}" | sha256sum --check --strict -
  install -m 0755 "$download" /usr/local/bin/minio
  rm -f "$download"
  chown minio-user:minio-user "$mount_point"
}

load_watchdog() {
  # soft_margin=W: the node resets W s after the agent's last feed while it is armed. nowayout=0: the agent's
  # magic close disarms it on a standby. soft_panic=0: a plain emergency restart, no panic handling to hang in.
  [[ "$watchdog_required" == "true" ]] || return 0
  echo "options softdog soft_margin=${watchdog_timeout} nowayout=0 soft_panic=0" \
    > /etc/modprobe.d/efs-ha-softdog.conf
  echo softdog > /etc/modules-load.d/efs-ha-softdog.conf
  modprobe softdog
  udevadm settle --timeout=10 || true
  [[ -c /dev/watchdog ]] || { echo "softdog loaded but /dev/watchdog is missing" >&2; return 1; }
}

install_agent() {
  local archive
  archive=$(mktemp)
  fetch "$agent_source" "$archive"
  rm -rf /opt/efs-ha/agent/node_agent
  install -d -m 0755 /opt/efs-ha/agent/node_agent
  unzip -q -o "$archive" -d /opt/efs-ha/agent/node_agent
  rm -f "$archive"
}

start_services() {
  systemctl daemon-reload
  # minio.service (and the VIP with it) has no [Install] section on purpose: only the agent starts it, on the
  # active node. The agent is Type=notify: this returns once it has written its first heartbeat.
  systemctl enable --now efs-ha-agent.service
}

signal_ready() {
  # The instance's CreationPolicy: a deploy goes on (and replaces the next node, or deletes the old instance)
  # only once this node can take over. A later re-run of this script is not a creation: nothing to signal.
  aws cloudformation signal-resource --region "$region" --stack-name "$stack_name" \
    --logical-resource-id "$instance_logical_id" --unique-id "$(cat /var/lib/cloud/data/instance-id)" \
    --status SUCCESS || echo "CloudFormation signal not accepted (already signalled?)"
}

install_packages
mount_efs
install_minio
install_agent
load_watchdog
start_services
signal_ready
echo "efs-ha bootstrap finished"
