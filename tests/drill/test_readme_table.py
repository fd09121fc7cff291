"""The README's drill table is generated from docs/drill-results.json (`make drill-table`): it cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drill.readme_table import BEGIN, END, README, RESULTS, current_block, main, merge, render, replace_block


def test_the_readme_drill_table_is_what_the_checked_in_results_render() -> None:
    results = json.loads(RESULTS.read_text())
    assert current_block(README.read_text()) == render(results), "README.md's drill table is stale: make drill-table"


def test_the_checked_in_results_are_a_complete_passing_run() -> None:
    results = json.loads(RESULTS.read_text())
    assert results["problems"] == []
    assert all(row["lost"] == 0 and not row["dual_active"] and row["recovered"] for row in results["summary"])
    assert "2-core" in results["machine"]


def test_every_summary_number_is_in_the_table() -> None:
    results = json.loads(RESULTS.read_text())
    table = render(results)
    for row in results["summary"]:
        assert f"| {row['rto_s']:.2f} |" in table and f"| {row['acknowledged']} |" in table


def test_check_fails_on_a_hand_edit_and_make_drill_table_fixes_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    assert main(["--readme", str(readme), "--check"]) == 1
    assert main(["--readme", str(readme)]) == 0
    assert main(["--readme", str(readme), "--check"]) == 0
    assert readme.read_text().endswith(f"{END}\n\nafter\n")


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers here", "table")


def test_merge_replaces_only_the_measured_scenarios() -> None:
    base = {"summary": [{"scenario": "a", "v": 1}, {"scenario": "b", "v": 1}],
            "runs": [{"scenario": "a"}, {"scenario": "b"}], "problems": ["b: old"]}
    new = {"summary": [{"scenario": "b", "v": 2}, {"scenario": "c", "v": 2}],
           "runs": [{"scenario": "b", "new": True}], "problems": []}
    merged = merge(base, new, "run X")
    assert [(r["scenario"], r["v"]) for r in merged["summary"]] == [("a", 1), ("b", 2), ("c", 2)]
    assert merged["runs"] == [{"scenario": "a"}, {"scenario": "b", "new": True}]
    assert merged["problems"] == [] and merged["merged_from"] == {"b": "run X", "c": "run X"}
