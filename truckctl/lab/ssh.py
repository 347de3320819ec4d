"""SSH for the lab with host-key checking ON: the lab makes every node's host key, so it can vouch for it.

Keys are generated in-process (no ssh-keygen round trips) and kept in the state directory across
`down`, so a rebuilt lab presents the same host keys and the known_hosts stays valid.
"""

from __future__ import annotations

import os
from pathlib import Path

from truckctl.private_file import write_private
from truckctl.remote import Connection, ssh_argv, ssh_run

__all__ = ["LabConnection", "ensure_keypair", "ssh_argv", "ssh_run", "write_known_hosts"]

USER = "root"


# The lab's connection is the generic one: the truck tier cannot tell a lab node from a real one.
LabConnection = Connection


def ensure_keypair(private: Path, comment: str) -> str:
    """An ed25519 key in OpenSSH format (mode 0600) with its .pub; returns the public line."""
    public = private.with_name(private.name + ".pub")
    if private.exists() and public.exists():
        return public.read_text().strip()
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(private.parent, 0o700)
    from cryptography.hazmat.primitives import serialization  # ~26 ms: only when a key is made
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption()), 0o600)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode() + f" {comment}"
    write_private(public, (line + "\n").encode(), 0o644)
    return line


def key_type_and_blob(public_line: str) -> str:
    return " ".join(public_line.split()[:2])


def write_known_hosts(path: Path, entries: list[tuple[list[str], str]]) -> None:
    """One line per node: its name and address(es), then its host key (unhashed, readable)."""
    lines = [f"{','.join(names)} {key_type_and_blob(public)}" for names, public in entries]
    write_private(path, ("\n".join(lines) + "\n").encode(), 0o644)
