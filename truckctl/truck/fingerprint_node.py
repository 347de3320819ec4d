"""Runs ON a truck node (sent as source over SSH, stdlib only): the node's fingerprint and its live state.

`main(spec)` prints one JSON line: a SHA-256 over everything site.yml's tasks read on this node (the
managed paths' type, owner, mode, times, inode and content, and the entries of the directories that hold
the roles' secret files; the managed units' enablement as read from disk, state and start times; the
account databases; dpkg's status and journal; the boot), and the live-state items that truck_live_state's own
`Node.measure()` finds with the arguments of the last check (an empty list: the live state is as
configured). truckctl compares the fingerprint with the one taken around the last clean check
(truckctl.truck.fastcheck). Deliberately wider than what the roles decide: anything that moved makes
drift run the full check, never the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import types
from typing import Any

# Read whole: the accounts (the user task, sudo and login checks), the packages (the common role) and
# the boot (a reboot restarts every unit).
WHOLE_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/var/lib/dpkg/status")
BOOT_ID = "/proc/sys/kernel/random/boot_id"  # its content only: /proc's own times are not the node's
# Every entry counts: dpkg's journal of an interrupted run, the units enabled at boot.
DEEP_DIRS = ("/var/lib/dpkg/updates", "/etc/systemd/system/multi-user.target.wants")
UNIT_PROPERTIES = "Id,LoadState,ActiveState,SubState,ExecMainStartTimestampMonotonic"


def describe(path: str, listed: bool = False, deep: bool = False) -> list[Any]:
    """A path's type, owner, mode, times and inode (ctime: a change set back still moved it) and its content:
    a file's hash, a link's target, a directory's entry names (listed) or entries described (deep)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return [path, None]
    entry: list[Any] = [path, info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns, info.st_ctime_ns,
                        info.st_ino]
    if stat.S_ISDIR(info.st_mode) and deep:
        entry.append([describe(os.path.join(path, name)) for name in sorted(os.listdir(path))])
    elif stat.S_ISREG(info.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 16), b""):
                digest.update(block)
        entry.append(digest.hexdigest())
    elif stat.S_ISLNK(info.st_mode):
        entry.append(os.readlink(path))
    elif stat.S_ISDIR(info.st_mode) and listed:
        entry.append(sorted(os.listdir(path)))
    return entry


def homes(users: list[str]) -> list[str]:
    found = []
    with open("/etc/passwd", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.rstrip("\n").split(":")
            if len(fields) > 5 and fields[0] in users:
                found.append(fields[5])
    return found


def boot_id() -> str:
    with open(BOOT_ID, encoding="ascii", errors="replace") as handle:
        return handle.read().strip()


def units(names: list[str]) -> list[str]:
    """Their state, and their enablement read from disk (`is-enabled`; `show` answers from systemd's cache)."""
    if not names:
        return []
    answers = []
    for argv in (["show", f"--property={UNIT_PROPERTIES}", "--"], ["is-enabled", "--"]):
        proc = subprocess.run(["systemctl", *argv, *names], capture_output=True, text=True, errors="replace",
                              check=False)
        answers.append(f"{proc.returncode}\n{proc.stdout}")
    return answers


def live_items(source: str, args: dict[str, Any]) -> list[dict[str, str]]:
    """truck_live_state's measurement, without Ansible: its source is run as a module of its own."""
    module = types.ModuleType("truck_live_state")
    sys.modules["truck_live_state"] = module  # dataclasses look their module up
    exec(compile(source, "truck_live_state.py", "exec"), module.__dict__)  # truckctl's own module, sent along
    node = module.Node({**args, "accounts": module.configured_accounts(args)})
    items, _ = node.measure()
    return [item.public() for item in items]


def main(spec: dict[str, Any]) -> None:
    listed, deep = set(spec["listed"]), set(spec["deep"]) | set(DEEP_DIRS)
    state = {
        "paths": [describe(p, p in listed, p in deep) for p in sorted(set(spec["paths"]) | listed | deep)],
        "homes": [describe(p) for p in homes(spec["users"])],
        "units": units(sorted(spec["units"])),
        "whole": [describe(p) for p in WHOLE_FILES],
        "boot": boot_id(),
    }
    fingerprint = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
    items = live_items(spec["live_source"], spec["live_args"]) if spec.get("live_args") is not None else None
    print(json.dumps({"fingerprint": fingerprint, "live": items}))
