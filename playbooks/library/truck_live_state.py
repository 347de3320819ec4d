#!/usr/bin/python3
# ruff: noqa: E402  (Ansible modules declare DOCUMENTATION before their imports)
"""Compare a node's live, effective state with what the configuration decides, in one module run.

Check mode reports each difference (drift); otherwise each is put back. What is compared, and how:

- sshd: `sshd -T` (the settings sshd actually applies) against every setting of truckctl's drop-in;
  fix: comment out the conflicting directives in the other sshd files, reload sshd.
- firewall: the live `nft list ruleset` against the rendered /etc/nftables.conf loaded into a
  throwaway network namespace (`unshare --net`) and listed the same way; fix: `nft -f` the file.
- authorized-keys: for every account with a login shell, the keys of every AuthorizedKeysFile that
  sshd -T names, against exactly the configured ones; fix: the extra keys are removed.
- account: accounts that can log in (a login shell, not expired, and a usable password or a key)
  beyond the configured ones; fix: locked, expired, shell set to nologin.
- sudo: files sudo reads in /etc/sudoers.d beyond the configured ones, and members of the groups the
  sudoers files grant; fix: the file removed, the member taken out of the group.
- listener: listening sockets against the role's allow-list: each must belong to a unit the roles run
  and, unless bound to loopback, be on an allowed port; fix: the foreign unit stopped.
- time-source: the sources chronyd uses (`chronyc -c -N sources`) against the rendered chrony.conf;
  fix: chrony restarted.
- broker: mosquitto's listening sockets against the `listener` lines of its rendered config, the config
  it runs with (path and age), the bridge connections; fix: mosquitto restarted.
- sysctl: each key of truckctl's sysctl.d files against /proc/sys (keys the kernel does not let this
  node set, e.g. net.* in a container, are listed as unsettable, not drift); fix: the value written.

Fixes that would interrupt telemetry (`cuts_telemetry`: "firewall" for a ruleset reload, unit names whose
restart drops the feed, e.g. "mosquitto" on a gateway) are flagged on their items; with `hold_cuts` they
are not applied but returned as `held` (the race is live: truckctl/lifecycle/racelive.py).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: truck_live_state
short_description: Compare (check mode) or restore a node's live state against the configuration
description:
  - One fact-gathering run per node; see the module's docstring for what is compared and fixed.
  - Supports check mode and diff mode; returns the differences as C(drift) items.
options:
  ops_users:
    description: The configured ops users (name, ssh_public_key): they may log in, with exactly that key.
    type: list
    elements: dict
    required: true
  admin_user: {description: The account truckctl connects as., type: str, default: root}
  admin_keys:
    description: That account's exact keys (besides its ops key, if it is an ops user); not given, they are not checked.
    type: list
    elements: str
  console_accounts:
    description: Accounts whose password alone (console login) is not drift.
    type: list
    elements: str
    default: [root]
  sudoers_files: {description: Names allowed in /etc/sudoers.d., type: list, elements: str, default: [README]}
  sudo_members: {description: Accounts allowed in the groups the sudoers files grant., type: list, elements: str,
                 default: []}
  sshd_conf: {description: truckctl's sshd drop-in (its settings are the expected ones)., type: str, required: true}
  nft_conf: {description: The rendered ruleset file., type: str, default: /etc/nftables.conf}
  chrony_conf: {description: The rendered chrony configuration., type: str, default: /etc/chrony/chrony.conf}
  broker_conf: {description: The rendered mosquitto configuration (empty when the node has no broker)., type: str,
                default: ""}
  broker_unit: {description: The broker's unit., type: str, default: mosquitto}
  rendered:
    description: >-
      The configuration's own content of the sshd, chrony and broker files (keys sshd, chrony, broker), rendered
      on the controller: the expected values come from it, not from the node's copy, which may have been edited.
    type: dict
    default: {}
  units: {description: Units the roles run (their sockets may listen)., type: list, elements: str, required: true}
  allow_tcp: {description: TCP ports allowed to listen beyond loopback., type: list, elements: int, default: []}
  allow_udp: {description: UDP ports allowed to listen beyond loopback., type: list, elements: int, default: []}
  sysctl_files: {description: Globs of truckctl's sysctl.d files., type: list, elements: str, default: []}
  broker_files: {description: Files the broker reads only at start (newer than the broker is drift)., type: list,
                 elements: str, default: []}
  cuts_telemetry: {description: 'Fixes that interrupt telemetry here: "firewall" and unit names.', type: list,
                   elements: str, default: []}
  hold_cuts: {description: Do not apply the fixes that interrupt telemetry (report them as held)., type: bool,
              default: false}
author: truckctl
"""

EXAMPLES = r"""
- name: Compare the node's live state with the configuration
  truck_live_state:
    ops_users: [{name: raceops, ssh_public_key: "ssh-ed25519 AAAA... ops"}]
    admin_user: root
    admin_keys: ["ssh-ed25519 AAAA... truckctl"]
    sshd_conf: /etc/ssh/sshd_config.d/10-truckctl.conf
    units: [ssh, chrony]
    allow_tcp: [22]
"""

RETURN = r"""
drift: {description: "Differences found: kind, item, expected, found, diff.", type: list, returned: always}
fixed: {description: What was done to put them back (not in check mode)., type: list, returned: always}
held: {description: "Items not fixed because they would interrupt telemetry (hold_cuts).", type: list, returned: always}
unsettable: {description: sysctl keys this node may not set (not compared)., type: list, returned: always}
"""

import datetime
import difflib
import glob
import ipaddress
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # measured without Ansible by drift's fast path (truckctl/truck/fingerprint_node.py)
    AnsibleModule = None  # type: ignore[assignment,misc]

NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync")
SSHD_ALIASES = {"prohibit-password": "without-password"}
# Keywords whose value is a list of names: `sshd -T` prints one name per line, in any order.
SSHD_NAME_LISTS = {"allowusers", "allowgroups", "denyusers", "denygroups"}
KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-ssh-|sk-ecdsa-)")
TCP_LISTEN, UDP_UNCONNECTED = "0A", "07"


@dataclass(frozen=True)
class Item:
    kind: str
    item: str
    expected: str
    found: str
    diff: str = ""
    fix: tuple[Any, ...] = field(default=(), compare=False)

    def public(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if k != "fix"}


@dataclass(frozen=True)
class Socket:
    proto: str
    address: str
    port: int
    inode: int
    remote: tuple[str, int] | None = None

    @property
    def loopback(self) -> bool:
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        return bool((mapped or ip).is_loopback)

    def label(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto} {host}:{self.port}"


Runner = Callable[[list[str]], tuple[int, str, str]]


def run_command(argv: list[str]) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def unified(expected: str, found: str, what: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(keepends=True), found.splitlines(keepends=True),
                                        fromfile=f"{what} (configured)", tofile=f"{what} (live)"))


def _decode_address(hexaddr: str) -> tuple[str, int]:
    addr, port = hexaddr.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four 32-bit words, each in host (little-endian) order
        host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        if host.startswith("::ffff:") and "." in host:
            host = host[len("::ffff:"):]
    return host, int(port, 16)


class Node:
    """The node seen through `root` (a directory standing for /) and `run` (commands): tests swap both."""

    def __init__(self, params: dict[str, Any], root: str = "/", run: Runner = run_command) -> None:
        self.p = params
        self.root = root
        self.run = run
        self._sshd: dict[str, list[str]] | None = None
        self._owners: dict[int, int] | None = None

    # ---- reading ----------------------------------------------------------------------------
    def path(self, absolute: str) -> str:
        return os.path.join(self.root, absolute.lstrip("/"))

    def read(self, absolute: str) -> str | None:
        try:
            with open(self.path(absolute), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def table(self, absolute: str) -> list[list[str]]:
        return [line.split(":") for line in (self.read(absolute) or "").splitlines() if line and line[0] != "#"]

    def configured(self, name: str, path: str) -> str | None:
        """The configuration's content of a file: rendered on the controller if given, else the node's copy."""
        rendered = (self.p.get("rendered") or {}).get(name)
        return rendered if rendered else self.read(path)

    def sshd_effective(self) -> dict[str, list[str]]:
        if self._sshd is None:
            rc, out, err = self.run(["/usr/sbin/sshd", "-T"])
            if rc != 0:
                raise RuntimeError(f"sshd -T failed: {err.strip() or out.strip()}")
            self._sshd = {}
            for line in out.splitlines():
                key, _, value = line.strip().partition(" ")
                self._sshd.setdefault(key.lower(), []).append(value.strip())
        return self._sshd

    def sockets(self) -> list[Socket]:
        found = []
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            for line in (self.read(f"/proc/net/{proto}") or "").splitlines()[1:]:
                cols = line.split()
                if len(cols) < 10:
                    continue
                local, remote, state, inode = cols[1], cols[2], cols[3], int(cols[9])
                host, port = _decode_address(local)
                peer = _decode_address(remote)
                if (proto.startswith("tcp") and state == TCP_LISTEN) or \
                        (proto.startswith("udp") and state == UDP_UNCONNECTED and peer[1] == 0):
                    found.append(Socket(proto[:3], host, port, inode))
                elif proto.startswith("tcp") and state == "01":
                    found.append(Socket("tcp-established", host, port, inode, peer))
        return found

    def owners(self) -> dict[int, int]:
        """socket inode -> pid."""
        if self._owners is None:
            self._owners = {}
            for pid in (d for d in os.listdir(self.path("/proc")) if d.isdigit()):
                fd_dir = self.path(f"/proc/{pid}/fd")
                try:
                    fds = os.listdir(fd_dir)
                except OSError:
                    continue
                for fd in fds:
                    try:
                        target = os.readlink(os.path.join(fd_dir, fd))
                    except OSError:
                        continue
                    if target.startswith("socket:["):
                        self._owners.setdefault(int(target[8:-1]), int(pid))
        return self._owners

    def unit_of(self, pid: int) -> str:
        for line in (self.read(f"/proc/{pid}/cgroup") or "").splitlines():
            parts = line.rstrip().split("/")
            for part in reversed(parts):
                if part.endswith((".service", ".scope")):
                    return part.removesuffix(".service")
        return ""

    def proc_name(self, pid: int) -> str:
        return (self.read(f"/proc/{pid}/comm") or "?").strip()

    # ---- checks -----------------------------------------------------------------------------
    def sshd(self) -> list[Item]:
        text = self.configured("sshd", self.p["sshd_conf"])
        if text is None:
            return [Item("sshd", self.p["sshd_conf"], "present", "missing")]
        wanted: dict[str, list[str]] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith("match "):
                break
            key, _, value = line.partition(" ")
            wanted.setdefault(key.lower(), []).append(value.strip())
        live = self.sshd_effective()
        items = []
        for key, values in wanted.items():
            expected = [" ".join(SSHD_ALIASES.get(v.lower(), v.lower()).split()) for v in values]
            found = [" ".join(v.lower().split()) for v in live.get(key, [])]
            if key in SSHD_NAME_LISTS:
                expected, found = sorted(" ".join(expected).split()), sorted(" ".join(found).split())
            if expected != found:
                items.append(Item("sshd", key, " | ".join(expected), " | ".join(found) or "(not set)",
                                  fix=("sshd", key)))
        return items

    def firewall(self) -> list[Item]:
        conf = self.p["nft_conf"]
        rc, expected, err = self.run(["unshare", "--net", "--", "sh", "-c", 'nft -f "$1" && nft list ruleset',
                                      "sh", self.path(conf)])
        if rc != 0:
            raise RuntimeError(f"cannot load {conf} into a throwaway network namespace: {err.strip()}")
        rc, live, err = self.run(["nft", "list", "ruleset"])
        if rc != 0:
            raise RuntimeError(f"nft list ruleset failed: {err.strip()}")
        norm = [("\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n") for text in (expected, live)]
        if norm[0] == norm[1]:
            return []
        return [Item("firewall", "live nftables ruleset", f"the ruleset of {conf}", "a different ruleset",
                     unified(norm[0], norm[1], "nft list ruleset"), fix=("firewall",))]

    def passwd(self) -> list[list[str]]:
        return [row for row in self.table("/etc/passwd") if len(row) >= 7]

    def key_files(self, user: str, home: str) -> list[str]:
        patterns = " ".join(self.sshd_effective().get("authorizedkeysfile", [".ssh/authorized_keys"])).split()
        out = []
        for pattern in patterns:
            if pattern.lower() == "none":
                continue
            expanded = pattern.replace("%%", "\0").replace("%h", home).replace("%u", user).replace("\0", "%")
            out.append(expanded if expanded.startswith("/") else os.path.join(home, expanded))
        return out

    def keys_of(self, user: str, home: str) -> dict[str, list[str]]:
        """key file -> its key lines (blank lines and comments left out)."""
        out = {}
        for path in self.key_files(user, home):
            text = self.read(path)
            if text is not None:
                out[path] = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return out

    def login_capable(self, row: list[str], shadow: dict[str, list[str]], keys: bool) -> bool:
        name, shell = row[0], row[6]
        if not shell or shell in NOLOGIN or shell.endswith("/nologin"):
            return False
        entry = shadow.get(name, [])
        expire = entry[7] if len(entry) > 7 else ""
        today = (datetime.date.today() - datetime.date(1970, 1, 1)).days
        if expire.isdigit() and int(expire) <= today:
            return False
        hashed = entry[1] if len(entry) > 1 else "x"
        password = not hashed.startswith(("!", "*")) and name not in self.p["console_accounts"]
        return password or keys

    def accounts(self) -> list[Item]:
        configured: dict[str, list[str] | None] = self.p["accounts"]
        shadow = {row[0]: row for row in self.table("/etc/shadow")}
        items = []
        for row in self.passwd():
            name, home, shell = row[0], row[5], row[6]
            key_files = self.keys_of(name, home)
            has_keys = any(key_files.values())
            if not self.login_capable(row, shadow, has_keys):
                continue
            if name not in configured:
                how = "keys" if has_keys else "password"
                items.append(Item("account", name, "no login", f"can log in ({shell}, {how})", fix=("account", name)))
                continue
            wanted = configured[name]
            if wanted is None:
                continue
            wanted_ids = {key_id(k) for k in wanted}
            for path, lines in key_files.items():
                extra = [line for line in lines if key_id(line) not in wanted_ids]
                if extra:
                    items.append(Item("authorized-keys", f"{name} {path}", f"{len(wanted)} configured key(s)",
                                      f"{len(extra)} extra key(s)", "".join(f"+{key_label(k)}\n" for k in extra),
                                      fix=("keys", path, tuple(wanted_ids))))
            present = {key_id(line) for lines in key_files.values() for line in lines}
            missing = [k for k in wanted if key_id(k) not in present]
            if missing:
                items.append(Item("authorized-keys", name, f"{len(wanted)} configured key(s)",
                                  f"{len(missing)} missing", "".join(f"-{key_label(k)}\n" for k in missing)))
        return items

    def sudo(self) -> list[Item]:
        items = []
        allowed = set(self.p["sudoers_files"])
        directory = self.path("/etc/sudoers.d")
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        for name in names:
            if "." in name or name.endswith("~") or name in allowed:
                continue  # sudo itself skips names with a dot or a trailing ~
            text = self.read(f"/etc/sudoers.d/{name}") or ""
            items.append(Item("sudo", f"/etc/sudoers.d/{name}", "no such file", "a sudoers file",
                              unified("", text, f"/etc/sudoers.d/{name}"), fix=("sudoers-file", name)))
        texts = [self.read("/etc/sudoers") or ""] + [self.read(f"/etc/sudoers.d/{n}") or "" for n in names
                                                     if n in allowed]
        granted = sorted({m.group(1) for text in texts for m in re.finditer(r"^\s*%(\S+)\s", text, re.M)})
        groups = {row[0]: row for row in self.table("/etc/group") if len(row) >= 4}
        for group in granted:
            row = groups.get(group)
            if row is None:
                continue
            members = {m for m in row[3].split(",") if m}
            members |= {p[0] for p in self.passwd() if p[3] == row[2]}
            for member in sorted(members - set(self.p["sudo_members"])):
                items.append(Item("sudo", f"group {group}", f"no member beyond {self.p['sudo_members'] or 'none'}",
                                  f"member {member}", fix=("sudo-member", member, group)))
        return items

    def listeners(self, sockets: list[Socket]) -> list[Item]:
        allowed_units = set(self.p["units"]) | {"ssh"}
        allowed = {"tcp": set(self.p["allow_tcp"]), "udp": set(self.p["allow_udp"])}
        items, seen = [], set()
        for sock in sockets:
            if sock.proto not in allowed:
                continue
            pid = self.owners().get(sock.inode)
            unit = self.unit_of(pid) if pid else ""
            reasons = []
            if unit not in allowed_units:
                reasons.append(f"unit {unit or '?'} is not one the roles run")
            if not sock.loopback and sock.port not in allowed[sock.proto]:
                reasons.append(f"{sock.proto} port {sock.port} is not on the role's allow-list")
            key = (sock.label(), unit)
            if reasons and key not in seen:
                seen.add(key)
                who = f"{self.proc_name(pid)} (pid {pid}, {unit or 'no unit'})" if pid else "unknown process"
                items.append(Item("listener", sock.label(), "nothing listening (not on the allow-list)",
                                  f"{who}: {'; '.join(reasons)}", fix=("listener", unit, pid)))
        return items

    def time_sources(self) -> list[Item]:
        text = self.configured("chrony", self.p["chrony_conf"])
        if text is None:
            return []
        configured, servers = set(), set()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("server", "pool", "peer"):
                configured.add(parts[1])
                if parts[0] != "pool":
                    servers.add(parts[1])
        rc, out, err = self.run(["chronyc", "-c", "-N", "sources"])
        if rc != 0:
            return [Item("time-source", "chronyd", "running with its sources", f"chronyc failed: {err.strip()}",
                         fix=("restart", "chrony"))]
        live = {cols[2] for cols in (line.split(",") for line in out.splitlines()) if len(cols) > 2}
        items = [Item("time-source", name, "not a source", "used by chronyd", fix=("restart", "chrony"))
                 for name in sorted(live - configured)]
        items += [Item("time-source", name, "a source", "not used by chronyd", fix=("restart", "chrony"))
                  for name in sorted(servers - live)]
        return items

    def broker(self, sockets: list[Socket], wait: float = 3.0) -> list[Item]:
        conf = self.p["broker_conf"]
        text = self.configured("broker", conf) if conf else None
        if text is None:
            return []
        unit = self.p["broker_unit"]
        expected, bridges = set(), []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "listener":
                address = parts[2] if len(parts) > 2 and parts[2] not in ("0.0.0.0", "::") else "*"
                expected.add(f"{address}:{parts[1]}")
            elif len(parts) >= 2 and parts[0] == "address":
                bridges.append(parts[1])
        pids = {pid for inode, pid in self.owners().items() if self.unit_of(pid) == unit}
        inodes = {inode for inode, pid in self.owners().items() if pid in pids}
        found = {f"{'*' if s.address in ('0.0.0.0', '::') else s.address}:{s.port}"
                 for s in sockets if s.proto == "tcp" and s.inode in inodes}
        items = []
        if found != expected:
            items.append(Item("broker", "listeners", ", ".join(sorted(expected)), ", ".join(sorted(found)) or "none",
                              unified("".join(f"{x}\n" for x in sorted(expected)),
                                      "".join(f"{x}\n" for x in sorted(found)), "mosquitto listeners"),
                              fix=("restart", unit)))
        items += self.broker_process(unit, conf)
        deadline = time.monotonic() + wait
        for bridge in bridges:
            while not self.bridge_connected(bridge, inodes) and time.monotonic() < deadline:
                time.sleep(0.3)
                self._owners = None
                inodes = {inode for inode, pid in self.owners().items() if pid in pids}
            if not self.bridge_connected(bridge, inodes):
                items.append(Item("broker", f"bridge to {bridge}", "connected", "not connected",
                                  fix=("restart", unit)))
        return items

    def broker_process(self, unit: str, conf: str) -> list[Item]:
        rc, out, _ = self.run(["systemctl", "show", "--property=MainPID", "--value", unit])
        pid = out.strip()
        if rc != 0 or not pid.isdigit() or pid == "0":
            return [Item("broker", unit, "running", "not running", fix=("restart", unit))]
        argv = (self.read(f"/proc/{pid}/cmdline") or "").split("\0")
        loaded = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else "(built-in defaults)"
        if loaded != conf:
            return [Item("broker", "configuration loaded", conf, loaded, fix=("restart", unit))]
        try:
            started = os.stat(self.path(f"/proc/{pid}")).st_mtime
        except OSError:
            return []
        for path in [conf, *self.p.get("broker_files", [])]:
            try:
                changed = os.stat(self.path(path)).st_mtime
            except OSError:
                continue
            if changed > started + 1:
                return [Item("broker", "configuration loaded", f"{path} as it is now",
                             "an older version (changed after the broker started)", fix=("restart", unit))]
        return []

    def bridge_connected(self, bridge: str, inodes: set[int]) -> bool:
        host, _, port = bridge.rpartition(":")
        try:
            targets = {info[4][0] for info in socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)}
        except (OSError, ValueError):
            return False
        return any(s.remote is not None and s.remote[1] == int(port) and s.remote[0] in targets
                   for s in self.sockets() if s.proto == "tcp-established" and s.inode in inodes)

    def sysctl(self) -> tuple[list[Item], list[str]]:
        items, unsettable = [], []
        for pattern in self.p["sysctl_files"]:
            for path in sorted(glob.glob(self.path(pattern))):
                with open(path, encoding="utf-8") as handle:
                    lines = handle.read().splitlines()
                for line in lines:
                    line = line.strip()
                    if not line or line[0] in "#;" or "=" not in line:
                        continue
                    key, _, value = line.partition("=")
                    key = key.strip().lstrip("-").replace("/", ".")
                    proc = self.path("/proc/sys/" + key.replace(".", "/"))
                    live = (self.read("/proc/sys/" + key.replace(".", "/")) or "").split()
                    if live == value.split():
                        continue
                    if not os.access(proc, os.W_OK):
                        unsettable.append(key)
                        continue
                    items.append(Item("sysctl", key, " ".join(value.split()), " ".join(live) or "(missing)",
                                      fix=("sysctl", proc, " ".join(value.split()))))
        return items, unsettable

    def measure(self) -> tuple[list[Item], list[str]]:
        sockets = self.sockets()
        items = self.sshd() + self.firewall() + self.accounts() + self.sudo() + self.listeners(sockets)
        items += self.time_sources() + self.broker(sockets)
        sysctl, unsettable = self.sysctl()
        return items + sysctl, unsettable

    # ---- fixing -----------------------------------------------------------------------------
    def cuts(self, item: Item) -> bool:
        """Whether fixing `item` would interrupt telemetry on this node."""
        cutting = set(self.p.get("cuts_telemetry", []))
        action = item.fix
        if not action:
            return False
        if action[0] == "firewall":
            return "firewall" in cutting
        if action[0] in ("restart", "listener"):
            return action[1] in cutting
        return False

    def fix(self, items: list[Item]) -> list[str]:
        done: list[str] = []
        restarts: list[str] = []
        for item in items:
            action = item.fix
            if not action or (self.p.get("hold_cuts") and self.cuts(item)):
                continue
            kind = action[0]
            if kind == "sshd":
                done += self.fix_sshd(action[1])
                restarts.append("reload:ssh")
            elif kind == "firewall":
                self.must(["nft", "-f", self.p["nft_conf"]], done, f"reloaded the ruleset from {self.p['nft_conf']}")
            elif kind == "keys":
                path, wanted = action[1], set(action[2])
                text = self.read(path) or ""
                kept = [line for line in text.splitlines(keepends=True)
                        if line.strip().startswith("#") or not line.strip() or key_id(line) in wanted]
                with open(self.path(path), "w", encoding="utf-8") as handle:
                    handle.write("".join(kept))
                done.append(f"removed extra keys from {path}")
            elif kind == "account":
                self.must(["usermod", "--lock", "--expiredate", "1", "--shell", "/usr/sbin/nologin", action[1]],
                          done, f"locked account {action[1]}")
            elif kind == "sudoers-file":
                os.unlink(self.path(f"/etc/sudoers.d/{action[1]}"))
                done.append(f"removed /etc/sudoers.d/{action[1]}")
            elif kind == "sudo-member":
                self.must(["gpasswd", "--delete", action[1], action[2]], done,
                          f"removed {action[1]} from group {action[2]}")
            elif kind == "listener":
                unit, pid = action[1], action[2]
                if unit in self.p["units"] or unit == "ssh":
                    restarts.append(f"restart:{unit}")
                elif unit:
                    name = unit if unit.endswith(".scope") else unit + ".service"
                    self.must(["systemctl", "stop", name], done, f"stopped {name}")
                elif pid:
                    os.kill(pid, 15)
                    done.append(f"stopped pid {pid}")
            elif kind == "restart":
                restarts.append(f"restart:{action[1]}")
            elif kind == "sysctl":
                with open(action[1], "w", encoding="utf-8") as handle:
                    handle.write(action[2] + "\n")
                done.append(f"set {item.item} = {action[2]}")
        for entry in dict.fromkeys(restarts):
            verb, unit = entry.split(":", 1)
            self.must(["systemctl", verb, unit], done, f"{verb}ed {unit}")
        return done

    def must(self, argv: list[str], done: list[str], what: str) -> None:
        rc, out, err = self.run(argv)
        if rc != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {(err or out).strip()}")
        done.append(what)

    def fix_sshd(self, key: str) -> list[str]:
        """Comment out `key` wherever else it is set (outside Match blocks): truckctl's drop-in then wins."""
        ours = os.path.realpath(self.path(self.p["sshd_conf"]))
        files = [self.path("/etc/ssh/sshd_config"), *sorted(glob.glob(self.path("/etc/ssh/sshd_config.d/*.conf")))]
        done = []
        for path in files:
            if os.path.realpath(path) == ours:
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    lines = handle.read().splitlines(keepends=True)
            except OSError:
                continue
            changed, in_match = False, False
            for i, line in enumerate(lines):
                words = line.split()
                if words and words[0].lower() == "match":
                    in_match = True
                if not in_match and words and words[0].lower() == key:
                    lines[i] = "# disabled by truckctl drift --fix: " + line
                    changed = True
            if changed:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write("".join(lines))
                done.append(f"commented out {key} in {path.removeprefix(self.root.rstrip('/'))}")
        return done


def configured_accounts(params: dict[str, Any]) -> dict[str, list[str] | None]:
    """Account -> its exact keys; None: may log in, keys not checked (the admin account, keys not given)."""
    accounts: dict[str, list[str] | None] = {u["name"]: [u["ssh_public_key"]] for u in params["ops_users"]}
    admin, keys = params["admin_user"], params.get("admin_keys")
    accounts[admin] = None if keys is None else [*(accounts.get(admin) or []), *keys]
    return accounts


def key_id(line: str) -> str:
    """A key line's identity: its type and key material (options and comment left out)."""
    words = line.split()
    for i, word in enumerate(words):
        if KEY_TYPE.match(word) and i + 1 < len(words):
            return f"{word} {words[i + 1]}"
    return line.strip()


def key_label(line: str) -> str:
    words = key_id(line).split()
    comment = line.split()[-1] if len(line.split()) > 2 else ""
    return f"{words[0]} ...{words[-1][-12:]} {comment}".rstrip()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "ops_users": {"type": "list", "elements": "dict", "required": True},
            "admin_user": {"type": "str", "default": "root"},
            "admin_keys": {"type": "list", "elements": "str"},
            "console_accounts": {"type": "list", "elements": "str", "default": ["root"]},
            "sudoers_files": {"type": "list", "elements": "str", "default": ["README"]},
            "sudo_members": {"type": "list", "elements": "str", "default": []},
            "sshd_conf": {"type": "str", "required": True},
            "nft_conf": {"type": "str", "default": "/etc/nftables.conf"},
            "chrony_conf": {"type": "str", "default": "/etc/chrony/chrony.conf"},
            "broker_conf": {"type": "str", "default": ""},
            "broker_unit": {"type": "str", "default": "mosquitto"},
            "units": {"type": "list", "elements": "str", "required": True},
            "allow_tcp": {"type": "list", "elements": "int", "default": []},
            "allow_udp": {"type": "list", "elements": "int", "default": []},
            "sysctl_files": {"type": "list", "elements": "str", "default": []},
            "rendered": {"type": "dict", "default": {}},
            "broker_files": {"type": "list", "elements": "str", "default": []},
            "cuts_telemetry": {"type": "list", "elements": "str", "default": []},
            "hold_cuts": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    node = Node({**module.params, "accounts": configured_accounts(module.params)})
    try:
        items, unsettable = node.measure()
        fixed = node.fix(items) if items and not module.check_mode else []
    except (RuntimeError, OSError) as exc:
        module.fail_json(msg=str(exc))
    drift = [{**item.public(), "cuts_telemetry": node.cuts(item)} for item in items]
    held = [entry for entry in drift if entry["cuts_telemetry"] and module.params["hold_cuts"]]
    result: dict[str, Any] = {"changed": bool(items), "drift": drift, "fixed": fixed, "held": held,
                              "unsettable": unsettable}
    if module._diff and items:
        result["diff"] = {"prepared": "".join(f"{i.kind}: {i.item}: expected {i.expected}, found {i.found}\n"
                                              for i in items)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
