"""Host primitives the lab needs: commands, processes, cgroups and mounts (Linux, root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from truckctl.errors import Problem, TruckctlError
from truckctl.processes import alive, start_time

CGROUP_FS = Path("/sys/fs/cgroup")
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")  # a tmpfs: /run is on disk here and nspawn must clean it

# Host tools and the Debian package that brings each.
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "ssh": "openssh-client",
    "mount": "mount",
}
BUILD_TOOLS = {"debootstrap": "debootstrap"}
ACNG = "/usr/sbin/apt-cacher-ng"


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise TruckctlError.single(
            "lab-needs-root",
            f"truckctl lab {action} needs root (it runs systemd-nspawn, network namespaces and mounts): "
            f"run it as root, e.g. with sudo")


def require_tools(with_build: bool) -> None:
    tools = {**TOOLS, **(BUILD_TOOLS if with_build else {})}
    missing = {tool: pkg for tool, pkg in tools.items() if shutil.which(tool) is None}
    if not os.access(ACNG, os.X_OK):
        missing["apt-cacher-ng"] = "apt-cacher-ng"
    if missing:
        raise TruckctlError.single(
            "lab-missing-tools",
            f"the lab needs {', '.join(sorted(missing))}: apt-get install {' '.join(sorted(set(missing.values())))}")


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120, input_text: str | None = None,
        what: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure becomes a one-line TruckctlError naming the command and its stderr."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input_text,
                              check=False)
    except subprocess.TimeoutExpired:
        raise TruckctlError.single("lab-command", f"{what or argv[0]}: timed out after {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())[:300] or f"exit code {proc.returncode}"
        raise TruckctlError.single("lab-command", f"{what or ' '.join(argv[:4])}: {detail}")
    return proc


# ---- processes -------------------------------------------------------------------------------

def signal_process(pid: int, start: int | None, sig: int) -> None:
    if start_time(pid) is not None and (start is None or start_time(pid) == start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pids: list[tuple[int, int | None]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid, start) for pid, start in pids):
            return True
        time.sleep(0.05)
    return not any(alive(pid, start) for pid, start in pids)


# ---- cgroups ---------------------------------------------------------------------------------

def cgroup_roots() -> list[Path]:
    """Hierarchies a node's processes are placed in: name=systemd + unified (hybrid) or the v2 root."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    roots = [CGROUP_FS / "systemd", CGROUP_FS / "unified"]
    return [r for r in roots if (r / "cgroup.procs").exists()]


def make_cgroup(relative: str, roots: list[Path]) -> list[Path]:
    paths = [root / relative for root in roots]
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    return paths


def join_cgroups(paths: list[Path]) -> None:
    """For preexec_fn: move the calling (child) process into these cgroups before it execs."""
    for path in paths:
        with open(path / "cgroup.procs", "w") as handle:
            handle.write("0")


def _cgroup_dirs(base: Path) -> list[Path]:
    """A cgroup subtree, deepest first; directories vanish as processes exit, so errors are skipped."""
    found = [Path(top) for top, _, _ in os.walk(base, onerror=lambda _: None)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(relative: str, roots: list[Path]) -> set[int]:
    pids: set[int] = set()
    for root in roots:
        for directory in _cgroup_dirs(root / relative):
            try:
                pids.update(int(line) for line in (directory / "cgroup.procs").read_text().split())
            except OSError:
                continue
    return pids


def kill_cgroup(relative: str, roots: list[Path], timeout: float = 3.0) -> None:
    """SIGKILL everything left in a cgroup subtree until it is empty (processes can fork meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(relative, roots)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def remove_cgroup(relative: str, roots: list[Path]) -> list[str]:
    """rmdir the subtree deepest first (cgroup dirs are removed with rmdir, never rm -r)."""
    left = []
    for root in roots:
        base = root / relative
        for directory in _cgroup_dirs(base):  # includes base itself, last
            _rmdir_quiet(directory)
        if base.exists():
            left.append(str(base))
    return left


def _rmdir_quiet(path: Path) -> None:
    for _ in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)  # the kernel frees a cgroup a moment after its last process exits


def remove_empty_parent(relative_parent: str, roots: list[Path]) -> None:
    for root in roots:
        path = root / relative_parent
        if path.is_dir() and not any(p.is_dir() for p in path.iterdir()):
            _rmdir_quiet(path)


# ---- mounts ----------------------------------------------------------------------------------

def mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            points.append(fields[1].replace("\\040", " "))
    return points


def mounts_beneath(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    return [m for m in mount_points() if m == str(path) or m.startswith(prefix)]


def unmount_all(path: Path) -> list[str]:
    """Unmount everything at or beneath a path, deepest first; returns what could not be unmounted."""
    for point in sorted(mounts_beneath(path), key=len, reverse=True):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "--lazy", point], check=False)  # busy: detach now, freed when the last user goes
    return mounts_beneath(path)


def remove_tree(path: Path) -> None:
    """Delete a directory the lab owns, but never through a mount (that would delete someone else's files)."""
    if not path.exists():
        return
    left = mounts_beneath(path)
    if left:
        raise TruckctlError([Problem("lab-cleanup", f"not deleting {path}: {left[0]} is still mounted there")])
    shutil.rmtree(path)


def spawn(argv: Sequence[str], cgroups: list[Path], log: Path,
          keep_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """Start a long-lived process in its own session and cgroups (joined before exec, so even a
    crash of truckctl right after the fork leaves nothing outside what `down` sweeps).

    keep_fds: descriptors the child inherits, e.g. a held lock it must keep until it exits."""
    with open(log, "ab") as out:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: join_cgroups(cgroups), pass_fds=keep_fds)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
# inotify instances a lab node holds as root on the host (systemd, journald, logind...: 6-7 measured, plus
# margin); bench/suites.py waits for this many per node. `lab up` raises the limit to 3x that, for other labs.
INOTIFY_PER_NODE = 8
INOTIFY_HEADROOM = 3


def inotify_instances_wanted(nodes: int) -> int:
    """The limit `lab up` sets for a lab of `nodes` nodes: room for it three times over (other labs)."""
    return max(1024, nodes * INOTIFY_PER_NODE * INOTIFY_HEADROOM)


def ensure_inotify_instances(nodes: int, path: Path = INOTIFY_INSTANCES) -> int | None:
    """Every node's systemd runs as the host's root, so all nodes share root's inotify instances
    (128 by default): past that, nodes boot without systemd's watches and never become ready.
    Raise the limit when too low (never lower it); returns the old value when it was raised."""
    try:
        current = int(path.read_text())
    except (OSError, ValueError):
        return None
    wanted = inotify_instances_wanted(nodes)
    if current >= wanted:
        return None
    path.write_text(f"{wanted}\n")
    return current
