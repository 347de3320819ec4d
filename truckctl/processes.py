"""Is a recorded process still the one we recorded? Read from /proc (Linux), never by name."""

from __future__ import annotations

from pathlib import Path


def start_time(pid: int) -> int | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: object, start: int | None = None) -> bool:
    """True while the process runs (a zombie does not); with `start`, only for the very process
    recorded: a reused pid has another start time."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    current = start_time(pid)
    if current is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and (start is None or current == start)
