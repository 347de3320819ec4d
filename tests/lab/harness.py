"""What the lab tests share (import it from here, not from conftest): the stage, the `Lab` handle
the session fixture returns, polling, and what a lab may leave behind."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from truckctl.cloud.outputs import CloudOutputs
from truckctl.lab import api
from truckctl.lab import state as lab_state
from truckctl.lab.ssh import ssh_run
from truckctl.lab.system import cgroup_roots, mount_points
from truckctl.lifecycle import cloudside
from truckctl.processes import alive
from truckctl.project import Project

STAGE = "stage-1"
HOST_TOOLS = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "ip": "iproute2",
              "nsenter": "util-linux", "ssh": "openssh-client"}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until `check()` is truthy (generous timeouts: the lab shares 2 cores with everything)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def lab_skip_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab tests need root (systemd-nspawn, network namespaces, mounts)"
    missing = sorted(pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None)
    if not os.access("/usr/sbin/apt-cacher-ng", os.X_OK):
        missing.append("apt-cacher-ng")
    if missing:
        return f"lab tests need host packages: apt-get install {' '.join(missing)}"
    if not cgroup_roots():
        return "lab tests need a cgroup hierarchy under /sys/fs/cgroup"
    return None


@dataclass(frozen=True)
class Lab:
    project: Project
    stage: str
    nodes: list[api.LabNode]
    connection: api.LabConnection
    standin_address: str

    def node(self, name: str) -> api.LabNode:
        return next(n for n in self.nodes if n.name == name)

    def ssh(self, address: str, command: str) -> tuple[int, str]:
        """Run a command on a node over SSH with StrictHostKeyChecking=yes and the lab's known_hosts."""
        return ssh_run(self.connection, address, command)

    def cloud_outputs(self) -> CloudOutputs:
        return api.cloud_outputs(self.project, self.stage)

    def standin(self, path: str) -> Any:
        """GET from the stand-in's HTTPS API as truckctl (its own client certificate): sees every truck."""
        return cloudside.fetch(self.cloud_outputs(), path, timeout_s=10)


def leftovers(state: lab_state.LabState) -> list[str]:
    """Everything of this lab still on the host, by what its state recorded (empty after a clean down)."""
    found = []
    links = set(os.listdir("/sys/class/net"))
    namespaces = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    mounts = mount_points()
    for resource in state.resources:
        if resource.kind == lab_state.LINK and resource.name in links:
            found.append(f"link {resource.name}")
        elif resource.kind == lab_state.NETNS and resource.name in namespaces:
            found.append(f"netns {resource.name}")
        elif resource.kind == lab_state.MOUNT and resource.name in mounts:
            found.append(f"mount {resource.name}")
        elif resource.kind in (lab_state.DIR, lab_state.RUNFILE) and os.path.exists(resource.name):
            found.append(f"{resource.kind} {resource.name}")
        elif resource.kind == lab_state.PROCESS and alive(resource.data["pid"], resource.data.get("start")):
            found.append(f"process {resource.data['pid']} ({resource.name})")
        elif resource.kind == lab_state.CGROUP:
            found += [f"cgroup {root}/{resource.name}" for root in resource.data["roots"]
                      if os.path.isdir(f"{root}/{resource.name}")]
    found += [f"mount {m}" for m in mounts if m.startswith(str(lab_state.lab_dir(state_dir_of(state))) + "/")]
    found += [f"nspawn {pid}" for pid in nspawn_pids(state.lab_id)]
    return found


def state_dir_of(state: lab_state.LabState) -> Path:
    assert state.path is not None
    return state.path.parent.parent


def nspawn_pids(lab_id: str) -> list[int]:
    """systemd-nspawn processes running one of this lab's machines."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and any(f"--machine=tl-{lab_id}-".encode() in a for a in argv):
            pids.append(int(cmdline.parent.name))
    return pids
