#!/usr/bin/env bash
# First-boot setup of a cluster node: EFS mount, MinIO (installed, started only by the agent), node agent.
# Rendered by userdata/render.py: each double-braced placeholder is filled in at synthesis time.
set -euo pipefail

readonly file_system_id='{{FILE_SYSTEM_ID}}'
readonly mount_point='{{MOUNT_POINT}}'
readonly mount_unit='{{MOUNT_UNIT}}'
readonly minio_source='{{MINIO_SOURCE}}'
readonly minio_sha256='{{MINIO_SHA256}}'
readonly agent_source='{{AGENT_SOURCE}}'
readonly region='{{REGION}}'
readonly stack_name='{{STACK_NAME}}'
# The node's Auto Scaling group: its CreationPolicy, and its rolling update, wait for this instance's signal.
readonly signal_logical_id='{{SIGNAL_LOGICAL_ID}}'
# The agent's kernel watchdog (watchdog: required): softdog, the only watchdog driver AL2023 ships.
readonly watchdog_required='{{WATCHDOG_REQUIRED}}'
readonly watchdog_timeout='{{WATCHDOG_TIMEOUT_SECONDS}}'
# A fixed uid/gid, identical on every node, so files MinIO writes on EFS stay readable after a failover.
readonly minio_uid=2049

# Attempts (efs-ha-bootstrap.service restarts this script on failure). A failed attempt that is the last one
# (max_attempts, or give_up_after_seconds after the first) signals FAILURE so CloudFormation rolls back at once
# instead of at the CreationPolicy's 20-minute timeout, and exits with exit_gave_up, which the unit does not
# restart (RestartPreventExitStatus=). give_up_after_seconds leaves one slow attempt of margin before 20 minutes.
readonly max_attempts=10
readonly give_up_after_seconds=720
readonly exit_gave_up=75
# Per boot (the unit runs only at first boot): the attempt count and what earlier attempts finished.
state_dir=/run/efs-ha/bootstrap
log_file=/var/log/efs-ha-bootstrap.log
instance_id_file=/var/lib/cloud/data/instance-id
# SignalResource: signal_tries calls, waiting signal_backoff_seconds, then twice as long each time (2+4+8+16 s).
signal_tries=5
signal_backoff_seconds=2
attempt=0
first_attempt_at=0
current_step=start

fetch() {  # fetch SOURCE DEST: s3:// through the instance role (asset bucket), https:// with retries
  case "$1" in
    s3://*) aws s3 cp --only-show-errors --region "$region" "$1" "$2" ;;
    https://*) curl --fail --silent --show-error --location --retry 5 --retry-connrefused -o "$2" "$1" ;;
    *) echo "unsupported source: $1" >&2; return 1 ;;
  esac
}

disable_source_dest_check() {
  # Packets for the VIP carry a destination that is not this ENI's own address. A launch template cannot turn
  # the check off, so each new instance does it on itself (its role may do so only on this node's instances).
  aws ec2 modify-instance-attribute --region "$region" --instance-id "$(<"$instance_id_file")" \
    --no-source-dest-check
}

install_packages() {
  dnf install -y --setopt=retries=10 amazon-efs-utils python3-boto3 unzip openssl
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
  ensure_tls
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

ensure_tls() {
  # The cluster's MinIO certificate exists (and its CA is published for the checker and clients) before this node
  # reports ready, so the deploy completes with TLS material in place; MinIO's start installs it (minio-tls install).
  /opt/efs-ha/bin/minio-tls ensure
}

start_services() {
  systemctl daemon-reload
  # minio.service (and the VIP with it) has no [Install] section on purpose: only the agent starts it, on the
  # active node. The agent is Type=notify: this returns once it has written its first heartbeat.
  systemctl enable --now efs-ha-agent.service
  # Its stop (at shutdown) hands the role over before MinIO stops.
  systemctl enable --now efs-ha-handover.service
}

cfn_signal() {  # cfn_signal SUCCESS|FAILURE [REASON]: retried with backoff; non-zero if it never got through
  local status=$1 reason=${2:-} unique_id output try delay=$signal_backoff_seconds
  unique_id=$(<"$instance_id_file")
  # SignalResource has no reason field: the UniqueId (at most 64 characters) is what the stack event shows.
  [[ -z "$reason" ]] || unique_id="${unique_id}: ${reason}"
  unique_id=${unique_id:0:64}
  for ((try = 1; try <= signal_tries; try++)); do
    if output=$(aws cloudformation signal-resource --region "$region" --stack-name "$stack_name" \
        --logical-resource-id "$signal_logical_id" --unique-id "$unique_id" --status "$status" 2>&1); then
      echo "CloudFormation signal $status sent (UniqueId: $unique_id)"
      return 0
    fi
    echo "CloudFormation signal $status, try $try/$signal_tries, failed: $output" >&2
    if [[ "$output" == *"cannot be signaled"* ]]; then
      # The resource no longer waits (signalled by an earlier try whose answer was lost, or timed out): no retry helps.
      echo "CloudFormation no longer waits for a signal from this instance; nothing left to signal" >&2
      return 0
    fi
    if ((try < signal_tries)); then
      sleep "$delay"
      delay=$((delay * 2))
    fi
  done
  return 1
}

signal_ready() {
  # The instance's CreationPolicy: a deploy goes on (and replaces the next node, or deletes the old instance)
  # only once this node can take over. A signal that never gets through fails this attempt: systemd retries it
  # (without redoing the finished setup), and the last attempt signals FAILURE.
  [[ ! -e "$state_dir/signalled" ]] || { echo "CloudFormation already signalled"; return 0; }
  cfn_signal SUCCESS
  touch "$state_dir/signalled"
}

begin_attempt() {  # counts this attempt in $state_dir/attempts ("COUNT FIRST_EPOCH_SECONDS")
  local count=0 first
  first=$(date +%s)
  install -d -m 0700 "$state_dir"
  [[ ! -s "$state_dir/attempts" ]] || read -r count first <"$state_dir/attempts"
  attempt=$((count + 1))
  first_attempt_at=$first
  echo "$attempt $first_attempt_at" >"$state_dir/attempts"
  echo "efs-ha bootstrap attempt $attempt/$max_attempts"
}

is_last_attempt() {
  ((attempt >= max_attempts || $(date +%s) - first_attempt_at >= give_up_after_seconds))
}

on_exit() {  # EXIT trap: on_exit STATUS. A failed attempt is retried by systemd; the last one signals FAILURE.
  local status=$1
  ((status != 0 && status != exit_gave_up)) || return 0
  if ! is_last_attempt; then
    echo "bootstrap attempt $attempt failed in $current_step (exit $status); systemd retries it" >&2
    return 0
  fi
  echo "bootstrap gave up: attempt $attempt failed in $current_step (exit $status)" >&2
  cfn_signal FAILURE "$current_step exit $status, attempt $attempt/$max_attempts" ||
    echo "CloudFormation FAILURE signal not accepted either; the stack fails at the CreationPolicy timeout" >&2
  exit "$exit_gave_up"
}

main() {
  exec > >(tee -a "$log_file") 2>&1
  begin_attempt
  trap 'on_exit $?' EXIT
  if [[ -e "$state_dir/setup-done" ]]; then
    echo "setup finished by an earlier attempt"
  else
    for current_step in disable_source_dest_check install_packages mount_efs install_minio install_agent load_watchdog; do
      "$current_step"
    done
  fi
  current_step=start_services
  start_services
  touch "$state_dir/setup-done"
  current_step=signal_ready
  signal_ready
  echo "efs-ha bootstrap finished"
}

# Sourcing the script (the tests do) defines the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main
fi
