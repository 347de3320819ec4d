"""The lab's apt-cacher-ng: started by the lab (the host's policy-rc.d blocks the packaged service),
with its own minimal config (the packaged one remaps Debian to an unreachable mirror), bound only to
the host's addresses on the lab bridges, its cache kept under the user's cache directory."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from truckctl.errors import TruckctlError
from truckctl.lab import state as st
from truckctl.lab.rootfs import cache_root
from truckctl.lab.system import ACNG, spawn
from truckctl.processes import start_time

PORT = 3142


def cache_dir() -> Path:
    return cache_root() / "apt-cacher-ng"


def write_config(conf_dir: Path, bind: list[str]) -> None:
    for sub in ("log", "run"):
        (conf_dir / sub).mkdir(parents=True, exist_ok=True)
    cache_dir().mkdir(parents=True, exist_ok=True)
    (conf_dir / "acng.conf").write_text(
        f"CacheDir: {cache_dir()}\n"
        f"LogDir: {conf_dir / 'log'}\n"
        "SupportDir: /usr/lib/apt-cacher-ng\n"
        f"BindAddress: {' '.join(bind)}\n"
        f"Port: {PORT}\n"
        "ForeGround: 1\n"
        f"PidFile: {conf_dir / 'run' / 'pid'}\n"
        f"SocketPath: {conf_dir / 'run' / 'socket'}\n"
        "ExThreshold: 30\n"  # expire unreferenced files after a month, bounding the cache
    )


def start(state: st.LabState, conf_dir: Path, bind: list[str], cgroup: str, cgroups: list[Path]) -> None:
    write_config(conf_dir, bind)
    proc = spawn([ACNG, "-c", str(conf_dir)], cgroups, conf_dir / "stdout.log")
    state.record(st.PROCESS, "apt-cacher-ng", pid=proc.pid, start=start_time(proc.pid), cgroup=cgroup)
    wait_listening(bind[0], PORT, timeout=10, proc_check=lambda: proc.poll() is None, what="apt-cacher-ng")


def proxy_url(address: str) -> str:
    return f"http://{address}:{PORT}"


def wait_listening(host: str, port: int, timeout: float, proc_check: object = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if callable(proc_check) and not proc_check():
                break
            time.sleep(0.05)
    raise TruckctlError.single("lab-service", f"{what or f'{host}:{port}'} is not listening on {host}:{port}")
