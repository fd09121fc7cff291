"""The drill's probe-gap measurement (issue 11, defect 4): the largest interval between two of the checker's Scans
(one per probe cycle, whichever run made it), reported per run and, as the largest, per scenario."""

from __future__ import annotations

from typing import Any

from drill.analysis import largest_probe_gap
from drill.report import summarize, table


def test_the_largest_gap_between_consecutive_probes_whatever_their_order() -> None:
    assert largest_probe_gap([10.0, 11.0, 12.1, 13.0, 17.5, 18.4]) == 4.5
    assert largest_probe_gap([3.0, 1.0, 2.0]) == 1.0
    assert largest_probe_gap([5.0]) is None
    assert largest_probe_gap([]) is None


def _run(rep: int, gap: float | None) -> dict[str, Any]:
    return {"scenario": "kill-active", "rep": rep, "detection_s": 3.0, "switch_s": 2.0, "rto_s": 6.0,
            "acknowledged": 10, "lost": 0, "dual_active": False, "vip_violations": 0, "recovered": True,
            "probe_gap_max_s": gap}


def test_each_scenario_reports_its_largest_gap_in_the_printed_table() -> None:
    (row,) = summarize([_run(1, 1.4), _run(2, 3.25), _run(3, None)])
    assert row["probe_gap_max_s"] == 3.25
    header, _, line = table([row]).splitlines()
    assert "max probe gap s" in header
    assert "3.25" in line.split()
