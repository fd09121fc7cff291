"""One warm Lambda sandbox: reads invocations (JSON lines) on stdin, runs the REAL handler, answers on stdout.

`python -m drill.lambda_host`. Configured only by the environment the function has in the stack, plus
AWS_ENDPOINT_URL. Results are marked lines; everything else on stdout is the function's own log.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

RESULT_MARK = "@@drill-result "


class FakeContext:
    """The two attributes the checker reads: a request id and a countdown like Lambda's."""

    def __init__(self, timeout_seconds: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = "efs-ha-drill-checker"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def serve() -> None:
    from failover_lambda.handler import handler  # imported once: a warm sandbox keeps its module state

    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        started = time.time()
        result = handler(request["event"], FakeContext(float(request["timeout"])))
        answer = {"id": request["id"], "started": started, "ended": time.time(), "result": result}
        print(RESULT_MARK + json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    serve()
