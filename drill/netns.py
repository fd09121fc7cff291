"""Network namespaces of one drill run: "aws" (moto, checker, orchestrator; holds the VPC bridge), one per node,
one for the client. Every name starts with the run's prefix, so cleanup only ever touches this run's objects."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from drill.config import AWS_ADDRESS, CLIENT_ADDRESS, NODE_NAMES, VIP, node_address

NS_PREFIX = "drill"
BRIDGE = "br0"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=15)


def in_ns(namespace: str, argv: list[str]) -> list[str]:
    # nsenter switches only the network namespace: the process keeps the orchestrator's mounts (EFS views).
    return ["nsenter", f"--net=/run/netns/{namespace}", "--", *argv]


def ns_pids(namespace: str) -> list[int]:
    result = ip("netns", "pids", namespace, check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_pid(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@dataclass(frozen=True)
class Topology:
    prefix: str
    # One namespace per node: as many as the drill's largest cluster (a scenario may ask for three nodes).
    node_names: tuple[str, ...] = NODE_NAMES

    @property
    def aws(self) -> str:
        return f"{self.prefix}-aws"

    @property
    def client(self) -> str:
        return f"{self.prefix}-cl"

    def node(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def host_port(self, name: str) -> str:
        """The bridge-side veth of a node (in the aws namespace)."""
        return f"v{name}"[:15]

    @property
    def namespaces(self) -> list[str]:
        return [self.aws, self.client, *(self.node(n) for n in self.node_names)]

    def create(self) -> None:
        for namespace in self.namespaces:
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", self.aws, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.aws, "addr", "add", f"{AWS_ADDRESS}/24", "dev", BRIDGE)
        ip("-n", self.aws, "link", "set", BRIDGE, "up")
        for index, name in enumerate(self.node_names):
            self._attach(self.node(name), self.host_port(name), node_address(index))
            # The VIP sits on both nodes' loopback (on AWS only the serving node holds it); the client's route
            # alone decides which node it reaches, as the VPC route tables do.
            ip("-n", self.node(name), "addr", "add", f"{VIP}/32", "dev", "lo")
        self._attach(self.client, "vcl", CLIENT_ADDRESS)

    def _attach(self, namespace: str, port: str, address: str) -> None:
        ip("-n", self.aws, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("-n", self.aws, "link", "set", port, "master", BRIDGE)
        ip("-n", self.aws, "link", "set", port, "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")

    def set_node_links(self, name: str, up: bool) -> None:
        state = "up" if up else "down"
        ip("-n", self.aws, "link", "set", self.host_port(name), state)
        ip("-n", self.node(name), "link", "set", "eth0", state)

    def route_vip(self, via: str | None) -> None:
        """Mirror of the client's VPC route table: VIP via a node's link address, or no route at all."""
        if via is None:
            ip("-n", self.client, "route", "del", f"{VIP}/32", check=False)
        else:
            ip("-n", self.client, "route", "replace", f"{VIP}/32", "via", via, "dev", "eth0")

    def client_routes(self) -> str:
        return ip("-n", self.client, "route", "show").stdout

    def destroy(self) -> None:
        """Kill every process left in the run's namespaces (all started by the drill), then delete them."""
        # Every namespace of this prefix, however many nodes the run had (a stale run's count is unknown).
        mine = [namespace for namespace in list_namespaces() if self._owns(namespace)]
        for namespace in mine:
            for pid in ns_pids(namespace):
                if pid != os.getpid():
                    kill_pid(pid)
        for namespace in mine:
            ip("netns", "del", namespace, check=False)

    def _owns(self, namespace: str) -> bool:
        """`<prefix>-<one word>`: drill-12-aws is drill-12's, never drill-1's (its suffix would be 2-aws)."""
        head, _, suffix = namespace.partition(f"{self.prefix}-")
        return head == "" and bool(suffix) and "-" not in suffix


def list_namespaces() -> list[str]:
    result = ip("netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def remove_stale() -> list[str]:
    """Namespaces of earlier drill runs whose process is gone (a run killed with SIGKILL cannot clean up)."""
    removed = []
    for namespace in list_namespaces():
        parts = namespace.split("-")
        if len(parts) >= 3 and parts[0] == NS_PREFIX and parts[1].isdigit() and not _alive(int(parts[1])):
            Topology(f"{parts[0]}-{parts[1]}").destroy()
            removed.append(namespace)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
