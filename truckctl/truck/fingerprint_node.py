"""Runs ON a truck node (sent as source over SSH, stdlib only): the node's fingerprint and its live state.

`main(spec)` prints one JSON line: a SHA-256 over everything site.yml's tasks read on this node (the
managed paths' type, owner, mode, mtime and content; the managed units' enablement, state and start
times; the account databases; dpkg's status), and the live-state items that truck_live_state's own
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

# Read whole: the accounts (the user task, sudo and login checks) and the packages (the common role).
WHOLE_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/var/lib/dpkg/status")
UNIT_PROPERTIES = "Id,LoadState,UnitFileState,ActiveState,SubState,ExecMainStartTimestampMonotonic"


def describe(path: str, listed: bool) -> list[Any]:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return [path, None]
    entry: list[Any] = [path, info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns]
    if stat.S_ISREG(info.st_mode):
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


def units(names: list[str]) -> str:
    if not names:
        return ""
    proc = subprocess.run(["systemctl", "show", f"--property={UNIT_PROPERTIES}", "--", *names],
                          capture_output=True, text=True, check=False)
    return f"{proc.returncode}\n{proc.stdout}"


def live_items(source: str, args: dict[str, Any]) -> list[dict[str, str]]:
    """truck_live_state's measurement, without Ansible: its source is run as a module of its own."""
    module = types.ModuleType("truck_live_state")
    sys.modules["truck_live_state"] = module  # dataclasses look their module up
    exec(compile(source, "truck_live_state.py", "exec"), module.__dict__)  # truckctl's own module, sent along
    node = module.Node({**args, "accounts": module.configured_accounts(args)})
    items, _ = node.measure()
    return [item.public() for item in items]


def main(spec: dict[str, Any]) -> None:
    listed = set(spec["listed"])
    state = {
        "paths": [describe(p, p in listed) for p in sorted(set(spec["paths"]) | listed)],
        "homes": [describe(p, False) for p in homes(spec["users"])],
        "units": units(sorted(spec["units"])),
        "whole": [describe(p, False) for p in WHOLE_FILES],
    }
    fingerprint = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
    items = live_items(spec["live_source"], spec["live_args"]) if spec.get("live_args") is not None else None
    print(json.dumps({"fingerprint": fingerprint, "live": items}))
