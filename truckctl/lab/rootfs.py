"""The cached Debian 12 rootfs every node overlays, and the stand-in's layer on top of it.

Both live under ${XDG_CACHE_HOME:-~/.cache}/truckctl, named by a hash of their recipe (a changed
recipe builds a new one), and are built in a `.partial` directory renamed into place at the end:
a crash mid-build never leaves a cache that looks ready.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from truckctl.errors import TruckctlError
from truckctl.lab import state as st
from truckctl.lab.system import mount_points, remove_tree, run, spawn, unmount_all

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_RECIPE: dict[str, object] = {
    "suite": SUITE,
    "variant": "minbase",
    "mirror": MIRROR,
    # What a node's Debian 12 has as delivered. ca-certificates comes with any apt install that keeps
    # apt's Recommends (a stock server); minbase leaves it out, and the first converge would otherwise
    # spend ~2 CPU-s per node building the trust store a real node already has.
    "include": ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt", "iproute2",
                "sudo", "procps", "ca-certificates"],
    # Timers that would wake every node at random to hit the network or the disk.
    "mask": ["apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
             "dpkg-db-backup.timer", "e2scrub_reap.service"],
    "revision": 2,  # bump when the post-processing below changes
}
STANDIN_PACKAGES = ["mosquitto", "python3-paho-mqtt"]
SOURCES = (f"deb {MIRROR} {SUITE} main\n"
           f"deb {MIRROR} {SUITE}-updates main\n"
           f"deb http://deb.debian.org/debian-security {SUITE}-security main\n")
# The per-node proxy setting is added by the node itself (its host address differs per network).
APT_CONF = 'Acquire::Check-Valid-Until "false";\nAcquire::Languages "none";\n'

Progress = Callable[[str], None]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "truckctl"


def recipe_hash(recipe: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def base_path() -> Path:
    return cache_root() / f"rootfs-{recipe_hash(BASE_RECIPE)}"


def standin_recipe() -> dict[str, object]:
    return {"base": recipe_hash(BASE_RECIPE), "packages": STANDIN_PACKAGES, "revision": 1}


def standin_layer() -> Path:
    """The stand-in's extra layer (an overlay upper directory), stacked over the base rootfs."""
    return cache_root() / f"standin-{recipe_hash(standin_recipe())}" / "upper"


@contextmanager
def _cache_lock() -> Iterator[int]:
    """Held while a cache is built; the build process inherits it, so if truckctl dies mid-build the
    lock stays held until the orphaned build exits, and no other `up` builds into the same directory."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another `up` building the same cache: wait for it
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _discard_partial(path: Path) -> None:
    if path.exists():
        unmount_all(path)
        remove_tree(path)


def _in_use(path: Path) -> bool:
    """True if any mount (a running node's overlay, perhaps of another lab) still stacks on it."""
    needle = str(path)
    text = Path("/proc/self/mounts").read_text()
    return needle in text or any(p.startswith(needle + "/") for p in mount_points())


def _prune(prefix: str, keep: Path) -> None:
    for old in cache_root().glob(f"{prefix}-*"):
        if old.name.endswith(".partial") or old == keep or _in_use(old):
            continue
        shutil.rmtree(old, ignore_errors=True)


def ensure_base(state: st.LabState, cgroups: list[Path], progress: Progress) -> Path:
    final = base_path()
    if final.is_dir():
        return final
    with _cache_lock() as lock_fd:
        if final.is_dir():
            return final
        partial = final.with_name(final.name + ".partial")
        _discard_partial(partial)
        state.record(st.SCRATCH, str(partial))
        partial.mkdir(parents=True)
        progress(f"building the Debian {SUITE} rootfs with debootstrap (once; about a minute)")
        started = time.monotonic()
        log = cache_root() / "debootstrap.log"
        log.write_text("")
        argv = ["debootstrap", f"--variant={BASE_RECIPE['variant']}",
                f"--include={','.join(BASE_RECIPE['include'])}",  # type: ignore[arg-type]
                SUITE, str(partial), MIRROR]
        proc = spawn(argv, cgroups, log, keep_fds=(lock_fd,))
        if proc.wait(timeout=900) != 0:
            tail = " ".join(log.read_text().splitlines()[-3:])[:300]
            raise TruckctlError.single("lab-rootfs", f"debootstrap failed (see {log}): {tail}")
        _post_process(partial)
        os.rename(partial, final)  # atomic: the cache is ready only once complete
        progress(f"rootfs ready in {time.monotonic() - started:.0f}s")
        _prune("rootfs", final)
    return final


def _post_process(root: Path) -> None:
    run(["chroot", str(root), "apt-get", "clean"], what="apt-get clean in the rootfs")
    # Every node gets its own host keys and machine id; none may come from the shared image.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    for unit in BASE_RECIPE["mask"]:  # type: ignore[attr-defined]
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc/apt/sources.list").write_text(SOURCES)
    (root / "etc/apt/apt.conf.d/01truckctl-lab").write_text(APT_CONF)
    # debootstrap read bookworm main only. A node's first converge refreshes lists older than a day
    # (roles/common): without this, a rootfs under a day old would install its packages from main,
    # without bookworm-security and -updates.
    run(["chroot", str(root), "apt-get", "-q", "update"], what="apt-get update in the rootfs (all its sources)")


def ensure_standin_layer(state: st.LabState, base: Path, proxy: str, machine: str, cgroups: list[Path],
                         progress: Progress) -> Path:
    """Mosquitto and paho, installed once through the lab's apt cache and kept as an overlay layer."""
    layer = standin_layer()
    if layer.is_dir():
        return layer
    with _cache_lock() as lock_fd:
        if layer.is_dir():
            return layer
        final = layer.parent
        partial = final.with_name(final.name + ".partial")
        _discard_partial(partial)
        state.record(st.SCRATCH, str(partial))
        upper, work, merged = partial / "upper", partial / "work", partial / "merged"
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        progress("building the cloud stand-in layer (mosquitto, paho; once)")
        started = time.monotonic()
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={work}",
             str(merged)], what="mount the stand-in build overlay")
        policy = merged / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")  # packages must not start services in the build
        policy.chmod(0o755)
        apt = f"apt-get -q -o Acquire::http::Proxy={proxy}"
        script = (f"{apt} update && DEBIAN_FRONTEND=noninteractive {apt} install -y --no-install-recommends "
                  f"{' '.join(STANDIN_PACKAGES)} && apt-get clean")
        log = cache_root() / "standin-build.log"
        log.write_text("")
        argv = ["systemd-nspawn", "--quiet", f"--directory={merged}", f"--machine={machine}", "--register=no",
                "--keep-unit", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
                "/bin/sh", "-c", script]
        proc = spawn(argv, cgroups, log, keep_fds=(lock_fd,))
        if proc.wait(timeout=600) != 0:
            tail = " ".join(log.read_text().splitlines()[-3:])[:300]
            raise TruckctlError.single("lab-rootfs", f"building the stand-in layer failed (see {log}): {tail}")
        policy.unlink()
        run(["umount", str(merged)], what="unmount the stand-in build overlay")
        remove_tree(work)
        remove_tree(merged)
        os.rename(partial, final)
        progress(f"stand-in layer ready in {time.monotonic() - started:.0f}s")
        _prune("standin", final)
    return layer
