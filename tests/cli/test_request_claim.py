"""A queued request the checker has claimed (SET taken_at) can no longer be withdrawn by the CLI: it says so
and waits for the result instead of pretending the request is gone."""

from __future__ import annotations

from tests.cli.conftest import TABLE, FakeCluster


def test_a_request_the_checker_already_took_is_not_withdrawn_on_timeout(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"
    claimed: list[bool] = []

    def checker_claims_it_but_is_slow() -> None:
        request = cluster.item("request")
        if request and "taken_at" not in request:
            cluster.ddb.update_item(TableName=TABLE, Key={"pk": {"S": "request"}},
                                    UpdateExpression="SET taken_at = :now",
                                    ExpressionAttributeValues={":now": {"N": str(cluster.clock.now())}})
            claimed.append(True)

    cluster.clock.on_sleep.append(checker_claims_it_but_is_slow)
    # Polls every 10 s instead of every second: the 120 s wait for a taken request's result, then, is 12
    # status reads (each a full scan and describe round) instead of 120.
    result = cluster.cli("switchover", "--to", "node2", "--timeout", "3", hooks=cluster.hooks(poll_seconds=10.0))
    assert claimed
    assert result.exit_code == 5  # timed out
    assert "already taken by the checker; waiting for its result" in result.stderr
    assert "was taken by the checker" in result.stderr and "withdrawn" not in result.stderr
    assert cluster.item("request")["taken_at"]  # still the checker's


def test_a_request_nobody_took_is_withdrawn_on_timeout(cluster: FakeCluster) -> None:
    cluster.lambda_client.mode = "throttled"
    result = cluster.cli("switchover", "--to", "node2", "--timeout", "3")
    assert result.exit_code == 5  # timed out
    assert "withdrawn (is the checker running?)" in result.stderr
    assert cluster.item("request") == {}


def test_a_pending_request_is_never_replaced_whatever_its_requested_at(cluster: FakeCluster) -> None:
    """requested_at is another operator's clock: an hour-old one is still their pending request."""
    cluster.lambda_client.mode = "throttled"
    cluster.put({"pk": "request", "action": "switchover", "target": "node2",
                 "requested_at": cluster.clock.now() - 3600, "request_id": "theirs"})
    result = cluster.cli("switchover", "--to", "node2")
    assert result.exit_code == 4  # refused
    assert "another request is already queued" in result.stderr
    assert cluster.item("request")["request_id"] == "theirs"
