"""Writes as root into a node's root directory (or the stand-in's) that never follow a link.

A node's root is the node's to change: a compromised node can plant a symbolic link anywhere in it
(`/etc/mosquitto/certs -> /`, `crl.pem.tmp -> /etc/shadow`, ...), and a write from the host that
followed it would land on the host. So every path is walked from the root's directory descriptor
one component at a time with O_NOFOLLOW (openat2's RESOLVE_NO_SYMLINKS is not in Python's stdlib);
a file is written to a fresh temporary name (O_CREAT|O_EXCL|O_NOFOLLOW) in its directory, its mode and
owner set on that descriptor (fchmod/fchown: never on a path), and renamed over the target, which
replaces a planted link instead of writing through it (truckctl.private_file.replace_in). A link where a
directory is expected stops the write with a TruckctlError naming the node path; nothing outside the root is touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from truckctl.errors import TruckctlError
from truckctl.private_file import replace_in

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(relative: str) -> list[str]:
    parts = PurePosixPath(relative.lstrip("/")).parts
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a plain path inside a node root: {relative!r}")
    return list(parts)


def _refuse(root: Path, relative: str, why: str, action: str = "write") -> TruckctlError:
    return TruckctlError.single(
        "lab-unsafe-path", f"refusing to {action} /{relative.lstrip('/')} in the node at {root}: {why} (a link or "
        "special file planted inside the node is never followed; `truckctl lab down` and `lab up` rebuild the node)")


@contextlib.contextmanager
def _directory(root: Path, parts: list[str], create: bool, relative: str) -> Iterator[int]:
    """A descriptor of root/parts..., each component opened without following links."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in parts:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                child = _open_dir(root, relative, name, fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(root, relative, f"{name!r} is a symbolic link or not a directory") from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_dir(root: Path, relative: str, name: str, parent: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(root, relative, f"{name!r} is a symbolic link or not a directory") from None
        raise


def make_dirs(root: Path, relative: str, mode: int | None = None) -> None:
    """root/relative and its parents, as directories (never through a link); mode set on the last."""
    with _directory(root, _parts(relative), True, relative) as fd:
        if mode is not None:
            os.fchmod(fd, mode)


def write_file(root: Path, relative: str, data: bytes | str, mode: int = 0o644,
               owner: tuple[int, int] | None = None) -> None:
    """Replace root/relative with `data` (mode, and owner uid/gid if given), never through a link."""
    parts = _parts(relative)
    content = data.encode() if isinstance(data, str) else data
    with _directory(root, parts[:-1], True, relative) as directory:
        try:
            replace_in(directory, parts[-1], content, mode, owner)  # a planted link is replaced
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise _refuse(root, relative, "a directory is in its place") from None
            raise


def ensure_symlink(root: Path, relative: str, target: str) -> None:
    """A symbolic link root/relative -> target (a path inside the node), replacing whatever is there."""
    parts = _parts(relative)
    with _directory(root, parts[:-1], True, relative) as directory:
        with contextlib.suppress(OSError):  # missing, or not a link: replaced below
            if os.readlink(parts[-1], dir_fd=directory) == target:
                return
        tmp = f".{parts[-1]}.truckctl-{secrets.token_hex(4)}"
        os.symlink(target, tmp, dir_fd=directory)
        os.rename(tmp, parts[-1], src_dir_fd=directory, dst_dir_fd=directory)


def read_file(root: Path, relative: str, max_bytes: int = 1 << 20) -> bytes:
    """A regular file inside the node (its /etc/group, say), at most `max_bytes` of it, read without
    following a link and without blocking: a FIFO or a device planted in its place (a read from a
    FIFO with no writer would hang root's `lab up` forever) is refused, never read."""
    parts = _parts(relative)
    with _directory(root, parts[:-1], False, relative) as directory:
        try:  # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                         dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refuse(root, relative, "it is a symbolic link", "read") from None
            if exc.errno == errno.ENXIO:  # a socket (or a device with no driver) in its place
                raise _refuse(root, relative, "it is not a regular file", "read") from None
            raise
        with os.fdopen(fd, "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _refuse(root, relative, "it is not a regular file (a FIFO, a device or a socket?)",
                              "read")
            chunks: list[bytes] = []
            left = max_bytes
            while left > 0 and (chunk := handle.read(left)):
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
