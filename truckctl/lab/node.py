"""One lab node: its overlay on the cached rootfs, its identity files, and its supervisor.

The supervisor is a few lines of shell (a Python one would cost ~10 MiB per node): it relaunches
systemd-nspawn only when the guest rebooted (exit 133) and forwards SIGTERM for a clean stop.
"""

from __future__ import annotations

import os
from pathlib import Path

from truckctl.lab import state as st
from truckctl.lab.aptcache import proxy_url
from truckctl.lab.network import NETNS_DIR
from truckctl.lab.plan import LabPlan, NodePlan
from truckctl.lab.system import NSPAWN_RUNTIME, make_cgroup, run, spawn
from truckctl.processes import start_time

SUPERVISOR = r"""
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
while :; do
  "$@" </dev/null &
  child=$!
  wait "$child"; rc=$?
  echo "truckctl lab: systemd-nspawn exited with $rc"
  [ "$rc" -eq 133 ] || exit "$rc"   # 133: the guest rebooted, start it again
done
"""


def node_dir(lab_dir: Path, node: NodePlan) -> Path:
    return lab_dir / "nodes" / node.name


def merged_dir(lab_dir: Path, node: NodePlan) -> Path:
    return node_dir(lab_dir, node) / "merged"


def mount_overlay(state: st.LabState, lab_dir: Path, node: NodePlan, lowers: list[Path]) -> Path:
    base = node_dir(lab_dir, node)
    state.record(st.DIR, str(base))
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    state.record(st.MOUNT, str(merged))
    lowerdir = ":".join(str(p) for p in lowers)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir},upperdir={upper},workdir={work}",
         str(merged)], what=f"{node.name}: mount its overlay")
    return merged


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def write_identity(root: Path, plan: LabPlan, node: NodePlan, host_key: Path, authorized_key: str) -> None:
    """Hostname, hosts, its own SSH host key, the lab's login key and the apt proxy on its network."""
    _write(root / "etc/hostname", node.name + "\n")
    hosts = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    hosts += [f"{n.address} {n.name}" for n in plan.nodes]
    _write(root / "etc/hosts", "\n".join(hosts) + "\n")
    _write(root / "etc/resolv.conf", "# truckctl lab: no DNS; /etc/hosts names every lab node, apt uses a proxy\n")
    (root / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(root / "root/.ssh/authorized_keys", authorized_key + "\n", 0o600)
    ssh_dir = root / "etc/ssh"
    _write(ssh_dir / "ssh_host_ed25519_key", host_key.read_text(), 0o600)
    _write(ssh_dir / "ssh_host_ed25519_key.pub", host_key.with_name(host_key.name + ".pub").read_text())
    _write(root / "etc/apt/apt.conf.d/02truckctl-lab-proxy",
           f'Acquire::http::Proxy "{proxy_url(node.host_address)}";\n')


def nspawn_argv(node: NodePlan, root: Path) -> list[str]:
    """nspawn started inside the node's namespace (nsenter execs it, same pid) rather than given
    --network-namespace-path: nspawn 252 mounts the node's /sys before joining that namespace, so the
    node would see the host's interfaces under /sys/class/net (and Ansible's facts would list them)."""
    return [
        "nsenter", f"--net={NETNS_DIR / node.netns}", "--",
        "systemd-nspawn", "--boot", f"--directory={root}", f"--machine={node.machine}",
        f"--hostname={node.name}",
        # No systemd as PID 1 on this host: nspawn must not talk to machined or create a scope.
        "--register=no", "--keep-unit",
        "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        # Within its own namespace only: nftables, systemd-networkd. Never CAP_SYS_TIME.
        "--capability=CAP_NET_ADMIN",
        "--console=passive",
    ]


def launch(state: st.LabState, lab_dir: Path, node: NodePlan, root: Path, roots: list[Path]) -> int:
    """Start the node's supervisor in the node's own cgroups (else every node's services would share
    one cgroup path in the name=systemd and unified hierarchies)."""
    state.record(st.CGROUP, node.cgroup, roots=[str(r) for r in roots])
    # nspawn locks the image by inode under its runtime dir; only a clean exit removes that file.
    image = root.stat()
    state.record(st.RUNFILE, str(NSPAWN_RUNTIME / "locks" / f"inode-{image.st_dev}:{image.st_ino}"))
    cgroups = make_cgroup(node.cgroup, roots)
    argv = ["/bin/bash", "-c", SUPERVISOR, f"truckctl-lab-{node.name}", *nspawn_argv(node, root)]
    proc = spawn(argv, cgroups, node_dir(lab_dir, node) / "console.log")
    state.record(st.PROCESS, node.name, pid=proc.pid, start=start_time(proc.pid), cgroup=node.cgroup)
    return proc.pid
