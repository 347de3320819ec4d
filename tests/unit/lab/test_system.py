"""Host limits the lab depends on."""

from __future__ import annotations

from pathlib import Path

from truckctl.lab.system import ensure_inotify_instances


def test_inotify_instances_raised_when_too_low_never_lowered(tmp_path: Path) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    assert ensure_inotify_instances(7, limit) == 128
    assert int(limit.read_text()) == 1024
    assert ensure_inotify_instances(7, limit) is None  # already enough: untouched
    limit.write_text("8192\n")
    assert ensure_inotify_instances(100, limit) is None and limit.read_text() == "8192\n"
    assert ensure_inotify_instances(100, tmp_path / "missing") is None
