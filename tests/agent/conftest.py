"""Fixtures for the node agent: a moto state table, a fake MinIO service, hand-driven clocks, a simulated watchdog.

The simulated watchdog device is a FIFO with a reader thread (never /dev/watchdog: opening it on the test
machine could reset it). The agent's Watchdog class opens it exactly like a device; the ioctls are skipped
because it is not a character device.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import EndpointConnectionError

from node_agent.agent import Agent
from node_agent.config import AgentConfig
from node_agent.efs_probe import EfsProbe
from node_agent.table import CLIENT_CONFIG, StateTable
from node_agent.watchdog import Watchdog
from tests.support import mocked_aws

REGION = "eu-west-1"
TABLE = "efs-ha-agent-test"
INSTANCE = "i-0123456789abcdef0"
ENI = "eni-0123456789abcdef0"
PRIVATE_IP = "10.0.110.10"
_LOADER = botocore.loaders.create_loader()
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}


@dataclass
class FakeService:
    """Records start/stop/kill; `fail_stop` models a stop that raises (the service then still runs).

    `events` is shared with the watchdog spy, so tests can check the order of arm/start/stop/disarm.
    """

    running: bool = False
    fail_stop: bool = False
    actions: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    stop_gate: threading.Event | None = None  # a slow stop: waits for this event
    restart_count: int = 0  # systemd's NRestarts: automatic restarts since the last explicit start

    def start(self) -> None:
        self.actions.append("start")
        self.events.append("start")
        self.running = True

    def stop(self) -> None:
        self.actions.append("stop")
        if self.stop_gate is not None:
            self.stop_gate.wait(10)
        if self.fail_stop:
            raise RuntimeError("systemctl stop timed out")
        self.running = False
        self.events.append("stopped")

    def kill(self) -> None:
        self.actions.append("kill")
        if self.fail_stop:
            raise RuntimeError("systemctl kill failed")
        self.running = False
        self.events.append("killed")

    def is_running(self) -> bool:
        return self.running

    def restarts(self) -> int:
        return self.restart_count


class SpyWatchdog(Watchdog):
    """The real Watchdog, recording arm/disarm into the service's event list."""

    def __init__(self, path: str, timeout_seconds: int, events: list[str], *, required: bool = True) -> None:
        super().__init__(path, timeout_seconds, required=required)
        self.events = events

    def arm(self) -> bool:
        armed = super().arm()
        self.events.append("armed" if armed else "arm-failed")
        return armed

    def disarm(self) -> None:
        was_armed = self.armed
        super().disarm()
        if was_armed:
            self.events.append("disarmed")


class FifoWatchdogDevice:
    """A simulated watchdog device: a FIFO whose reader records every byte written to it, with its time.

    `fired()` is what a real watchdog would do: True once the device was armed (a byte other than the magic 'V'
    was the last one) and nothing arrived for `timeout` seconds.
    """

    def __init__(self, directory: Path, timeout: float = 1.0) -> None:
        self.path = directory / "watchdog"
        os.mkfifo(self.path)
        self.timeout = timeout
        self.received: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fired = False
        self._reader: threading.Thread | None = None

    def start(self) -> FifoWatchdogDevice:
        read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        keep_open = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)  # so the reader never sees EOF
        self._reader = threading.Thread(target=self._read, args=(read_fd, keep_open), daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(2)

    def _read(self, read_fd: int, keep_open: int) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([read_fd], [], [], 0.02)
                now = time.monotonic()
                if ready:
                    data = os.read(read_fd, 4096)
                    with self._lock:
                        self.received.extend((now, bytes([b])) for b in data)
                with self._lock:
                    if self.received and self.received[-1][1] != b"V" and now - self.received[-1][0] > self.timeout:
                        self._fired = True
        finally:
            os.close(read_fd)
            os.close(keep_open)

    def data(self) -> bytes:
        with self._lock:
            return b"".join(byte for _, byte in self.received)

    def fired(self) -> bool:
        with self._lock:
            return self._fired


@dataclass
class Clocks:
    wall: float = 1_900_000_000.0
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def make_client() -> Any:
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=core, region_name=REGION).client("dynamodb", config=CLIENT_CONFIG)


def create_table(client: Any) -> None:
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")


def fail_calls(client: Any, operation: str, times: int | None = None) -> Callable[[], None]:
    """Make `operation` fail like an unreachable endpoint (`times` times, or until the returned undo is called)."""
    remaining = [times]

    def raise_error(**_: Any) -> None:
        if remaining[0] is not None:
            if remaining[0] <= 0:
                return
            remaining[0] -= 1
        raise EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com")

    event = f"before-call.dynamodb.{operation}"
    client.meta.events.register(event, raise_error)
    return lambda: client.meta.events.unregister(event, raise_error)


class AgentWorld:
    """One node's agent against a moto table; tests set the cluster item and drive the threads' steps by hand.

    `cycle()` runs one step of every thread in a fixed order and then advances the fake clocks by P.
    The agent is prepared as run() does (MinIO confirmed stopped, watchdog tested) unless `prepare=False`.
    """

    def __init__(self, tmp_path: Path, node: str = "node1", *, watchdog: str = "off",
                 watchdog_path: Path | None = None, real_clock: bool = False, prepare: bool = True,
                 notifier: Callable[[str], bool] | None = None, **overrides: Any) -> None:
        self.client = make_client()
        create_table(self.client)
        self.mount = tmp_path / "efs"
        self.mount.mkdir()
        settings: dict[str, Any] = {"heartbeat_interval_seconds": 0.5, "lease_seconds": 1.5,
                                    "efs_require_mount": False, "watchdog": watchdog,
                                    "watchdog_device": str(watchdog_path or tmp_path / "no-watchdog"),
                                    "watchdog_timeout_seconds": 1,
                                    "reset_intent_path": str(tmp_path / "run" / "reset-pending"), **overrides}
        self.config = AgentConfig(state_table_name=TABLE, node_name=node, mount_point=str(self.mount),
                                  region=REGION, **settings)
        self.clocks = Clocks()
        self.service = FakeService()
        self.minio_healthy = True
        self.notifications: list[str] = []
        self.table = StateTable(self.client, TABLE)
        self.watchdog = SpyWatchdog(self.config.watchdog_device, self.config.watchdog_timeout_seconds,
                                    self.service.events, required=self.config.watchdog_required)
        self.efs = EfsProbe(str(self.mount), node, self.config.efs_timeout_seconds, require_mount=False)
        self._clock_args: dict[str, Any] = {} if real_clock else {
            "wall_clock": lambda: self.clocks.wall, "monotonic": lambda: self.clocks.mono}
        self._notifier = notifier or self._notify
        self.launched_at = self.clocks.wall - 3600.0  # launched an hour ago (its agent restarts and reboots keep it)
        self.agent = self._agent(self.watchdog)
        if prepare:
            self.agent.prepare()  # what run() does first: MinIO confirmed stopped, the watchdog tested

    def _agent(self, watchdog: SpyWatchdog) -> Agent:
        return Agent(self.config, table=self.table, service=self.service, efs=self.efs,
                     instance_id=INSTANCE, eni_id=ENI, private_ip=PRIVATE_IP,
                     minio_check=lambda: self.minio_healthy, watchdog=watchdog, notifier=self._notifier,
                     launched_at=self.launched_at, **self._clock_args)

    def new_agent(self) -> Agent:
        """The agent restarted by systemd: same node, settings, MinIO unit and device; no memory of the last run."""
        return self._agent(SpyWatchdog(self.config.watchdog_device, self.config.watchdog_timeout_seconds,
                                       self.service.events, required=self.config.watchdog_required))

    def _notify(self, message: str) -> bool:
        self.notifications.append(message)
        return True

    def set_cluster(self, active: str | None, epoch: int, phase: str = "stable",
                    active_instance: str | None = None, *, unbound: bool = False) -> None:
        """The cluster item. The role of this world's node is bound to its instance unless another instance is
        named or `unbound` (an item without `active_instance`: the agent then never starts MinIO)."""
        if active == self.config.node_name and active_instance is None and not unbound:
            active_instance = INSTANCE
        item: dict[str, Any] = {"pk": {"S": "cluster"}, "epoch": {"N": str(epoch)}, "phase": {"S": phase}}
        if active:
            item["active"] = {"S": active}
        if active_instance:
            item["active_instance"] = {"S": active_instance}
        self.client.put_item(TableName=TABLE, Item=item)

    def heartbeat(self) -> dict[str, Any]:
        item = self.client.get_item(TableName=TABLE, Key={"pk": {"S": f"node#{self.config.node_name}"}},
                                    ConsistentRead=True)["Item"]
        return {k: next(iter(v.values())) for k, v in item.items()}

    def cycle(self, seconds: float = 0.5) -> str:
        """One step of each thread: EFS probe, health, lease renewal, reconcile, guard; then time moves on."""
        self.agent.probe_efs_once()
        self.agent.check_health_once()
        self.agent.renew_once()
        decision = self.agent.reconcile_once()
        self.agent.guard_once()
        self.clocks.advance(seconds)
        return decision.action.value

    def fail(self, operation: str, times: int | None = None) -> Callable[[], None]:
        return fail_calls(self.client, operation, times)


@pytest.fixture
def aws_env() -> Iterator[None]:
    with mocked_aws(AWS_TEST_ENV):
        yield


@pytest.fixture
def world(aws_env: None, tmp_path: Path) -> AgentWorld:
    return AgentWorld(tmp_path)


@pytest.fixture
def watchdog_device(tmp_path: Path) -> Iterator[FifoWatchdogDevice]:
    device = FifoWatchdogDevice(tmp_path, timeout=1.0).start()
    yield device
    device.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `condition` (behaviour, not timing: the timeout only bounds a failing test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
