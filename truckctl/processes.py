"""Is a recorded process still the one we recorded? Which processes belong to a run? Read from /proc
(Linux), never by name."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
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


# A run's processes (ansible-playbook, its workers, Mitogen's) carry this variable: ansible-runner starts
# ansible-playbook in a session of its own, so neither Ctrl-C nor a dead truckctl reaches it by itself.
RUN_TAG = "TRUCKCTL_RUN"


def tagged(name: str = RUN_TAG) -> dict[int, str]:
    """pid -> value of every process (other than this one) whose environment holds `name`."""
    found: dict[int, str] = {}
    prefix = f"{name}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                found[int(entry.name)] = item[len(prefix):].decode(errors="replace")
                break
    return found


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def end_tagged(belongs: Callable[[str], bool], spare: tuple[str, ...] = ("ssh",)) -> list[int]:
    """SIGKILL every tagged process whose tag `belongs`; processes named in `spare` are left (SSH
    ControlPersist masters end by themselves and speed up the next run). Returns the pids killed."""
    killed: list[int] = []
    for _ in range(20):  # again until none is left: a process may fork while the others are being killed
        found = [pid for pid, tag in tagged().items() if belongs(tag) and command_name(pid) not in spare]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
        time.sleep(0.05)
    return killed
