"""Settings parsing, the MinIO HTTP probe, and the EMF metrics the stack's alarms read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from failover_lambda import handler as handler_module
from failover_lambda.health import http_probe
from failover_lambda.settings import Settings, SettingsError
from tests.failover.conftest import Harness

VALID = {
    "STATE_TABLE_NAME": "t", "CLUSTER_ID": "c", "NODE_NAMES": "node1, node2", "ROUTE_TABLE_IDS": "rtb-0a1,rtb-0b2",
    "VIP": "172.16.0.1",
}


def test_settings_defaults_match_the_design() -> None:
    settings = Settings.from_env(VALID)
    assert settings.node_names == ("node1", "node2")
    assert settings.route_table_ids == ("rtb-0a1", "rtb-0b2")
    assert settings.vip_cidr == "172.16.0.1/32"
    assert settings.topic_arn is None
    assert (settings.probe_interval_seconds, settings.failure_threshold, settings.heartbeat_stale_seconds,
            settings.lease_seconds, settings.fence_timeout_seconds) == (1.0, 3, 2.0, 1.5, 10.0)
    assert (settings.heartbeat_interval_seconds, settings.lease_deadline_seconds, settings.watchdog,
            settings.watchdog_timeout_seconds) == (0.5, 4.0, "required", 1.0)
    assert (settings.minio_port, settings.http_probe, settings.loop_safety_margin_seconds) == (9000, True, 54.0)
    assert (settings.max_probes, settings.fence_command_document, settings.minio_unit) == (
        None, "AWS-RunShellScript", "minio.service")


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"STATE_TABLE_NAME": ""}, "STATE_TABLE_NAME"),
    ({"CLUSTER_ID": " "}, "CLUSTER_ID"),
    ({"NODE_NAMES": "node1,,node2"}, "NODE_NAMES"),
    ({"NODE_NAMES": "node1,node1"}, "NODE_NAMES"),
    ({"ROUTE_TABLE_IDS": "rtb-0a1,subnet-1"}, "ROUTE_TABLE_IDS"),
    ({"VIP": "172.16.0.300"}, "VIP"),
    ({"FAILURE_THRESHOLD": "0"}, "FAILURE_THRESHOLD"),
    ({"PROBE_INTERVAL_SECONDS": "fast"}, "PROBE_INTERVAL_SECONDS"),
    ({"HTTP_PROBE": "maybe"}, "HTTP_PROBE"),
    ({"MAX_PROBES": "0"}, "MAX_PROBES"),
])
def test_a_bad_setting_is_named_in_one_clear_error(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^environment variable {variable} ") as caught:
        Settings.from_env({**VALID, **overrides})
    assert caught.value.variable == variable
    assert "\n" not in str(caught.value)


def test_the_handler_fails_loudly_on_a_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VALID:
        monkeypatch.delenv(name, raising=False)
    handler_module.use_runtime(None)
    with pytest.raises(SettingsError, match="STATE_TABLE_NAME"):
        handler_module.handler({"action": "status"}, None)


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/minio/health/live" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_probe_passes_on_200_and_fails_on_503_or_no_listener(health_server: ThreadingHTTPServer) -> None:
    port = health_server.server_address[1]
    assert http_probe("127.0.0.1", port) is True
    _Health.status = 503
    try:
        assert http_probe("127.0.0.1", port) is False
    finally:
        _Health.status = 200
    health_server.shutdown()
    health_server.server_close()
    assert http_probe("127.0.0.1", port, timeout=0.5) is False


def test_metrics_are_emitted_as_emf_with_the_cluster_dimension(cluster: Harness,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cluster.agent("node1").efs_ok = False
    capsys.readouterr()
    cluster.invoke(max_probes=4)
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                 if line.startswith("{") and '"_aws"' in line]
    names = {m["Name"] for d in documents for block in d["_aws"]["CloudWatchMetrics"] for m in block["Metrics"]}
    assert {"Failovers", "DetectionSeconds", "SwitchSeconds"} <= names
    for document in documents:
        block = document["_aws"]["CloudWatchMetrics"][0]
        # Per-node health gauges add the node; every other metric has the cluster as its only dimension.
        expected = [["ClusterId", "Node"]] if block["Metrics"][0]["Name"] == "NodeHealthy" else [["ClusterId"]]
        assert (block["Namespace"], block["Dimensions"]) == ("EfsHaCluster", expected)
        assert document["ClusterId"] == cluster.cluster_id


def test_metric_dimensions_ignore_the_powertools_service_name() -> None:
    # The stack sets POWERTOOLS_SERVICE_NAME for the logs; a "service" dimension would hide every metric
    # from alarms that select on ClusterId alone. Checked in a fresh interpreter: the env is read at import.
    script = ("from failover_lambda.telemetry import Telemetry, metrics\n"
              "Telemetry(None, None, 'c1').count('Failovers')\n"
              "import json; print(json.dumps(metrics.serialize_metric_set()))")
    env = {**os.environ, "POWERTOOLS_SERVICE_NAME": "efs-ha-checker", "POWERTOOLS_METRICS_NAMESPACE": "Ns"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    block = json.loads(out)["_aws"]["CloudWatchMetrics"][0]
    assert (block["Namespace"], block["Dimensions"]) == ("Ns", [["ClusterId"]])


def test_node_health_dimensions_match_the_alarms_even_with_a_service_name() -> None:
    # The NodeUnhealthy alarms select on exactly {ClusterId, Node}; any extra dimension leaves them without data.
    script = "from failover_lambda.telemetry import Telemetry\nTelemetry(None, None, 'c1').node_health('node2', False)"
    env = {**os.environ, "POWERTOOLS_SERVICE_NAME": "efs-ha-checker", "POWERTOOLS_METRICS_NAMESPACE": "Ns"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    record = json.loads(out.splitlines()[-1])
    block = record["_aws"]["CloudWatchMetrics"][0]
    assert (block["Namespace"], block["Dimensions"]) == ("Ns", [["ClusterId", "Node"]])
    assert record["Node"] == "node2" and record["NodeHealthy"] in (0.0, [0.0])
