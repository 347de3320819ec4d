"""Replace a file without ever writing through a link planted at its path.

truckctl writes keys, certificates, vault-encrypted secrets and Ansible's inventory into its state
directory, often as root. Opening the target itself (O_TRUNC) would follow a symbolic link planted
there and overwrite whatever it points to, and a chmod by path would follow it too. Instead the
data goes to a new file of a fresh random name in the same directory (O_CREAT|O_EXCL|O_NOFOLLOW,
mode 0600 from the start), its mode (and owner) are set on the descriptor, it is synced, and it is
renamed over the target: a link at the target is replaced, never followed, and a reader sees the
old file or the new one whole, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def replace_in(directory: int, name: str, data: bytes, mode: int = 0o600,
               owner: tuple[int, int] | None = None) -> None:
    """Replace `name` in the directory open as `directory` with `data` (mode, owner uid/gid if given).
    On any failure the temporary file is removed and the error raised as it is."""
    tmp = f".{name}.truckctl-{secrets.token_hex(4)}"
    fd = os.open(tmp, _NEW, 0o600, dir_fd=directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if owner is not None:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)  # replaces a planted link
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=directory)
        raise


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Replace `path` with `data` (text as UTF-8), mode 0600 unless told: see the module's docstring.
    Its directory must exist; it is the caller's own (its own links are followed, as for any path)."""
    content = data.encode() if isinstance(data, str) else data
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        replace_in(directory, path.name, content, mode)
    finally:
        os.close(directory)
    return path
