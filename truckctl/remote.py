"""SSH to truck nodes, always with host-key checking on against a known_hosts truckctl controls."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Connection:
    """How to reach the nodes: user, private key and the known_hosts that pins their host keys."""

    user: str
    private_key: Path
    known_hosts: Path


def ssh_argv(conn: Connection, address: str, command: str, connect_timeout: int = 2) -> list[str]:
    return [
        "ssh", "-i", str(conn.private_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={conn.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "LogLevel=ERROR", "-F", "/dev/null", f"{conn.user}@{address}", command,
    ]


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
    if "IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        return "host key does not match the pinned one (another machine on this address?)"
    if "Permission denied" in text:
        return "SSH key refused"
    if "timed out" in text or "No route" in text or "unreachable" in text or "refused" in text:
        return "unreachable"
    return text[:160] or "SSH failed"
