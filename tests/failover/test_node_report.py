"""The checker's parsing of the node item (the contract with node_agent/table.py): missing means unsafe."""

from __future__ import annotations

from decimal import Decimal

import pytest

from failover_lambda.model import NodeReport


def test_a_full_node_item_parses_every_contract_field() -> None:
    report = NodeReport.from_item("node1", {
        "pk": "node#node1", "lease_seq": Decimal(42), "heartbeat_at": Decimal("1900000000.5"), "serving": False,
        "seen_epoch": Decimal(7), "stop_reason": "lease_lost", "efs_ok": True, "minio_ok": False,
        "watchdog": "armed", "watchdog_timeout": Decimal(2), "instance_id": "i-1", "eni_id": "eni-1",
        "private_ip": "10.0.110.5", "detail": "stopped"})
    assert (report.lease_seq, report.heartbeat_at, report.serving, report.seen_epoch) == (42, 1900000000.5, False, 7)
    assert (report.stop_reason, report.efs_ok, report.minio_ok) == ("lease_lost", True, False)
    assert (report.watchdog, report.watchdog_timeout) == ("armed", 2.0)
    assert (report.instance_id, report.eni_id, report.private_ip, report.detail) == (
        "i-1", "eni-1", "10.0.110.5", "stopped")
    assert report.watchdog_enforces(2) and not report.watchdog_enforces(1.5)


def test_missing_fields_parse_conservatively() -> None:
    report = NodeReport.from_item("node1", {"pk": "node#node1"})
    assert report.lease_seq is None  # no renewal can be observed
    assert report.serving is True  # may be serving
    assert report.watchdog == "unknown" and not report.watchdog_enforces(100)
    assert report.efs_ok is False and report.minio_ok is False
    assert report.stop_reason == "unknown"  # not minio_failed: no hold
    assert (report.instance_id, report.eni_id, report.private_ip) == (None, None, None)


def test_unknown_or_malformed_values_are_not_trusted() -> None:
    report = NodeReport.from_item("node1", {"lease_seq": "7", "watchdog": "armed-ish", "watchdog_timeout": True,
                                            "stop_reason": "whatever", "serving": "false"})
    assert report.lease_seq is None
    assert report.watchdog == "unknown"
    assert report.watchdog_timeout is None
    assert report.stop_reason == "unknown"
    assert report.serving is True
    armed_without_timeout = NodeReport.from_item("node1", {"watchdog": "armed"})
    assert not armed_without_timeout.watchdog_enforces(2)


def test_ready_counts_only_for_a_node_that_reports_it_is_not_serving() -> None:
    # A restarted agent disarms the device (open + magic close) before it knows whether MinIO is gone: a
    # report of serving=true with watchdog `ready` promises no reset. `armed` always does; `ready` only when
    # the same report says serving=false (such a node arms before it can start MinIO).
    def report(serving: bool, watchdog: str) -> NodeReport:
        return NodeReport.from_item("node1", {"serving": serving, "watchdog": watchdog,
                                              "watchdog_timeout": Decimal(1)})

    assert report(serving=True, watchdog="armed").watchdog_enforces(1)
    assert report(serving=False, watchdog="armed").watchdog_enforces(1)
    assert report(serving=False, watchdog="ready").watchdog_enforces(1)
    assert not report(serving=True, watchdog="ready").watchdog_enforces(1)
    assert not NodeReport.from_item("node1", {"watchdog": "ready", "watchdog_timeout": Decimal(1)}).watchdog_enforces(1)


def test_lease_seconds_is_parsed_and_a_missing_one_is_unknown() -> None:
    assert NodeReport.from_item("node1", {"lease_seconds": Decimal("1.5")}).lease_seconds == 1.5
    for item in ({}, {"lease_seconds": "1.5"}, {"lease_seconds": True}, {"lease_seconds": Decimal(0)}):
        assert NodeReport.from_item("node1", item).lease_seconds is None


@pytest.mark.parametrize(("lease", "watchdog_timeout", "fences"), [
    (Decimal("1.5"), Decimal(1), True),  # 1.5 + 2 + 0.5 = 4 <= D
    (Decimal(3), Decimal(1), False),  # an older config: 3 + 2 + 0.5 > D
    (None, Decimal(1), False),  # not reported: unknown, not trusted
    (Decimal(1), Decimal(2), False),  # W beyond the checker's
])
def test_lease_expiry_fences_only_within_the_nodes_own_inequality(lease: Decimal | None,
                                                                   watchdog_timeout: Decimal,
                                                                   fences: bool) -> None:
    item = {"serving": True, "watchdog": "armed", "watchdog_timeout": watchdog_timeout}
    if lease is not None:
        item["lease_seconds"] = lease
    report = NodeReport.from_item("node1", item)
    assert report.lease_expiry_fences(max_watchdog_timeout=1.0, deadline=4.0) is fences
