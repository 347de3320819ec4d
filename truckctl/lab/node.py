"""One lab node: its overlay on the cached rootfs, its identity files, and its supervisor.

The supervisor is a few lines of shell (a Python one would cost ~10 MiB per node): it relaunches
systemd-nspawn only when the guest rebooted (exit 133) and forwards SIGTERM for a clean stop.
"""

from __future__ import annotations

from pathlib import Path

from truckctl.lab import rootwrite
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


def write_identity(root: Path, plan: LabPlan, node: NodePlan, host_key: Path, authorized_key: str) -> None:
    """Hostname, hosts, its own SSH host key, the lab's login key and the apt proxy on its network
    (written without following links: see rootwrite)."""
    rootwrite.write_file(root, "etc/hostname", node.name + "\n")
    hosts = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    hosts += [f"{n.address} {n.name}" for n in plan.nodes]
    rootwrite.write_file(root, "etc/hosts", "\n".join(hosts) + "\n")
    rootwrite.write_file(root, "etc/resolv.conf",
                         "# truckctl lab: no DNS; /etc/hosts names every lab node, apt uses a proxy\n")
    rootwrite.make_dirs(root, "root/.ssh", 0o700)
    rootwrite.write_file(root, "root/.ssh/authorized_keys", authorized_key + "\n", 0o600)
    rootwrite.write_file(root, "etc/ssh/ssh_host_ed25519_key", host_key.read_text(), 0o600)
    public = host_key.with_name(host_key.name + ".pub")
    rootwrite.write_file(root, "etc/ssh/ssh_host_ed25519_key.pub", public.read_text())
    rootwrite.write_file(root, "etc/apt/apt.conf.d/02truckctl-lab-proxy",
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
