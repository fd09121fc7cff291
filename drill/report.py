"""The results table and drill-results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drill.lab import median

COLUMNS = ("scenario", "runs", "detection s", "switch s", "RTO s", "acked", "lost", "dual-active", "VIP wrong",
           "resets", "max probe gap s", "problems")


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name in dict.fromkeys(run["scenario"] for run in runs):
        mine = [run for run in runs if run["scenario"] == name]
        rows.append({
            "scenario": name, "runs": len(mine),
            "detection_s": median([r["detection_s"] for r in mine]),
            "switch_s": median([r["switch_s"] for r in mine]),
            "rto_s": median([r["rto_s"] for r in mine]),
            "rto_s_max": max((r["rto_s"] for r in mine if r["rto_s"] is not None), default=None),
            "acknowledged": sum(r["acknowledged"] for r in mine), "lost": sum(r["lost"] for r in mine),
            "dual_active": any(r["dual_active"] for r in mine),
            "vip_violations": sum(r["vip_violations"] for r in mine),
            "recovered": all(r["recovered"] for r in mine),
            "watchdog_resets": sum(len(r.get("watchdog_resets", [])) for r in mine),
            "reset_s": median([r.get("reset_s") for r in mine]),
            "promoted_s": median([r.get("promoted_s") for r in mine]),
            "new_serving_s": median([r.get("new_serving_s") for r in mine]),
            "self_fence_s": median([r.get("self_fence_s") for r in mine]),
            # The largest, not the median: the bound is on the worst gap.
            "probe_gap_max_s": max((r["probe_gap_max_s"] for r in mine if r.get("probe_gap_max_s") is not None),
                                   default=None),
            "problems": [f"#{r['rep']}: {p}" for r in mine for p in r.get("problems", [])],
        })
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "YES" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    keys = ("scenario", "runs", "detection_s", "switch_s", "rto_s", "acknowledged", "lost", "dual_active",
            "vip_violations", "watchdog_resets", "probe_gap_max_s")
    cells = [list(COLUMNS)] + [[_cell(row[k]) for k in keys] + [str(len(row.get("problems", [])))]
                               for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths,
                                                                                          strict=True)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def failures(rows: list[dict[str, Any]], global_dual: list[Any]) -> list[str]:
    problems = []
    for row in rows:
        if row["lost"]:
            problems.append(f"{row['scenario']}: {row['lost']} acknowledged object(s) lost")
        if row["dual_active"]:
            problems.append(f"{row['scenario']}: two nodes served at once")
        if row["vip_violations"]:
            problems.append(f"{row['scenario']}: the VIP reached a node its route table did not name")
        if not row["recovered"]:
            problems.append(f"{row['scenario']}: service did not recover in time")
        problems += [f"{row['scenario']} {problem}" for problem in row.get("problems", [])]
    if global_dual:
        problems.append(f"dual-active seen outside the scenario windows: {global_dual[:3]}")
    return problems


def write(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
