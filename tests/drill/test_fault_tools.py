"""The drill's other fault injectors that need no namespace: EC2 throttling answers, a skewed node clock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from drill.config import FAKE_AWS_ENV, REGION
from drill.nodes import CLOCKSKEW_DIR
from drill.proxy import KillSwitchProxy, ec2_action

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_throttled_describe_reads_as_ec2_request_limit_exceeded(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    proxy = KillSwitchProxy(0, 1)  # upstream never reached: only throttled actions are asked
    proxy.start()
    try:
        proxy.throttle()
        ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{proxy.port}", region_name=REGION,
                           config=Config(retries={"max_attempts": 1, "mode": "standard"}))
        with pytest.raises(ClientError) as caught:
            ec2.describe_instances()
        assert caught.value.response["Error"]["Code"] == "RequestLimitExceeded"
        with pytest.raises(ClientError):
            ec2.describe_route_tables()
        assert set(proxy.throttled_calls) == {"DescribeInstances", "DescribeRouteTables"}
    finally:
        proxy.stop()


def test_ec2_action_is_read_from_the_query_body() -> None:
    assert ec2_action(b"Action=DescribeInstances&Version=2016-11-15") == "DescribeInstances"
    assert ec2_action(b'{"TableName": "t"}') is None


@pytest.mark.parametrize("offset", [-5.0, 5.0])
def test_the_clock_skew_shifts_only_the_wall_clock(offset: float) -> None:
    code = ("import time; w=time.time(); m=time.monotonic(); "
            "print(w - time.clock_gettime(time.CLOCK_MONOTONIC) - (m - time.monotonic()), "
            "time.time_ns() // 10**9, time.clock_gettime(time.CLOCK_REALTIME))")
    env = {**os.environ, "PYTHONPATH": f"{CLOCKSKEW_DIR}{os.pathsep}{REPO_ROOT}",
           "DRILL_CLOCK_OFFSET_SECONDS": str(offset)}
    import time

    before = time.time()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    after = time.time()
    _, seconds, realtime = (float(x) for x in result.stdout.split())
    assert before + offset - 1 <= seconds <= after + offset + 1
    assert before + offset - 1 <= realtime <= after + offset + 1


def test_every_scenario_is_documented_in_the_drill_readme() -> None:
    from drill.scenarios import SCENARIOS

    readme = (REPO_ROOT / "drill" / "README.md").read_text()
    assert [name for name in SCENARIOS if f"| `{name}` |" not in readme] == []
