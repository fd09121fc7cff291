"""The drill's measurements on hand-made timelines (no processes, no namespaces)."""

from __future__ import annotations

from drill.analysis import Window, detection_seconds, dual_active, rto_seconds, vip_violations
from drill.timeline import ClusterSample, Timeline


def _samples(*spans: tuple[float, float, bool]) -> list[tuple[float, bool]]:
    """(start, end, up) spans sampled every 0.05 s."""
    out = []
    for start, end, up in spans:
        t = start
        while t < end:
            out.append((round(t, 3), up))
            t += 0.05
    return out


def test_dual_active_is_seen_when_serving_overlaps_and_not_across_a_gap() -> None:
    timeline = Timeline()
    timeline.samples["node1"] = _samples((0, 5, True), (5, 10, False))
    timeline.samples["node2"] = _samples((0, 6, False), (6, 10, True))
    assert dual_active(timeline) == []
    timeline.samples["node2"] = _samples((0, 4.5, False), (4.5, 10, True))
    assert dual_active(timeline)


def test_dual_active_compares_every_pair_of_three_nodes() -> None:
    # node1 serves, then node2, then node3; node3 also served briefly while node1 did (the first and third series)
    timeline = Timeline()
    timeline.samples["node1"] = _samples((0, 5, True), (5, 20, False))
    timeline.samples["node2"] = _samples((0, 6, False), (6, 8, True), (8, 20, False))
    timeline.samples["node3"] = _samples((0, 4, False), (4, 5.5, True), (5.5, 9, False), (9, 20, True))
    overlaps = dual_active(timeline)
    assert overlaps and all(start > 3.9 and end < 5.6 for start, end in overlaps)
    timeline.samples["node3"] = _samples((0, 9, False), (9, 20, True))
    assert dual_active(timeline) == []


def test_vip_reaching_a_node_the_table_does_not_name_is_a_violation() -> None:
    timeline = Timeline()
    timeline.table_route = [(0.0, "node1"), (10.0, "node2")]
    timeline.identity = [(5.0, "node1"), (10.5, "node1"), (12.0, "node2")]
    assert vip_violations(timeline, 0, 20) == []  # 10.5: within the mirror's lag after the change
    timeline.identity.append((15.0, "node1"))
    assert [v["t"] for v in vip_violations(timeline, 0, 20)] == [15.0]


def test_rto_is_the_longest_silence_after_the_fault() -> None:
    ops = [{"t1": t, "ok": 1} for t in (1.0, 1.5, 2.0)] + [{"t1": 3.0, "ok": 0}] + \
          [{"t1": t, "ok": 1} for t in (8.0, 8.5)]
    assert rto_seconds(ops, Window(fault_at=2.2, recovered_at=9, epoch_before=1, old_active="node1")) == 6.0
    assert rto_seconds(ops[:3], Window(fault_at=2.2, recovered_at=9, epoch_before=1, old_active="node1")) is None


def test_detection_and_switch_come_from_the_epoch_and_the_client_route() -> None:
    timeline = Timeline()
    timeline.cluster = [ClusterSample(0, 1, "stable", "node1"), ClusterSample(15, 2, "fencing", None),
                        ClusterSample(16, 2, "stable", "node2")]
    timeline.table_route = [(0, "node1"), (16.5, "node2")]
    window = Window(fault_at=10, recovered_at=20, epoch_before=1, old_active="node1")
    assert detection_seconds(timeline, window) == (5, 1.5)
