"""One lock per stage covering both tiers, so two runs never change the same stage at once.

The lock is a file created atomically (O_EXCL) under <state>/locks/. It records who holds it; a
holder on this host whose process is gone (or whose PID was reused) is reported as stale, and
`truckctl unlock STAGE` clears it. A live holder is never overridden silently.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.processes import start_time
from truckctl.project import Project


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    user: str
    command: str
    started: float
    run_id: str | None = None
    pid_start: str | None = None  # /proc start time: tells a reused PID from the holder

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host} by {self.user} ({self.command!r}, since {when})"

    def is_stale(self) -> bool:
        """Only provable on this host: the process is gone or is another process now."""
        if self.host != socket.gethostname():
            return False
        start = start_time(self.pid)
        return start is None or (self.pid_start is not None and str(start) != self.pid_start)


def lock_path(project: Project, stage: str) -> Path:
    return project.state_dir / "locks" / f"{stage}.lock"


def read_holder(project: Project, stage: str) -> LockHolder | None:
    path = lock_path(project, stage)
    try:
        data = json.loads(path.read_text())
        return LockHolder(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        # A torn write (crash while writing) is a lock nobody can prove alive: treat as stale.
        return LockHolder(pid=0, host=socket.gethostname(), user="?", command="(unreadable lock)", started=0)


def lock_status(project: Project, stage: str) -> dict[str, object] | None:
    holder = read_holder(project, stage)
    if holder is None:
        return None
    return {**asdict(holder), "stale": holder.is_stale(), "description": holder.describe()}


@contextlib.contextmanager
def stage_lock(project: Project, stage: str, command: str, run_id: str | None = None) -> Iterator[LockHolder]:
    """Hold the stage's lock for the duration of the block, or raise LOCKED naming the holder."""
    holder = LockHolder(pid=os.getpid(), host=socket.gethostname(), user=_user(), command=command,
                        started=time.time(), run_id=run_id, pid_start=str(start_time(os.getpid())))
    path = lock_path(project, stage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise _locked(stage, read_holder(project, stage)) from None
    except OSError as exc:
        raise _unwritable(project, path, exc) from None
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(holder), handle)
    except OSError as exc:  # e.g. disk full: an empty lock file would look like a stale lock later
        path.unlink(missing_ok=True)
        raise _unwritable(project, path, exc) from None
    try:
        yield holder
    finally:
        current = read_holder(project, stage)
        if current is not None and current.pid == holder.pid and current.started == holder.started:
            path.unlink(missing_ok=True)


def unlock(project: Project, stage: str, force: bool = False) -> dict[str, object]:
    """Clear a stale lock (or, with force, one held on another host)."""
    holder = read_holder(project, stage)
    if holder is None:
        return {"stage": stage, "cleared": False, "message": f"{stage} is not locked"}
    if not holder.is_stale() and not (force and holder.host != socket.gethostname()):
        raise TruckctlError(
            [Problem("lock-held", f"{stage} is locked by a live run: {holder.describe()}; "
                     + ("stop that run first" if holder.host == socket.gethostname()
                        else "use --force only if you know that run is gone"),
                     str(lock_path(project, stage)))],
            ExitCode.LOCKED)
    from truckctl.truck.runner import end_orphans

    # the dead holder's Ansible may still be running (its own session): it ends before the lock goes
    ended = end_orphans(holder.pid) if holder.host == socket.gethostname() and holder.is_stale() else []
    lock_path(project, stage).unlink(missing_ok=True)
    return {"stage": stage, "cleared": True, "holder": asdict(holder), "ended_processes": len(ended),
            "message": f"cleared the lock of {holder.describe()}"
            + (f"; ended {len(ended)} process(es) its run had left running" if ended else "")}


def _unwritable(project: Project, path: Path, exc: OSError) -> TruckctlError:
    return TruckctlError.single("state-unwritable", f"cannot take the stage lock: {exc.strerror}; free space in the "
                                f"state directory {project.state_dir} (or point TRUCKCTL_STATE_DIR elsewhere) and "
                                "re-run: nothing was changed", project.display(path))


def _locked(stage: str, holder: LockHolder | None) -> TruckctlError:
    if holder is None:  # released between our attempt and the read: let the caller retry
        return TruckctlError.single("lock-held", f"{stage} was locked by another run; try again",
                                    exit_code=ExitCode.LOCKED)
    if holder.is_stale():
        message = (f"{stage} has a STALE lock left by {holder.describe()}, which is no longer running; "
                   f"run 'truckctl unlock {stage}' to clear it")
    else:
        message = f"{stage} is locked by another run: {holder.describe()}"
    error = TruckctlError.single("lock-held", message, exit_code=ExitCode.LOCKED)
    error.result["lock"] = {**asdict(holder), "stale": holder.is_stale()}
    return error


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
