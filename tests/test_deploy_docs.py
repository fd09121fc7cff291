"""README 'What a deploy does to a running cluster' quotes the drill: its figures must be the checked-in results'
(docs/drill-results.json), so a new drill run that changes them fails here until the text follows."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RESULTS = {row["scenario"]: row for row in json.loads((ROOT / "docs" / "drill-results.json").read_text())["summary"]}


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def _figure(scenario: str, key: str = "rto_s") -> str:
    return f"{RESULTS[scenario][key]:.2f} s"


def test_the_deploy_cost_table_quotes_the_drill() -> None:
    section = _section("What a deploy does to a running cluster")
    handover = f"{RESULTS['graceful-shutdown']['rto_s']:.2f} s / {RESULTS['graceful-shutdown']['rto_s_max']:.2f} s"
    failover = f"{RESULTS['kill-active']['rto_s']:.2f} s / {RESULTS['kill-active']['rto_s_max']:.2f} s"
    assert f"| {handover} (\"the OS shuts the active node down\") |" in section
    assert f"| 2 x {_figure('graceful-shutdown')} |" in section
    assert f"| {failover} (kill -9);" in section
    assert f"switchover ({RESULTS['switchover']['rto_s']:.2f} s, \"planned switchover\")" in section
    # The upgrade's one switchover, and its bound for instances without the handover unit
    assert f"**one switchover** ({_figure('graceful-shutdown')} measured)" in section
    assert f"the kill -9 figure, {_figure('kill-active')})" in section


def test_every_figure_in_the_section_is_a_drill_figure() -> None:
    section = _section("What a deploy does to a running cluster")
    quoted = set(re.findall(r"\b(\d+\.\d\d) s\b", section))
    measured = {f"{row[key]:.2f}" for row in RESULTS.values() for key in ("rto_s", "rto_s_max")}
    assert quoted and quoted <= measured, quoted - measured
