"""The two nodes: an agent process, its S3 server (started by the agent) and a sampler, in the node's namespace;
each node sees the shared "EFS" (one tmpfs) through its own bind mount, so one node's view can fail alone."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drill.config import AWS_ADDRESS, MOTO_PORT, NODE_NAMES, TABLE_NAME, Fleet, Timings, base_env
from drill.netns import Topology, cmdline, in_ns, kill_pid, ns_pids
from drill.procs import Child

S3_MARKERS = ("locals3server", "minio server")
MINIO_USER, MINIO_PASSWORD = "drill", "drill-secret"


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

    def __init__(self, work: Path) -> None:
        self.root = work / "efs"
        self.views = {node: work / node / "efs" for node in NODE_NAMES}
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
                 on_sample: Callable[[str, float, bool], None]) -> None:
        self.name = name
        self.namespace = topology.node(name)
        self._topology = topology
        self._log_dir = log_dir
        self._on_sample = on_sample
        self.links_up = True
        self.agent: Child | None = None
        self.sampler: Child | None = None
        self._starts = 0
        argv, health = s3_server_argv(str(view / "data"))
        self._env = {
            **base_env(),
            "AWS_ENDPOINT_URL": f"http://{AWS_ADDRESS}:{MOTO_PORT}",
            "STATE_TABLE_NAME": TABLE_NAME, "NODE_NAME": name, "MOUNT_POINT": str(view),
            "INSTANCE_ID": fleet.instance_ids[name],
            "HEARTBEAT_INTERVAL_SECONDS": str(timings.heartbeat_interval_seconds),
            "LEASE_SECONDS": str(timings.lease_seconds), "MINIO_HEALTH_URL": health,
            "MINIO_ROOT_USER": MINIO_USER, "MINIO_ROOT_PASSWORD": MINIO_PASSWORD,
            # The agent runs the S3 server as its own child process instead of a systemd unit.
            "MINIO_COMMAND": json.dumps(argv), "MINIO_LOG": str(log_dir / f"s3-{name}.log"),
        }

    def start_sampler(self) -> None:
        self.sampler = Child(f"sampler-{self.name}", in_ns(self.namespace, [
            sys.executable, "-m", "drill.sampler", self.name]), self._env, self._log_dir, on_line=self._sample)

    def _sample(self, line: str) -> None:
        stamp, up = line.split()
        self._on_sample(self.name, float(stamp), up == "1")

    def start_agent(self) -> None:
        """Boot the node's agent (again): what systemd does when the instance starts."""
        if self.agent is not None and self.agent.alive():
            return
        if self.agent is not None:
            self.agent.stop()
        self._starts += 1
        self.agent = Child(f"agent-{self.name}-{self._starts}",
                           in_ns(self.namespace, [sys.executable, "-m", "node_agent"]), self._env, self._log_dir)

    def s3_pids(self) -> list[int]:
        return [pid for pid in ns_pids(self.namespace) if any(m in cmdline(pid) for m in S3_MARKERS)]

    def kill(self) -> None:
        """kill -9 of the whole node: agent and S3 server (the sampler is the observer, not the node)."""
        if self.agent is not None:
            kill_pid(self.agent.pid)
        for pid in self.s3_pids():
            kill_pid(pid)
        if self.agent is not None:
            self.agent.stop(timeout=5)

    def crash_s3(self) -> None:
        for pid in self.s3_pids():
            kill_pid(pid)

    def stop_s3(self, timeout: float = 10.0) -> None:
        """`systemctl stop minio.service` as the SSM command asks: TERM, then KILL after a timeout."""
        pids = self.s3_pids()
        for pid in pids:
            kill_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.s3_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.s3_pids():
            kill_pid(pid)

    def set_links(self, up: bool) -> None:
        self._topology.set_node_links(self.name, up)
        self.links_up = up

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop(timeout=8)
        for pid in self.s3_pids():
            kill_pid(pid)
        if self.sampler is not None:
            self.sampler.stop(timeout=3)


def stop_s3_async(node: Node) -> None:
    threading.Thread(target=node.stop_s3, name=f"ssm-{node.name}", daemon=True).start()
