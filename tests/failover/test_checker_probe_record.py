"""The checker records a cheap "last probe" time (`checker.last_probe_at`, its own wall clock) so operators can
tell a probing checker from a silent one (`efs-ha status`); rewritten only every PROBE_RECORD_SECONDS."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from failover_lambda.checker import PROBE_RECORD_SECONDS
from tests.failover.conftest import Harness


def checker_puts(cluster: Harness) -> list[dict[str, Any]]:
    """Every write of the checker item, as the attributes it writes: a whole item (PutItem) or some attributes
    (UpdateItem SET #f0 = :v0, ...)."""
    writes = []
    for operation, params in cluster.calls:
        if operation == "PutItem" and params["Item"]["pk"]["S"] == "checker":
            writes.append(params["Item"])
        elif operation == "UpdateItem" and params["Key"]["pk"]["S"] == "checker":
            values = params["ExpressionAttributeValues"]
            writes.append({name: values[f":v{alias[2:]}"]
                           for alias, name in params["ExpressionAttributeNames"].items()})
    return writes


def test_every_probe_loop_records_its_probe_time_on_the_checkers_clock(cluster: Harness) -> None:
    cluster.calls.clear()
    started = cluster.clock.now()
    result = cluster.invoke(max_probes=12)
    finished = cluster.clock.now()
    assert set(result["outcomes"]) == {"ok"}
    recorded = float(cluster.item("checker")["last_probe_at"])
    # The checker's own clock (not a node's), at one of this run's cycles, less than one record period old
    assert started <= recorded <= finished
    assert finished - recorded <= PROBE_RECORD_SECONDS + 1
    # Few writes: one per record period, plus the end-of-run record, not one per cycle
    assert 2 <= len(checker_puts(cluster)) <= 12 / PROBE_RECORD_SECONDS + 2


def test_a_recent_record_is_not_rewritten_by_the_next_run(cluster: Harness) -> None:
    cluster.invoke(max_probes=1)
    first = float(cluster.item("checker")["last_probe_at"])
    cluster.calls.clear()
    cluster.invoke(max_probes=1)  # about one probe interval later
    assert float(cluster.item("checker")["last_probe_at"]) == first
    assert all("last_probe_at" not in p or float(p["last_probe_at"]["N"]) == first for p in checker_puts(cluster))


def test_saving_the_failure_counters_keeps_the_probe_time(cluster: Harness) -> None:
    cluster.invoke(max_probes=1)
    recorded = float(cluster.item("checker")["last_probe_at"])
    cluster.agent("node1").efs_ok = False
    cluster.settle(1)
    result = cluster.invoke(max_probes=1)  # a failed probe: the counters are written
    assert result["outcomes"][0].startswith("node1 failing 1/3")
    item = cluster.item("checker")
    assert item["failures"] == {"node1": 1}
    assert float(item["last_probe_at"]) >= recorded


def test_a_checker_that_cannot_read_the_table_records_nothing(cluster: Harness) -> None:
    def unreadable(_: dict[str, Any]) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "no"}}, "Scan")

    cluster.call_hooks["Scan"] = unreadable
    cluster.calls.clear()
    result = cluster.invoke(max_probes=8)
    assert result["outcomes"] == ["unknown"] * 8
    assert checker_puts(cluster) == []
    assert "last_probe_at" not in cluster.item("checker")
