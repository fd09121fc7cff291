"""The nodes (two, or three for the scenarios that ask for them): an agent process, its S3 server (started by
the agent) and a sampler, in the node's namespace; each node sees the shared "EFS" (one tmpfs) through its own
bind mount, so one node's view can fail alone. Each node also has a simulated watchdog device
(drill/watchdog_sim.py, its own process): when the armed device is not fed in time it kills the node's processes,
and the drill boots the node again (a fresh agent) after BOOT_DELAY_SECONDS, as a reset machine comes back."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drill.config import AWS_ADDRESS, MOTO_PORT, NODE_NAMES, TABLE_NAME, Fleet, Timings, base_env
from drill.netns import Topology, cmdline, in_ns, ip, kill_pid, ns_pids
from drill.procs import Child
from drill.s3_start import CRASH_FILE as S3_CRASH_FILE
from drill.s3_start import DELAY_FILE as S3_DELAY_FILE

S3_MARKERS = ("locals3server", "minio server")
MINIO_USER, MINIO_PASSWORD = "drill", "drill-secret"
# A reset node's agent starts again this long after the reset: an EC2 instance's reboot (firmware, kernel,
# systemd, the EFS mount) takes tens of seconds, far longer than a takeover.
BOOT_DELAY_SECONDS = 20.0
CLOCKSKEW_DIR = Path(__file__).resolve().parent / "clockskew"
# The state-table cut: a route for the AWS endpoint into a veth whose peer is down and that does no ARP, so
# packets are dropped silently (a partition: calls time out) and only that address is affected.
BLACKHOLE_DEVICE, BLACKHOLE_PEER = "bh0", "bh1"


def s3_server_argv(data_dir: str) -> tuple[list[str], str]:
    """A real MinIO binary when one is on PATH, else local-s3-server (pip) serving the same directory.
    Returns the argv and the health URL the agent should probe."""
    minio = shutil.which("minio")
    if minio:
        return [minio, "server", "--quiet", "--address", ":9000", data_dir], \
            "http://127.0.0.1:9000/minio/health/live"
    # local-s3-server has no /minio/health/live; ListBuckets on / answers 200 when it serves.
    return [sys.executable, "-m", "locals3server", "--hostname", "0.0.0.0", "--port", "9000",
            "--root-dir", data_dir], "http://127.0.0.1:9000/"


def s3_server_name() -> str:
    return "minio (binary on PATH)" if shutil.which("minio") else "local-s3-server 0.2.2 (PyPI)"


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True, timeout=15)


class SharedStorage:
    """One tmpfs is the EFS file system; node views are bind mounts of it (each a mount point, as EFS is)."""

    def __init__(self, work: Path, node_names: tuple[str, ...] = NODE_NAMES) -> None:
        self.root = work / "efs"
        self.views = {node: work / node / "efs" for node in node_names}
        self._mounted: list[Path] = []

    def mount(self) -> None:
        self.root.mkdir(parents=True)
        mount("-t", "tmpfs", "-o", "size=512m", "drill-efs", str(self.root))
        self._mounted.append(self.root)
        for view in self.views.values():
            view.mkdir(parents=True)
            mount("--bind", str(self.root), str(view))
            self._mounted.append(view)

    def set_read_only(self, node: str, read_only: bool) -> None:
        # A read-only bind mount fails every write with EROFS, even for root: an EFS write failure on ONE node.
        mount("-o", f"remount,bind,{'ro' if read_only else 'rw'}", str(self.views[node]))

    def unmount(self) -> None:
        for path in reversed(self._mounted):
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=15)
        self._mounted.clear()


class Node:
    def __init__(self, name: str, topology: Topology, fleet: Fleet, timings: Timings, view: Path, log_dir: Path,
                 on_sample: Callable[[str, float, bool], None],
                 on_event: Callable[[str, float, str], None] = lambda _node, _t, _text: None) -> None:
        self.name = name
        self.namespace = topology.node(name)
        self.view = view
        self._topology = topology
        self._log_dir = log_dir
        self._on_sample = on_sample
        self._on_event = on_event
        self._timings = timings
        self._lock = threading.RLock()
        self.links_up = True
        self.powered = True  # False: the machine is off (killed as a whole, or StopInstances), until heal
        self.ssm_reachable = True  # False: SSM commands to this node are never delivered
        self.table_cut = False
        self.clock_offset = 0.0  # seconds the node's wall clock is off (its agent's and S3 server's)
        self.frozen_pid: int | None = None
        self.resets: list[float] = []  # drill time of each watchdog reset
        self.agent: Child | None = None
        self.sampler: Child | None = None
        self.watchdog: Child | None = None
        self.slow_efs: Child | None = None
        self._slow_backing: Path | None = None
        self._watchdog_ready = threading.Event()
        self._starts = 0
        self.device = view.parent / "watchdog"
        self.control_dir = view.parent  # s3_start.py's delay and crash files
        self.run_dir = view.parent / f"run-{name}"
        argv, health = s3_server_argv(str(view / "data"))
        self._env = {
            **base_env(),
            "AWS_ENDPOINT_URL": f"http://{AWS_ADDRESS}:{MOTO_PORT}",
            "STATE_TABLE_NAME": TABLE_NAME, "NODE_NAME": name, "MOUNT_POINT": str(view),
            # The node's identity as IMDS would give it (moto's ids; the 10.0.x.x address is never contacted).
            "INSTANCE_ID": fleet.instance_ids[name], "ENI_ID": fleet.enis[name],
            "PRIVATE_IP": fleet.private_ips[name],
            "HEARTBEAT_INTERVAL_SECONDS": str(timings.heartbeat_interval_seconds),
            "LEASE_SECONDS": str(timings.lease_seconds), "MINIO_HEALTH_URL": health,
            "MINIO_ROOT_USER": MINIO_USER, "MINIO_ROOT_PASSWORD": MINIO_PASSWORD,
            # The agent runs the S3 server as its own child process instead of a systemd unit, through a start
            # wrapper that can delay (or fail) the start like ExecStartPre + MinIO's start on EFS (s3_start.py).
            "MINIO_COMMAND": json.dumps([sys.executable, "-m", "drill.s3_start", str(self.control_dir), "--",
                                         *argv]),
            "MINIO_LOG": str(log_dir / f"s3-{name}.log"),
            # Never /dev/watchdog: the simulated device (a FIFO this drill reads).
            "WATCHDOG": timings.watchdog, "WATCHDOG_DEVICE": str(self.device),
            "WATCHDOG_TIMEOUT_SECONDS": str(timings.watchdog_timeout_seconds),
            # The node's /run (never this machine's): a reboot of the simulated node clears it.
            "RESET_INTENT_FILE": str(self.run_dir / "reset-pending"),
            # Every simulated node shares this machine's uptime: its instance's own launch time instead.
            "LAUNCHED_AT": f"{time.time():.3f}",
        }

    # ----- the simulated watchdog device -----
    def start_watchdog(self, timeout: float = 15.0) -> None:
        """Before the first agent start: without a reader the agent's open of the FIFO fails (ENXIO)."""
        self.watchdog = Child(f"watchdog-{self.name}", [
            sys.executable, "-m", "drill.watchdog_sim", "--device", str(self.device), "--timeout",
            str(self._timings.watchdog_timeout_seconds), "--namespace", self.namespace],
            base_env(), self._log_dir, on_line=self._on_watchdog_line, stdin=True)
        if not self._watchdog_ready.wait(timeout):
            raise RuntimeError(f"the simulated watchdog of {self.name} did not start")

    def _on_watchdog_line(self, line: str) -> None:
        record = json.loads(line)
        kind = record.get("k")
        if kind == "ready":
            self._watchdog_ready.set()
        elif kind == "reset":
            at = float(record["at"])
            with self._lock:
                self.resets.append(at)
            self._on_event(self.name, at, f"watchdog reset: killed {record.get('killed')}")
            boot = threading.Timer(BOOT_DELAY_SECONDS, self._boot)
            boot.daemon = True
            boot.start()
        elif kind in ("armed", "disarmed", "poweroff"):
            self._on_event(self.name, float(record["t"]), f"watchdog {kind}")

    def _clear_run_dir(self) -> None:
        """A (re)boot: /run is a tmpfs, so it is empty again."""
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _boot(self) -> None:
        with self._lock:
            self._clear_run_dir()
            if self.powered:
                self._on_event(self.name, time.time(), "boots after the watchdog reset")
                self.start_agent()

    def _power_off_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.send("poweroff")

    def start_sampler(self) -> None:
        self.sampler = Child(f"sampler-{self.name}", in_ns(self.namespace, [
            sys.executable, "-m", "drill.sampler", self.name]), self._env, self._log_dir, on_line=self._sample)

    def _sample(self, line: str) -> None:
        stamp, up = line.split()
        self._on_sample(self.name, float(stamp), up == "1")

    def start_agent(self) -> None:
        """Boot the node's agent (again): what systemd does when the instance starts."""
        with self._lock:
            if self.agent is not None and self.agent.alive():
                return
            if self.agent is not None:
                self.agent.stop()
            self._starts += 1
            self.frozen_pid = None
            env = dict(self._env)
            if self.clock_offset:
                env["DRILL_CLOCK_OFFSET_SECONDS"] = f"{self.clock_offset:g}"
                env["PYTHONPATH"] = f"{CLOCKSKEW_DIR}{os.pathsep}{env['PYTHONPATH']}"
            self.agent = Child(f"agent-{self.name}-{self._starts}",
                               in_ns(self.namespace, [sys.executable, "-m", "node_agent"]), env, self._log_dir,
                               on_line=self._agent_line)

    def _agent_line(self, line: str) -> None:
        # Only what the drill reports: the agent's own account of a self-fence (its guard killed MinIO).
        if ("lease lost" in line and "MinIO" in line) or ("stop_minio" in line and "lease_lost" in line):
            self._on_event(self.name, time.time(), f"agent: {line[:200]}")

    def restart_agent(self) -> None:
        """systemctl restart of the agent (a graceful stop, then a start with the node's current settings)."""
        with self._lock:
            if self.agent is not None:
                self.agent.stop(timeout=15)
            self.start_agent()

    def s3_pids(self) -> list[int]:
        return [pid for pid in ns_pids(self.namespace) if any(m in cmdline(pid) for m in S3_MARKERS)]

    def kill(self) -> None:
        """kill -9 of the whole node: agent and S3 server (the sampler is the observer, not the node).
        The machine is off from now on: its watchdog resets nothing and it does not boot until heal."""
        with self._lock:
            self.powered = False
            if self.agent is not None:
                kill_pid(self.agent.pid)
            for pid in self.s3_pids():
                kill_pid(pid)
            self._power_off_watchdog()
        if self.agent is not None:
            self.agent.stop(timeout=5)

    def power_on(self) -> None:
        with self._lock:
            if not self.powered:
                self._clear_run_dir()
            self.powered = True

    def boot_replacement(self, instance_id: str, eni: str, private_ip: str) -> None:
        """The node's new instance (an Auto Scaling replacement) boots: same node name and EFS view, a new
        identity, an empty /run; its agent must come back as a standby."""
        with self._lock:
            self._env.update({"INSTANCE_ID": instance_id, "ENI_ID": eni, "PRIVATE_IP": private_ip,
                              "LAUNCHED_AT": f"{time.time():.3f}"})
            self._clear_run_dir()
            self.powered = True
            self._on_event(self.name, time.time(), f"replacement instance {instance_id} boots")
            self.start_agent()

    def shut_down(self, handover_timeout: float) -> str:
        """What the OS does at `shutdown`, an EC2 stop or terminate (a deploy or an instance refresh replacing the
        node): systemd stops efs-ha-handover.service first (SIGUSR1 to the agent, then `python3 -m
        node_agent.handover` waits until the role has moved), then MinIO and the agent. The machine is then off
        until heal. Returns the handover's own account of what happened."""
        with self._lock:
            agent = self.agent
        if agent is not None and agent.alive():
            kill_pid(agent.pid, signal.SIGUSR1)
        env = {**self._env, "HANDOVER_TIMEOUT_SECONDS": f"{handover_timeout:g}"}
        done = subprocess.run(in_ns(self.namespace, [sys.executable, "-m", "node_agent.handover"]), env=env,
                              capture_output=True, text=True, timeout=handover_timeout + 15, check=False)
        outcome = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        self._on_event(self.name, time.time(), outcome)
        with self._lock:
            self.powered = False
            if self.agent is not None:
                self.agent.stop(timeout=15)  # SIGTERM: the agent stops its S3 server and writes its last item
            self._power_off_watchdog()
        return outcome

    def freeze(self) -> int | None:
        """SIGSTOP of the agent process only (a stalled interpreter, a paused cgroup): its S3 server runs on."""
        with self._lock:
            if self.agent is None or not self.agent.alive():
                return None
            kill_pid(self.agent.pid, signal.SIGSTOP)
            self.frozen_pid = self.agent.pid
            return self.frozen_pid

    def thaw(self) -> None:
        with self._lock:
            if self.frozen_pid is not None:
                kill_pid(self.frozen_pid, signal.SIGCONT)
                self.frozen_pid = None

    def set_table_cut(self, cut: bool) -> None:
        """Cut (or restore) only this node's path to the state table's endpoint; the client, the other node and
        the node's EFS view are untouched."""
        with self._lock:
            if cut == self.table_cut:
                return
            if cut:
                if ip("-n", self.namespace, "link", "show", BLACKHOLE_DEVICE, check=False).returncode != 0:
                    ip("-n", self.namespace, "link", "add", BLACKHOLE_DEVICE, "type", "veth", "peer", "name",
                       BLACKHOLE_PEER)
                    ip("-n", self.namespace, "link", "set", BLACKHOLE_DEVICE, "arp", "off")
                    ip("-n", self.namespace, "link", "set", BLACKHOLE_DEVICE, "up")
                ip("-n", self.namespace, "route", "replace", f"{AWS_ADDRESS}/32", "dev", BLACKHOLE_DEVICE)
            else:
                ip("-n", self.namespace, "route", "del", f"{AWS_ADDRESS}/32", check=False)
            self.table_cut = cut

    def start_slow_efs(self, backing: Path, delay: float, monitor_delay: float, timeout: float = 20.0) -> None:
        """Mount a FUSE passthrough that delays every write over this node's view (drill/slowfs.py)."""
        from drill.slowfs import PYLIB

        with self._lock:
            if self.slow_efs is not None:
                return
            self._slow_backing = backing
            env = {**base_env(), "PYTHONPATH": f"{base_env()['PYTHONPATH']}{os.pathsep}{PYLIB}"}
            self.slow_efs = Child(f"slowfs-{self.name}", [
                sys.executable, "-m", "drill.slowfs", str(backing), str(self.view), "--delay", f"{delay:g}",
                "--monitor-delay", f"{monitor_delay:g}"], env, self._log_dir, on_line=self._slow_efs_line)
            deadline = time.monotonic() + timeout
            while not self._slow_efs_mounted():
                if time.monotonic() > deadline or not self.slow_efs.alive():
                    self.stop_slow_efs()
                    raise RuntimeError(f"the slow EFS of {self.name} did not mount (see slowfs-{self.name}.log)")
                time.sleep(0.1)

    def _slow_efs_line(self, line: str) -> None:
        if line.startswith("{"):
            record = json.loads(line)
            self._on_event(self.name, time.time(), f"slow EFS: {record['monitor']} monitor-file writes and "
                                                   f"{record['other']} other writes were delayed")

    def _slow_efs_mounted(self) -> bool:
        return mount_fstype(self.view) == "fuse.slowfs"

    def stop_slow_efs(self) -> None:
        """Stop the FUSE daemon first: it unmounts its own mount (the top one). An umount of the path by us before
        that would make the daemon's own unmount remove the node's bind mount below it."""
        with self._lock:
            if self.slow_efs is None:
                return
            self.slow_efs.stop(timeout=5)
            self.slow_efs = None
            if self._slow_efs_mounted():  # the daemon died without unmounting: remove the top mount only
                subprocess.run(["umount", "-l", str(self.view)], check=False, capture_output=True, timeout=15)
            if mount_fstype(self.view) is None and self._slow_backing is not None:
                mount("--bind", str(self._slow_backing), str(self.view))  # never leave the node without its EFS

    def crash_s3(self) -> None:
        for pid in self.s3_pids():
            kill_pid(pid)

    def set_s3_start(self, delay: float = 0.0, crash: bool = False) -> None:
        """How the next S3 server starts on this node (drill/s3_start.py): after `delay` s, or failing."""
        delay_file, crash_file = self.control_dir / S3_DELAY_FILE, self.control_dir / S3_CRASH_FILE
        if delay > 0:
            delay_file.write_text(f"{delay:g}\n")
        else:
            delay_file.unlink(missing_ok=True)
        if crash:
            crash_file.write_text("crash\n")
        else:
            crash_file.unlink(missing_ok=True)

    def s3_start_faulted(self) -> bool:
        return (self.control_dir / S3_CRASH_FILE).exists()

    def stop_s3(self) -> None:
        """What the SSM fence command does: `systemctl kill --signal=SIGKILL minio.service`."""
        for pid in self.s3_pids():
            kill_pid(pid)

    def set_links(self, up: bool) -> None:
        self._topology.set_node_links(self.name, up)
        self.links_up = up

    def stop(self) -> None:
        self.thaw()
        with self._lock:
            self.powered = False  # no boot after a reset from here on
        if self.agent is not None:
            self.agent.stop(timeout=8)
        for pid in self.s3_pids():
            kill_pid(pid)
        if self.sampler is not None:
            self.sampler.stop(timeout=3)
        with contextlib.suppress(Exception):
            self.stop_slow_efs()
        if self.watchdog is not None:
            self.watchdog.stop(timeout=3)


def mount_fstype(path: Path) -> str | None:
    """The file system type of the top-most mount at `path` (None if `path` is no mount point)."""
    target = os.path.realpath(path)
    fstype = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            if fields[4].encode().decode("unicode_escape") == target:
                fstype = fields[separator + 1]
    return fstype


def stop_s3_async(node: Node) -> None:
    threading.Thread(target=node.stop_s3, name=f"ssm-{node.name}", daemon=True).start()
