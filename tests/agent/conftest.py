"""Fixtures for the node agent: a moto state table, a fake MinIO service and hand-driven clocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest

from node_agent.agent import Agent
from node_agent.config import AgentConfig
from node_agent.efs_probe import EfsProbe
from node_agent.table import CLIENT_CONFIG, StateTable
from tests.support import mocked_aws

REGION = "eu-west-1"
TABLE = "efs-ha-agent-test"
INSTANCE = "i-0123456789abcdef0"
_LOADER = botocore.loaders.create_loader()
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}


@dataclass
class FakeService:
    """Records start/stop; `fail_stop` models a stop that raises (the service then still runs)."""

    running: bool = False
    fail_stop: bool = False
    actions: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.actions.append("start")
        self.running = True

    def stop(self) -> None:
        self.actions.append("stop")
        if self.fail_stop:
            raise RuntimeError("systemctl stop timed out")
        self.running = False

    def is_running(self) -> bool:
        return self.running


@dataclass
class Clocks:
    wall: float = 1_900_000_000.0
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class AgentWorld:
    """One node's agent against a moto table; tests set the cluster item and drive ticks by hand."""

    def __init__(self, tmp_path: Path, node: str = "node1") -> None:
        core = botocore.session.get_session()
        core.register_component("data_loader", _LOADER)
        self.client = boto3.Session(botocore_session=core, region_name=REGION).client("dynamodb",
                                                                                      config=CLIENT_CONFIG)
        self.client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                 BillingMode="PAY_PER_REQUEST")
        self.mount = tmp_path / "efs"
        self.mount.mkdir()
        self.config = AgentConfig(state_table_name=TABLE, node_name=node, mount_point=str(self.mount),
                                  region=REGION, efs_require_mount=False)
        self.clocks = Clocks()
        self.service = FakeService()
        self.minio_healthy = True
        self.notifications: list[str] = []
        self.table = StateTable(self.client, TABLE)
        self.agent = Agent(self.config, table=self.table, service=self.service,
                           efs=EfsProbe(str(self.mount), node, 2.0, require_mount=False),
                           instance_id=INSTANCE, minio_check=lambda: self.minio_healthy,
                           wall_clock=lambda: self.clocks.wall, monotonic=lambda: self.clocks.mono,
                           notifier=self._notify)

    def _notify(self, message: str) -> bool:
        self.notifications.append(message)
        return True

    def set_cluster(self, active: str | None, epoch: int, phase: str = "stable",
                    active_instance: str | None = None) -> None:
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

    def tick(self, seconds: float = 1.0) -> str:
        decision = self.agent.tick()
        self.clocks.advance(seconds)
        return decision.action.value


@pytest.fixture
def aws_env() -> Iterator[None]:
    with mocked_aws(AWS_TEST_ENV):
        yield


@pytest.fixture
def world(aws_env: None, tmp_path: Path) -> AgentWorld:
    return AgentWorld(tmp_path)
