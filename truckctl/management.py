"""The management path: how an operator outside the truck reaches its nodes (DESIGN section 14).

The race file's `management.jump` lists SSH jump hosts (the cloud VPN gateway, a named bastion; the
first is dialled first), each with its host, port, user and pinned host key(s), all validated data.
An operator chooses the path with TRUCKCTL_VIA=management, or once per state directory (the file
`via` in it, which `truckctl lab operator add` writes for the lab's outside operator); by default
(`direct`) nothing changes: nodes are reached at their LAN addresses.

Through the path every SSH connection (truckctl's own, the prechecks', status', Ansible's) uses a
`ssh_config` truckctl writes for the run from the model alone: one `Host` per hop chained by
`ProxyJump`, and for every host the run's known_hosts (the target's pinned node keys plus every
hop's), `StrictHostKeyChecking yes`, batch mode and only the run's key. ssh passes its `-F` file,
and nothing else from its command line, to the ssh it starts for each jump: that is why the file
exists (with `-F /dev/null` and `-o` options the hops would read ~/.ssh/known_hosts and ask). It
never includes the user's or the system's ssh_config, and no string of it comes from anywhere but
the validated model and truckctl's own paths.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.private_file import write_private
from truckctl.remote import Connection, Hop, control_dir, explain_ssh_failure, ssh_argv

if TYPE_CHECKING:
    from truckctl.config.model import JumpHop, Stage
    from truckctl.project import Project

VIA_ENV = "TRUCKCTL_VIA"
VIA_FILE = "via"  # in the state directory: this machine's choice
DIRECT = "direct"
MANAGEMENT = "management"
HOP_PREFIX = "truckctl-hop-"
HOP_TIMEOUT_S = 5
HOP_PERSIST_S = 30  # a hop's shared connection outlives its last user by this much (like Ansible's masters)
NODE_SSH_PORT = 22


def via(state_dir: Path) -> str:
    """`direct` or `management`: the environment first, then the state directory's choice."""
    value = os.environ.get(VIA_ENV)
    where = VIA_ENV
    if value is None:
        file = state_dir / VIA_FILE
        if not file.is_file():
            return DIRECT
        value, where = file.read_text(errors="replace").strip(), str(file)
    if value not in (DIRECT, MANAGEMENT):
        raise TruckctlError.single("unknown-via", f"expected {DIRECT} or {MANAGEMENT}, got {value[:40]!r}", where,
                                   ExitCode.USAGE)
    return value


def hops(jump: list[JumpHop]) -> tuple[Hop, ...]:
    return tuple(Hop(h.name, f"{HOP_PREFIX}{i + 1}", h.host, h.port, h.user) for i, h in enumerate(jump))


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: plain on port 22, `[host]:port` otherwise (what ssh looks up)."""
    return host if port == NODE_SSH_PORT else f"[{host}]:{port}"


def pinned_names(known_hosts_text: str) -> set[str]:
    """Every host name a known_hosts file pins (plain entries; markers and hashed names are not ours)."""
    names: set[str] = set()
    for line in known_hosts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith(("#", "@", "|")):
            names.update(fields[0].split(","))
    return names


def known_hosts_text(base: str, jump: list[JumpHop]) -> str:
    """The run's known_hosts: the target's pinned node keys, then every hop's pinned keys from the model."""
    lines = [line for line in base.splitlines() if line.strip()]
    for hop in jump:
        lines += [f"{known_hosts_name(hop.host, hop.port)} {key}" for key in hop.host_keys]
    return "\n".join(lines) + "\n"


def ssh_config_text(path_hops: tuple[Hop, ...], private_key: str, known_hosts: str,
                    control_dir: str | None = None) -> str:
    """ssh_config for the run. ssh keeps the first value it reads, so each hop's block comes first and
    `Host *` (every node, and every hop) last. Paths are quoted with `ssh_path`'s rules (checked by the
    caller); every other value is a validated host name, user name or port."""
    out = ["# Written by truckctl for one run through the management path; not read by anything else."]
    for index, hop in enumerate(path_hops):
        out += [f"Host {hop.alias}", f"  HostName {hop.host}", f"  Port {hop.port}", f"  User {hop.user}",
                f"  ProxyJump {path_hops[index - 1].alias if index else 'none'}"]
        if control_dir is not None:  # one connection per hop, shared by every node's (`ssh -W` through it)
            out += ["  ControlMaster auto", f'  ControlPath "{control_dir}/%C"', f"  ControlPersist {HOP_PERSIST_S}",
                    "  ServerAliveInterval 5", "  ServerAliveCountMax 2"]  # a cut link ends it within 10 s
    out += ["Host *", f"  ProxyJump {path_hops[-1].alias}", f'  IdentityFile "{private_key}"', "  IdentitiesOnly yes",
            f'  UserKnownHostsFile "{known_hosts}"', "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes", "  CheckHostIP no", "  UpdateHostKeys no", "  BatchMode yes",
            f"  ConnectTimeout {HOP_TIMEOUT_S}", "  LogLevel ERROR", "  ForwardAgent no", "  ForwardX11 no",
            "  PermitLocalCommand no", "  ControlPath none"]
    return "\n".join(out) + "\n"


def missing_pins(stage: Stage, base_known_hosts: str) -> list[int]:
    """Indexes of the hops no key pins (neither the model nor the target's known_hosts)."""
    assert stage.management is not None
    pinned = pinned_names(base_known_hosts)
    return [i for i, hop in enumerate(stage.management.jump)
            if not hop.host_keys and known_hosts_name(hop.host, hop.port) not in pinned]


def through_path(project: Project, stage: Stage, direct: Connection) -> Connection:
    """The connection through the management path: the run's ssh_config and known_hosts written (mode
    0600, named by their content, under <state>/ssh/) and the hops recorded for the prechecks."""
    from truckctl.truck.plan import ssh_path

    if stage.management is None:
        from truckctl.config.loader import load_race

        raise TruckctlError.single(
            "no-management-path", f"{VIA_ENV}={MANAGEMENT} needs the race file's management.jump (the jump hosts "
            "operators outside the truck go through); none is set", load_race(project).doc.where(("race",)),
            ExitCode.INVALID_CONFIG)
    base = direct.known_hosts.read_text() if direct.known_hosts.is_file() else ""
    unpinned = missing_pins(stage, base)
    if unpinned:
        from truckctl.config.loader import load_race

        doc = load_race(project).doc
        raise TruckctlError([Problem(
            "unpinned-hop", f"no pinned host key for jump hop {stage.management.jump[i].name!r} "
            f"({stage.management.jump[i].host}): add it to host_keys (ssh-keyscan over a trusted link) so host-key "
            "checking stays on at every hop", doc.where(("management", "jump", i, "host_keys"))) for i in unpinned],
            ExitCode.INVALID_CONFIG)
    path_hops = hops(stage.management.jump)
    known = known_hosts_text(base, stage.management.jump)
    digest = hashlib.sha256(known.encode())
    key = ssh_path(direct.private_key, "the SSH private key")
    directory = project.state_dir / "ssh"
    known_file = directory / f"known_hosts-{digest.hexdigest()[:16]}"
    config = ssh_config_text(path_hops, key, ssh_path(known_file.resolve(), "the run's known_hosts"),
                             ssh_path(control_dir(project.state_dir), "the hops' control directory"))
    digest.update(config.encode())
    config_file = directory / f"config-{digest.hexdigest()[:16]}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for file, text in ((known_file, known), (config_file, config)):
        if not file.is_file() or file.read_text() != text:
            write_private(file, text.encode(), 0o600)
    return replace(direct, known_hosts=known_file, hops=path_hops, ssh_config=config_file)


def apply(project: Project, stage: Stage, direct: Connection) -> Connection:
    """The connection this operator uses: direct, or through the management path when chosen."""
    return through_path(project, stage, direct) if via(project.state_dir) == MANAGEMENT else direct


@dataclass(frozen=True)
class HopProbe:
    hop: Hop
    ok: bool
    detail: str


def probe_hops(conn: Connection, first_node: str) -> list[HopProbe]:
    """Each hop in turn must forward to what comes after it (the next hop, or a node's SSH port): an
    `ssh -W` through it must bring back that SSH server's banner. Stops at the first hop that fails,
    so the failure is that hop's (unreachable, host key changed, auth refused, forwarding refused)."""
    probes: list[HopProbe] = []
    for index, hop in enumerate(conn.hops):
        after = (f"{conn.hops[index + 1].host}:{conn.hops[index + 1].port}" if index + 1 < len(conn.hops)
                 else f"{first_node}:{NODE_SSH_PORT}")
        argv = ssh_argv(conn, hop.alias, None, HOP_TIMEOUT_S, user=hop.user, stdio_forward=after)
        ok, detail = _banner(argv)
        probes.append(HopProbe(hop, ok, detail))
        if not ok:
            break
    return probes


def _banner(argv: list[str]) -> tuple[bool, str]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = _first_line(proc, HOP_TIMEOUT_S * 3)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if out.startswith(b"SSH-"):
        return True, "ok"
    text = err.decode(errors="replace")
    return False, explain_ssh_failure(text) if text.strip() else "no SSH server answered behind it"


def _first_line(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[bytes, bytes]:
    """The first line `ssh -W` brings back (the far server's banner), or what ssh said before it ended."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = b"", b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                chunk = os.read(key.fd, 4096)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    out += chunk
                    if b"\n" in out:
                        return out, err
                else:
                    err += chunk
    return out, err
