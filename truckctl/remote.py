"""SSH to truck nodes, always with host-key checking on against a known_hosts truckctl controls."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType


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
    kept_in: Path | None = None  # a KeptConnections' directory: calls ride on one SSH master per node


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
    if conn.kept_in is not None:  # ssh keeps the first value it reads: these come before the -F file's
        argv[1:1] = ["-o", "ControlMaster=auto", "-o", f"ControlPath={conn.kept_in}/%C",
                     "-o", f"ControlPersist={KEPT_PERSIST_S}", *KEPT_ALIVE]
    return [*argv, f"{user or conn.user}@{address}", command or "true"]


# A kept master outlives its last call by KEPT_PERSIST_S (its owner ends it sooner with close(): this bounds
# what a killed owner leaves behind), and a cut link ends it within 10 s.
KEPT_PERSIST_S = 30
KEPT_ALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2")


class KeptConnections:
    """One SSH master per node for a caller that asks again and again (`status --watch`, the portal, a
    held team lock): each call after the first rides on it instead of a handshake of its own (~30 ms of
    CPU on the node and as much here). The sockets live in a private directory of this process
    (mkdtemp: 0700); `close()` ends every master and removes it."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="truckctl-kept-"))

    def over(self, conn: Connection) -> Connection:
        return replace(conn, kept_in=self.directory)

    def close(self) -> None:
        for socket_path in self.directory.glob("*"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-O", "exit", "node"],
                               capture_output=True, timeout=5, check=False, stdin=subprocess.DEVNULL)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> KeptConnections:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _control(conn: Connection, address: str, command: str) -> int:
    """`ssh -O COMMAND` to the kept master of one node (no network: it talks to the local master); its exit code."""
    argv = ssh_argv(conn, address, None)
    try:
        return subprocess.run([*argv[:-2], "-O", command, argv[-2]], capture_output=True, timeout=5, check=False,
                              stdin=subprocess.DEVNULL).returncode
    except (OSError, subprocess.SubprocessError):
        return 255


def kept_master(conn: Connection, address: str) -> bool:
    """Whether a call to this node would ride on a live kept master (a few ms, nothing sent to the node)."""
    return conn.kept_in is not None and _control(conn, address, "check") == 0


def end_kept(conn: Connection, address: str) -> None:
    """End the kept master to one node (a call over it failed or went silent: the next one connects anew)."""
    if conn.kept_in is not None:
        _control(conn, address, "exit")


@dataclass(frozen=True)
class Bounded:
    """What a command said, read within bounds: `rc` None when it was ended (too slow or too long)."""

    rc: int | None
    stdout: str
    stderr: str
    too_long: bool = False


def read_bounded(argv: list[str], stdin: bytes, limit: int, timeout: float) -> Bounded:
    """Run a command, reading at most `limit` bytes of each of its outputs for at most `timeout` seconds
    (a node's answer is data from a machine that may be hostile: it never decides how much is held here)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return Bounded(255, "", f"cannot run {argv[0]}: {exc.strerror}")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except OSError:
        pass
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
    deadline = time.monotonic() + timeout
    open_fds, ended, too_long = list(chunks), False, False
    while open_fds and not ended:
        left = deadline - time.monotonic()
        ready = select.select(open_fds, [], [], left)[0] if left > 0 else []
        ended = not ready
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.remove(fd)
            chunks[fd] += data
            too_long = too_long or len(chunks[fd]) > limit
            ended = ended or too_long
    if ended:
        proc.kill()
    rc = proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    out, err = (bytes(chunks[fd]).decode("utf-8", "replace") for fd in (out_fd, err_fd))
    return Bounded(None if ended else rc, out, err, too_long)


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
