"""The node item contract: what node_agent/table.py writes, failover_lambda/model.py NodeReport reads.

Items are written with the real agent code into a moto table and parsed with the real checker code (StateStore),
so the two sides cannot drift (docs/failover-design.md, "Node item").
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover_lambda import model as checker_model
from failover_lambda.model import NodeReport
from failover_lambda.state_store import StateStore
from node_agent import decision as agent_decision
from node_agent.table import NodeItem, StateTable
from tests.agent.conftest import AWS_TEST_ENV, ENI, INSTANCE, PRIVATE_IP, TABLE, AgentWorld, create_table, make_client
from tests.support import mocked_aws


@pytest.fixture
def client() -> Iterator[Any]:
    with mocked_aws(AWS_TEST_ENV):
        ddb = make_client()
        create_table(ddb)
        yield ddb


def test_both_sides_know_the_same_stop_reasons_and_watchdog_states() -> None:
    assert set(agent_decision.STOP_REASONS) == set(checker_model.STOP_REASONS)
    assert set(agent_decision.WATCHDOG_STATES) == set(checker_model.WATCHDOG_STATES)
    assert checker_model.HOLD_STOP_REASON == agent_decision.STOP_MINIO_FAILED


def test_every_attribute_the_agent_writes_is_one_the_checker_reads() -> None:
    written = set(NodeItem(node="n", lease_seq=1, heartbeat_at=1.0, serving=True, seen_epoch=1, instance_id="i",
                           eni_id="eni", private_ip="10.0.0.1").to_item()) - {"pk"}
    read = {f.name for f in dataclasses.fields(NodeReport)} - {"name"}
    assert written == read


@pytest.mark.parametrize(("stop_reason", "watchdog"),
                         list(itertools.product(agent_decision.STOP_REASONS, agent_decision.WATCHDOG_STATES)))
def test_every_field_round_trips(client: Any, stop_reason: str, watchdog: str) -> None:
    written = NodeItem(node="node2", lease_seq=1234567, heartbeat_at=1_900_000_123.456, serving=stop_reason == "none",
                       seen_epoch=42, stop_reason=stop_reason, efs_ok=True, minio_ok=False, minio_restarting=2,
                       watchdog=watchdog, watchdog_timeout=2, instance_id=INSTANCE, eni_id=ENI,
                       private_ip=PRIVATE_IP, detail="standby (active: node1)", lease_seconds=1.5)
    StateTable(client, TABLE).write_node(written)
    store = StateStore(client, TABLE)
    report = store.read().nodes["node2"]
    assert report == store.read_node("node2")
    assert report == NodeReport(
        name="node2", lease_seq=1234567, heartbeat_at=1_900_000_123.456, serving=stop_reason == "none",
        seen_epoch=42, stop_reason=stop_reason, efs_ok=True, minio_ok=False, minio_restarting=2, watchdog=watchdog,
        watchdog_timeout=2.0, instance_id=INSTANCE, eni_id=ENI, private_ip=PRIVATE_IP,
        detail="standby (active: node1)", lease_seconds=1.5)
    # `ready` promises a reset only from a node that says it is not serving (checker rule, ddf4a2d)
    assert report.watchdog_enforces(2) is (watchdog == "armed" or (watchdog == "ready" and not report.serving))


def test_booleans_round_trip_both_ways(client: Any) -> None:
    table, store = StateTable(client, TABLE), StateStore(client, TABLE)
    for seq, (serving, efs_ok, minio_ok) in enumerate(itertools.product([True, False], repeat=3), start=1):
        table.write_node(NodeItem(node="node1", lease_seq=seq, heartbeat_at=1.0, serving=serving, seen_epoch=1,
                                  efs_ok=efs_ok, minio_ok=minio_ok))
        report = store.read_node("node1")
        assert report is not None
        assert (report.serving, report.efs_ok, report.minio_ok, report.lease_seq) == (serving, efs_ok, minio_ok, seq)


def test_watchdog_off_reports_no_timeout_the_checker_could_count_on(client: Any) -> None:
    StateTable(client, TABLE).write_node(NodeItem(node="node1", lease_seq=1, heartbeat_at=1.0, serving=False,
                                                  seen_epoch=1, watchdog="off", watchdog_timeout=0))
    report = StateStore(client, TABLE).read_node("node1")
    assert report is not None
    assert (report.watchdog, report.watchdog_timeout, report.watchdog_enforces(10)) == ("off", None, False)


def test_minio_restarting_defaults_to_none_and_an_item_without_it_reads_as_not_restarting(client: Any) -> None:
    table, store = StateTable(client, TABLE), StateStore(client, TABLE)
    table.write_node(NodeItem(node="node1", lease_seq=1, heartbeat_at=1.0, serving=True, seen_epoch=1))
    report = store.read_node("node1")
    assert report is not None and report.minio_restarting == 0
    # An agent from before the field (or a malformed value): no restart in progress, every probe counts
    for value in (None, {"S": "3"}, {"N": "-1"}):
        item = NodeItem(node="node2", lease_seq=1, heartbeat_at=1.0, serving=True, seen_epoch=1).to_item()
        item.pop("minio_restarting")
        if value is not None:
            item["minio_restarting"] = value
        client.put_item(TableName=TABLE, Item=item)
        report = store.read_node("node2")
        assert report is not None and report.minio_restarting == 0


def test_a_missing_identity_parses_as_unknown(client: Any) -> None:
    StateTable(client, TABLE).write_node(NodeItem(node="node1", lease_seq=1, heartbeat_at=1.0, serving=False,
                                                  seen_epoch=0))
    report = StateStore(client, TABLE).read_node("node1")
    assert report is not None
    assert (report.instance_id, report.eni_id, report.private_ip) == (None, None, None)


def test_what_a_running_agent_writes_is_what_the_checker_reads(tmp_path: Path) -> None:
    with mocked_aws(AWS_TEST_ENV):
        world = AgentWorld(tmp_path)
        world.set_cluster("node1", epoch=7)
        store = StateStore(world.client, TABLE)
        seqs = []
        for _ in range(3):
            world.cycle()
            report = store.read().nodes["node1"]
            assert report.lease_seq is not None
            seqs.append(report.lease_seq)
        assert seqs == sorted(set(seqs))  # the checker sees the counter grow on every renewal
        assert (report.serving, report.seen_epoch, report.stop_reason, report.efs_ok, report.minio_ok) == (
            True, 7, "none", True, True)
        assert report.minio_restarting == 0
        # systemd restarts a crashed MinIO: the checker reads the restart in progress
        world.service.restart_count += 1
        world.minio_healthy = False
        world.cycle()
        world.cycle()
        report = store.read().nodes["node1"]
        assert (report.serving, report.minio_ok, report.minio_restarting) == (True, False, 1)
        world.minio_healthy = True
        world.cycle()
        world.cycle()
        assert (report.watchdog, report.instance_id, report.eni_id, report.private_ip) == (
            "off", INSTANCE, ENI, PRIVATE_IP)
        assert report.heartbeat_at == pytest.approx(world.clocks.wall - 0.5)
        # The node's own G, so the checker trusts an expired lease only within the node's own inequality
        assert report.lease_seconds == world.config.lease_seconds == 1.5
        # The role moves: the checker reads the agent's own stop report at the new epoch
        world.set_cluster("node2", epoch=8)
        world.cycle()
        world.cycle()
        report = store.read().nodes["node1"]
        assert (report.serving, report.seen_epoch, report.stop_reason) == (False, 8, "role_lost")
