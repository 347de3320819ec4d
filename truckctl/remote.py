"""SSH to truck nodes, always with host-key checking on against a known_hosts truckctl controls."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hop:
    """One jump host of the management path, as SSH dials it (`alias` is its Host in ssh_config)."""

    name: str
    alias: str
    host: str
    port: int
    user: str

    def describe(self) -> str:
        return f"hop {self.name!r} ({self.user}@{self.host}:{self.port})"


@dataclass(frozen=True)
class Connection:
    """How to reach the nodes: user, private key and the known_hosts that pins their host keys.

    Through the management path (`hops`), `ssh_config` is the file truckctl wrote for the run from the
    validated model (truckctl.management): ssh hands its `-F` file, and nothing else of its command
    line, to the ssh it starts for each jump, so every hop's pinning lives there. Direct: no file at all
    (`-F /dev/null`)."""

    user: str
    private_key: Path
    known_hosts: Path
    hops: tuple[Hop, ...] = ()
    ssh_config: Path | None = None


# truckctl's own calls (probes, prechecks, the team lock, the smoke check) carry no secret: X25519 first.
# OpenSSH 9's default, the post-quantum hybrid sntrup761x25519, costs ~70 ms of CPU per handshake on each
# side, and status opens ten at once on 2 cores (0.9 s -> 0.45 s). It stays next, for a server that insists;
# Ansible's connections, which carry the secrets, keep OpenSSH's default order.
KEX_ALGORITHMS = "curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com"


def ssh_argv(conn: Connection, address: str, command: str | None, connect_timeout: int = 2, *,
             user: str | None = None, stdio_forward: str | None = None) -> list[str]:
    """The one place that builds an ssh command line. `stdio_forward` (host:port, with no command):
    `-W`, what a hop probe uses; `user` overrides the connection's (a hop's own account). Through jumps
    the far server's banner comes only after every hop's handshake: each hop adds a `connect_timeout`."""
    connect_timeout *= 1 + len(conn.hops)
    argv = [
        "ssh", "-i", str(conn.private_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={conn.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "LogLevel=ERROR", "-o", f"KexAlgorithms={KEX_ALGORITHMS}",
        "-F", str(conn.ssh_config) if conn.ssh_config else "/dev/null",
    ]
    if stdio_forward is not None:
        return [*argv, "-W", stdio_forward, f"{user or conn.user}@{address}"]
    return [*argv, f"{user or conn.user}@{address}", command or "true"]


def ssh_run(conn: Connection, address: str, command: str, timeout: float = 15) -> tuple[int, str]:
    """Run a command on a node; (255, message) when SSH itself fails or times out."""
    try:
        proc = subprocess.run(ssh_argv(conn, address, command), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return 255, "ssh timed out"
    return proc.returncode, (proc.stdout if proc.returncode != 255 else proc.stderr).strip()


def explain_ssh_failure(stderr: str) -> str:
    """One short reason from ssh's own complaint (exit 255)."""
    text = " ".join(stderr.split())
    if "host key is known for" in text:
        return "no pinned host key for it"
    if "IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        return "host key does not match the pinned one (another machine on this address?)"
    if "Permission denied" in text:
        return "SSH key refused"
    if "administratively prohibited" in text or "open failed" in text or "open refused" in text:
        return "the jump host refused to forward the connection"
    if "timed out" in text or "No route" in text or "unreachable" in text or "refused" in text:
        return "unreachable"
    return text[:160] or "SSH failed"
