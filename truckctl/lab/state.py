"""What the lab made, persisted as JSON so `down` can undo it after a crash or a half-built `up`.

Every resource is recorded BEFORE it is created (a record for something that does not exist is
harmless to tear down; a thing that exists without a record would leak).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from truckctl.errors import Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lab.plan import LabPlan, NodePlan
from truckctl.processes import alive

STATE_VERSION = 1

# Resource kinds, in the order `down` undoes them.
PROCESS = "process"  # data: pid, start (kernel start time, guards against pid reuse)
CGROUP = "cgroup"  # name: relative path under each hierarchy in data["roots"]
RUNFILE = "runfile"  # a runtime file a killed process leaves behind (nspawn's image lock)
MOUNT = "mount"  # name: mount point
SCRATCH = "scratch"  # name: a build directory: unmount everything beneath, then delete it
NETNS = "netns"
LINK = "link"  # bridges and host-side veths
TMPFS = "tmpfs"  # /run/systemd/nspawn, only when the lab mounted it
DIR = "dir"  # a directory the lab owns (node overlays): deleted once nothing is mounted beneath
DRILL = "drill"  # name: kind:target; data: what the drill did and how to undo it (lab/faults.py)
TEARDOWN_ORDER = [DRILL, PROCESS, CGROUP, RUNFILE, MOUNT, SCRATCH, NETNS, LINK, TMPFS, DIR]


@dataclass
class Resource:
    kind: str
    name: str
    data: JsonObject = field(default_factory=dict)


@dataclass
class LabState:
    lab_id: str
    stage: str
    plan: LabPlan
    fingerprint: str
    complete: bool = False
    created_at: float = field(default_factory=time.time)
    resources: list[Resource] = field(default_factory=list)
    # Nodes of trucks absent from the current stage: switched off, kept for a later day (see move.py).
    parked: list[NodePlan] = field(default_factory=list)
    path: Path | None = None  # where it is saved; not serialized

    def to_dict(self) -> JsonObject:
        return {
            "version": STATE_VERSION, "lab_id": self.lab_id, "stage": self.stage,
            "fingerprint": self.fingerprint, "complete": self.complete, "created_at": self.created_at,
            "plan": self.plan.to_dict(),
            "resources": [{"kind": r.kind, "name": r.name, "data": r.data} for r in self.resources],
            "parked": [asdict(n) for n in self.parked],
        }

    @classmethod
    def from_dict(cls, data: JsonObject) -> LabState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported lab state version {data.get('version')!r}")
        return cls(
            lab_id=data["lab_id"], stage=data["stage"], plan=LabPlan.from_dict(data["plan"]),
            fingerprint=data["fingerprint"], complete=bool(data["complete"]),
            created_at=float(data["created_at"]),
            resources=[Resource(r["kind"], r["name"], dict(r.get("data") or {})) for r in data["resources"]],
            parked=[NodePlan(**n) for n in data.get("parked") or []],
        )

    def record(self, kind: str, name: str, **data: Any) -> Resource:
        """Note a resource about to be created, and save at once (the crash-safety rule above)."""
        for existing in self.resources:
            if existing.kind == kind and existing.name == name:
                existing.data.update(data)
                self.save()
                return existing
        resource = Resource(kind, name, data)
        self.resources.append(resource)
        self.save()
        return resource

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a state file


def lab_dir(state_dir: Path) -> Path:
    return state_dir / "lab"


def state_file(state_dir: Path) -> Path:
    return lab_dir(state_dir) / "state.json"


def load(state_dir: Path) -> LabState | None:
    path = state_file(state_dir)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise TruckctlError([Problem("lab-state", f"cannot read the lab state ({exc}): remove it only after "
                                     f"checking nothing of the lab is left running", str(path))]) from None
    try:
        state = LabState.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise TruckctlError([Problem("lab-state", f"unreadable lab state ({exc})", str(path))]) from None
    state.path = path
    return state


DEAD_HOLDER_WAIT_S = 5.0


def _take(handle: Any) -> bool:
    """The lock, at once; or, when its recorded holder is dead, as soon as the last copy of the dead
    holder's descriptor goes (a child it was forking when it was killed holds one until its exec)."""
    deadline = time.monotonic() + DEAD_HOLDER_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip().removeprefix("pid ")
            if (pid.isdigit() and alive(int(pid))) or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """One lab command at a time per state directory (up and down must never interleave)."""
    directory = lab_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / "lock", "a+") as handle:
        if not _take(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise TruckctlError.single("lab-busy", f"another truckctl lab command is running ({holder})")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
