"""One node: the REAL node agent (node_agent.agent.Agent and its decide/EFS probe/lease guard/table code),
wired with node_agent's ProcessController instead of systemd, because `python -m node_agent` can only drive a
systemd unit. `python -m drill.node_main`, configured by the agent's own environment variables plus
DRILL_S3_COMMAND (JSON argv of the S3 server) and DRILL_S3_LOG."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from types import FrameType

from node_agent.agent import Agent, minio_health
from node_agent.config import AgentConfig
from node_agent.efs_probe import EfsProbe
from node_agent.service import ProcessController
from node_agent.table import StateTable, dynamodb_client


def build(config: AgentConfig) -> Agent:
    if not config.instance_id:
        raise SystemExit("the drill sets INSTANCE_ID: there is no IMDS to ask")
    service = ProcessController(json.loads(os.environ["DRILL_S3_COMMAND"]), log_path=os.environ.get("DRILL_S3_LOG"))
    return Agent(
        config,
        table=StateTable(dynamodb_client(config.region), config.state_table_name),
        service=service,
        efs=EfsProbe(config.mount_point, config.node_name, config.efs_timeout_seconds,
                     require_mount=config.efs_require_mount),
        instance_id=config.instance_id,
        minio_check=lambda: minio_health(config.minio_health_url),
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = build(AgentConfig.from_env())

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        agent.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
