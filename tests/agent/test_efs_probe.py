"""EFS write monitor: a real write+fsync+read-back, failures (even as root), and a hung mount."""

from __future__ import annotations

import threading
from pathlib import Path

from node_agent.efs_probe import EfsProbe


def test_probe_writes_one_byte_and_reads_it_back(tmp_path: Path) -> None:
    probe = EfsProbe(str(tmp_path), "node1", 2.0, require_mount=False)
    first = probe.run()
    assert first.ok and first.detail == "ok"
    path = tmp_path / ".efs-ha" / "monitor-node1.txt"
    assert path == probe.path
    written = path.read_bytes()
    assert len(written) == 1
    assert probe.run().ok
    assert path.read_bytes() != written  # each probe writes a new byte, so a stale read-back is caught


def test_probe_fails_when_the_monitor_directory_cannot_be_created(tmp_path: Path) -> None:
    # Root ignores file permissions, so make the path impossible instead: .efs-ha is a file, not a directory
    (tmp_path / ".efs-ha").write_text("in the way")
    result = EfsProbe(str(tmp_path), "node1", 2.0, require_mount=False).run()
    assert not result.ok
    assert "EFS write failed" in result.detail


def test_probe_fails_when_the_monitor_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / ".efs-ha" / "monitor-node1.txt").mkdir(parents=True)
    result = EfsProbe(str(tmp_path), "node1", 2.0, require_mount=False).run()
    assert not result.ok and "Is a directory" in result.detail


def test_probe_fails_on_a_directory_that_is_not_a_mount_point(tmp_path: Path) -> None:
    # An unmounted EFS would silently write to the local disk
    result = EfsProbe(str(tmp_path), "node1", 2.0).run()
    assert not result.ok and "not a mount point" in result.detail
    assert not (tmp_path / ".efs-ha").exists()


def test_a_hung_write_times_out_and_blocks_new_probes_until_it_returns(tmp_path: Path) -> None:
    release = threading.Event()
    calls: list[bytes] = []

    def hanging_writer(path: Path, payload: bytes) -> None:
        calls.append(payload)
        release.wait(10)

    probe = EfsProbe(str(tmp_path), "node1", 0.05, require_mount=False, writer=hanging_writer)
    first = probe.run()
    assert not first.ok and "did not finish within 0.05s" in first.detail
    second = probe.run()
    assert not second.ok and "still hung" in second.detail
    assert len(calls) == 1  # no pile-up of stuck threads
    release.set()
    for _ in range(100):
        if probe.run().ok:
            break
        threading.Event().wait(0.01)
    assert len(calls) >= 2


def test_hung_reports_a_write_stuck_right_now_even_before_the_probe_times_out(tmp_path: Path) -> None:
    release = threading.Event()
    probe = EfsProbe(str(tmp_path), "node1", 30.0, require_mount=False,
                     writer=lambda _path, _payload: release.wait(30))
    assert not probe.hung()
    caller = threading.Thread(target=probe.run, daemon=True)
    caller.start()
    try:
        assert not probe.hung(now=0.0)  # just started: a healthy write takes milliseconds
        threading.Event().wait(0.6)
        assert probe.hung()  # in flight for longer than HUNG_AFTER_SECONDS, the last result still "ok"
    finally:
        release.set()
        caller.join(5)
    assert not probe.hung()
