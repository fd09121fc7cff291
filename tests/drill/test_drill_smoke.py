"""Short drill: one real failover (kill -9 of the active node) in network namespaces against moto.

The full drill is `make drill`; this checks only safety (no acknowledged object lost, never two nodes serving,
the VIP never reaching a node its route table does not name) and that service came back, never timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_kill_of_the_active_node_loses_nothing_and_never_serves_twice(tmp_path: Path) -> None:
    output = tmp_path / "drill-results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "drill", "--scenario", "kill-active", "--repeat", "1", "--output", str(output),
         "--max-minutes", "3"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False)
    detail = completed.stdout[-3000:] + completed.stderr[-3000:]
    assert output.exists(), detail
    results = json.loads(output.read_text())
    assert results["problems"] == [], detail
    assert completed.returncode == 0, detail
    [run] = results["runs"]
    assert run["recovered"], detail
    assert run["acknowledged"] > 0
    assert run["lost"] == 0
    assert run["dual_active"] is False
    assert run["vip_violations"] == 0
