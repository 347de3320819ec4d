"""SSH to truck nodes, always with host-key checking on against a known_hosts truckctl controls."""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from truckctl.errors import TruckctlError
from truckctl.processes import alive, start_time


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
    (mkdtemp: 0700); `close()` ends every master and removes it.

    `lasting_for(state_dir)`: masters that outlast the process, for the next one-shot command of this operator
    (`truckctl status`), as Ansible's and the management path's do: in `control_dir(state_dir)`, one
    subdirectory per connection (direct or through the management path, its key and pinned host keys),
    never ended on the way out; each ends KEPT_PERSIST_S after its last use, within 10 s of a dead link,
    or at `truckctl lab down`."""

    def __init__(self, lasting_in: Path | None = None) -> None:
        self.lasting = lasting_in is not None
        if not self.lasting:
            sweep_abandoned()
        self.directory = lasting_in or Path(tempfile.mkdtemp(prefix=_kept_prefix()))

    @classmethod
    def lasting_for(cls, state_dir: Path) -> KeptConnections:
        return cls(control_dir(state_dir))

    def over(self, conn: Connection) -> Connection:
        if not self.lasting:
            return replace(conn, kept_in=self.directory)
        identity = "\0".join(str(part) for part in (conn.user, conn.private_key, conn.known_hosts, conn.ssh_config))
        directory = self.directory / ("n" + hashlib.sha256(identity.encode()).hexdigest()[:8])
        _own_directory(directory)
        return replace(conn, kept_in=directory)

    def close(self) -> None:
        end_masters(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> KeptConnections:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if not self.lasting:
            self.close()


KEPT_PREFIX = "truckctl-kept-"


def _kept_prefix() -> str:
    """A private directory's name says its owner (pid and start time): a killed owner's can be told apart."""
    return f"{KEPT_PREFIX}{os.getpid()}-{start_time(os.getpid())}-"


def sweep_abandoned() -> list[Path]:
    """End the masters of the private directories whose owner died without closing them (SIGKILL, power
    loss), and remove those directories; another owner's (alive, or not this user's) are left alone."""
    swept = []
    for directory in Path(tempfile.gettempdir()).glob(f"{KEPT_PREFIX}*-*-*"):
        pid, start, _ = directory.name.removeprefix(KEPT_PREFIX).split("-", 2)
        if not (pid.isdigit() and start.isdigit()) or alive(int(pid), int(start)):
            continue
        with contextlib.suppress(OSError):
            info = directory.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                end_masters(directory)
                shutil.rmtree(directory, ignore_errors=True)
                swept.append(directory)
    return swept


def end_masters(directory: Path) -> int:
    """End every SSH master whose socket is in `directory` or below (nothing is sent to a node: each is
    told over its socket); returns how many were asked to end."""
    ended = 0
    for socket_path in sorted(directory.rglob("*")) if directory.is_dir() else []:
        if not socket_path.is_socket():
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-O", "exit", "node"],
                           capture_output=True, timeout=5, check=False, stdin=subprocess.DEVNULL)
            ended += 1
    return ended


def control_path(state_dir: Path) -> Path:
    """Where this operator's lasting SSH masters have their sockets (see control_dir), not created."""
    base = Path(tempfile.gettempdir()) / f"truckctl-ssh-{os.getuid()}"
    return base / hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]


def control_dir(state_dir: Path) -> Path:
    """Where the lasting SSH masters (the management path's hops, `status`'s nodes) have their sockets:
    short (a Unix socket path is at most 107 bytes), one per state directory (operators never share a
    connection), this user's own and nobody else's (a directory planted by another user is refused)."""
    path = control_path(state_dir)
    for directory in (path.parent, path):
        _own_directory(directory)
    return path


def _own_directory(directory: Path) -> None:
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise TruckctlError.single("unsafe-control-dir", f"{directory} is not a directory of this user's alone: "
                                   "remove it (truckctl keeps its SSH connections' sockets there)", str(directory))


def _control(conn: Connection, address: str, command: str) -> int:
    """`ssh -O COMMAND` to the kept master of one node (no network: it talks to the local master); its exit code."""
    argv = ssh_argv(conn, address, None)
    try:
        return subprocess.run([*argv[:-2], "-O", command, argv[-2]], capture_output=True, timeout=5, check=False,
                              stdin=subprocess.DEVNULL).returncode
    except (OSError, subprocess.SubprocessError):
        return 255


def kept_master(conn: Connection, address: str) -> bool:
    """Whether a call to this node would ride on a live kept master (a few ms, nothing sent to the node; not
    even asked when no master is kept at all, as for the first status in half a minute)."""
    return conn.kept_in is not None and _holds_a_socket(conn.kept_in) and _control(conn, address, "check") == 0


def _holds_a_socket(directory: Path) -> bool:
    try:
        return any(entry.is_socket() for entry in directory.iterdir())
    except OSError:
        return False


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
