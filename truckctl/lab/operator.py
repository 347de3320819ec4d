"""The lab's outside operator: a second machine that reaches the trucks only through the management path.

`truckctl lab operator add NAME` (root, on the lab's host) makes, beside the running lab:
- a network namespace (the operator's "machine") whose only link is a veth into the cloud stand-in,
  with one route: to the stand-in's uplink address (the race file's jump host). No IP forwarding or
  NAT anywhere: the stand-in's sshd forwards the SSH connections, as a jump host does;
- on the stand-in, what the cloud VPN gateway has in real life: a leg on each truck LAN (the routed
  tunnel's view of the trucks), and a jump-only account (the race file's hop user): no shell, no TTY,
  only TCP forwarding to the truck nodes' SSH port (`restrict,port-forwarding,permitopen=...`, and a
  `Match User` block with `PermitOpen`, `ForceCommand /usr/sbin/nologin`);
- a second state directory standing for the operator's machine. It holds only what such an operator
  is given: the ops SSH key, the pinned host keys (the nodes' and the jump host's), the stand-in's CA
  and client certificates (what the cloud side would give a CI runner), the lab's address plan, and
  `via` = management. It shares nothing else with the lab's state directory (no lock, no journal).

The namespace and links are recorded in the lab's state, so `lab down` removes them with the lab.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from truckctl.config.loader import load_race, load_stage
from truckctl.config.names import reserved_account
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lab import naming, network, rootwrite
from truckctl.lab import state as st
from truckctl.lab.node import merged_dir
from truckctl.lab.paths import LabPaths
from truckctl.lab.pki import OPERATOR_LEAF, LabPki
from truckctl.lab.plan import LabPlan
from truckctl.lab.ssh import ssh_run
from truckctl.lab.system import require_root, run
from truckctl.management import MANAGEMENT, VIA_FILE
from truckctl.private_file import write_private
from truckctl.project import Project

OUTSIDE_FILE = "outside.json"  # in <state>/lab of an outside operator's state directory
NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
OPERATOR_IF = "mgmt0"  # inside the operator's namespace
STANDIN_OPERATOR_IF = "op-{index}"  # inside the stand-in: its leg to an operator
STANDIN_TRUCK_IF = "truck{index}"  # inside the stand-in: its leg on a truck LAN
JUMP_SSHD_CONF = "etc/ssh/sshd_config.d/05-truckctl-jump.conf"
JUMP_KEYS = "etc/ssh/truckctl-jump/authorized_keys"
NODE_SSH_PORT = 22


@dataclass(frozen=True)
class Outside:
    """What an outside operator's state directory knows of the lab it reaches."""

    operator: str
    netns: str
    plan: LabPlan
    vpn_public_key: str


def outside(state_dir: Path) -> Outside | None:
    file = st.lab_dir(state_dir) / OUTSIDE_FILE
    if not file.is_file():
        return None
    data = json.loads(file.read_text())
    return Outside(data["operator"], data["netns"], LabPlan.from_dict(data["plan"]), data["vpn_public_key"])


def refuse_outside(state_dir: Path, what: str) -> None:
    """`lab up`/`lab down` belong to the lab's own machine, never to an outside operator's state."""
    seen = outside(state_dir)
    if seen is not None:
        raise TruckctlError.single("lab-outside-operator", f"this state directory is outside operator "
                                   f"{seen.operator!r}'s: `lab {what}` runs on the lab's own state directory",
                                   exit_code=ExitCode.USAGE)


def operator_netns(lab_id: str, name: str) -> str:
    return naming.netns(lab_id, f"op-{name}")


def operator_network(plan: LabPlan, index: int) -> IPv4Network:
    """A /30 per operator in the /24 after the lab uplink (100.64.10.0/24 -> 100.64.11.0/24)."""
    uplink = IPv4Network(plan.uplink.cidr)
    base = IPv4Network((int(uplink.network_address) + uplink.num_addresses, 24), strict=False)
    return IPv4Network((int(base.network_address) + 4 * index, 30))


def standin_lan_address(cidr: str) -> str:
    """The stand-in's leg on a truck LAN: the address before the host's (the last usable)."""
    return str(IPv4Network(cidr).broadcast_address - 2)


def jump_config(user: str, targets: list[str]) -> str:
    opens = " ".join(f"{t}:{NODE_SSH_PORT}" for t in targets)
    return "\n".join([
        "# Rendered by truckctl lab operator add: the jump-only account of the management path.",
        f"Match User {user}",
        f"    AuthorizedKeysFile /{JUMP_KEYS}",
        "    AllowTcpForwarding local",
        f"    PermitOpen {opens}",
        "    ForceCommand /usr/sbin/nologin",
        "    PermitTTY no",
        "    X11Forwarding no",
        "    AllowAgentForwarding no",
        "    AllowStreamLocalForwarding no",
        "    GatewayPorts no",
        "    PermitTunnel no",
    ]) + "\n"


def jump_authorized_key(public_line: str, targets: list[str]) -> str:
    kind, blob = public_line.split()[:2]
    opens = ",".join(f'permitopen="{t}:{NODE_SSH_PORT}"' for t in targets)
    return f"restrict,port-forwarding,{opens} {kind} {blob} truckctl-outside-operator\n"


def add(project: Project, name: str, state_dir: Path | None = None) -> dict[str, Any]:
    require_root("operator add")
    if not NAME.match(name):
        raise TruckctlError.single("bad-operator-name", f"expected an operator name of 1-15 lower-case letters, "
                                   f"digits and dashes, got {name[:40]!r}", "NAME", ExitCode.USAGE)
    refuse_outside(project.state_dir, "operator add")
    target = (state_dir or project.state_dir.parent / f".truckctl-operator-{name}").resolve()
    if target == project.state_dir.resolve() or project.state_dir.resolve() in target.parents:
        raise TruckctlError.single("operator-state-dir", "the operator's state directory must be apart from the "
                                   "lab's (it stands for another machine)", str(target), ExitCode.USAGE)
    paths = LabPaths(project.state_dir)
    with st.locked(project.state_dir):
        state = st.load(project.state_dir)
        if state is None or not state.complete:
            raise TruckctlError.single("lab-not-up", "no lab is up: run `truckctl lab up STAGE` first")
        state.path = st.state_file(project.state_dir)
        plan = state.plan
        stage = load_stage(project, plan.stage)
        hop = _jump_hop(project, stage, plan)
        targets = [n.address for n in plan.truck_nodes]
        netns = operator_netns(plan.lab_id, name)
        taken = {r.name: int(r.data["index"]) for r in state.of_kind(st.NETNS) if "index" in r.data}
        index = taken.get(netns, max(taken.values(), default=-1) + 1)
        net = _wire(state, plan, netns, index)
        _jump_account(paths, plan, hop, targets)
        state.save()
    _hand_over(paths, plan, target, name, netns)
    return {"operator": name, "state_dir": str(target), "netns": netns, "jump_host": f"{hop[0]}@{hop[1]}",
            "operator_address": str(net[2]), "via": MANAGEMENT,
            "run_as": f"ip netns exec {netns} env TRUCKCTL_STATE_DIR={target} truckctl -C {project.root} ..."}


def _jump_hop(project: Project, stage: Any, plan: LabPlan) -> tuple[str, str]:
    """The race file's one hop must be the stand-in: the lab's cloud gateway."""
    doc = load_race(project).doc
    jump = stage.management.jump if stage.management else []
    if len(jump) != 1 or jump[0].host != plan.uplink.standin_address or jump[0].port != NODE_SSH_PORT:
        raise TruckctlError.single(
            "lab-management-path", f"the lab's outside operator needs management.jump to be one hop: the cloud "
            f"stand-in at {plan.uplink.standin_address} (lab.uplink_cidr's .2), port {NODE_SSH_PORT}",
            doc.where(("management",) if stage.management else ("race",)), ExitCode.INVALID_CONFIG)
    if reserved_account(jump[0].user) or jump[0].user == "root":
        raise TruckctlError.single("lab-management-path", f"jump user {jump[0].user!r} is an account of the "
                                   "stand-in's system: name an account of its own", doc.where(
                                       ("management", "jump", 0, "user")), ExitCode.INVALID_CONFIG)
    return jump[0].user, jump[0].host


def _wire(state: st.LabState, plan: LabPlan, netns: str, index: int) -> tuple[IPv4Network, IPv4Address,
                                                                             IPv4Address]:
    """The operator's namespace, its one link into the stand-in, and the stand-in's truck LAN legs."""
    standin = plan.standin
    net = operator_network(plan, index)
    inside, outside_addr = net.network_address + 1, net.network_address + 2
    state.record(st.NETNS, netns, index=index)
    state.save()
    if not network.netns_exists(netns):
        run(["ip", "netns", "add", netns], what=f"create namespace {netns}")
    ns = ["ip", "-n", netns]
    run([*ns, "link", "set", "lo", "up"], what=f"{netns}: lo up")
    peer = STANDIN_OPERATOR_IF.format(index=index)
    if run([*ns, "link", "show", OPERATOR_IF], check=False).returncode != 0:
        run([*ns, "link", "add", OPERATOR_IF, "type", "veth", "peer", "name", peer, "netns", standin.netns],
            what=f"{netns}: link to the stand-in")
    run([*ns, "addr", "replace", f"{outside_addr}/{net.prefixlen}", "dev", OPERATOR_IF], what=f"{netns}: address")
    run([*ns, "link", "set", OPERATOR_IF, "up"], what=f"{netns}: {OPERATOR_IF} up")
    # The only route: the stand-in's uplink address, which the stand-in answers on any of its links.
    run([*ns, "route", "replace", f"{plan.uplink.standin_address}/32", "dev", OPERATOR_IF],
        what=f"{netns}: route to the stand-in")
    sn = ["ip", "-n", standin.netns]
    run([*sn, "addr", "replace", f"{inside}/{net.prefixlen}", "dev", peer], what="stand-in: operator link address")
    run([*sn, "link", "set", peer, "up"], what="stand-in: operator link up")
    for ti, truck in enumerate(plan.trucks):
        address = standin_lan_address(truck.cidr)
        if any(n.address == address for n in plan.truck_nodes):
            raise TruckctlError.single("lab-network", f"a node of truck {truck.name} uses {address}, which the lab's "
                                       "stand-in takes on that LAN for the management path: pick another address")
        host_side = naming.lan_veth(plan.lab_id, f"{standin.name}@{truck.name}")
        if not network.link_exists(host_side):
            network.veth(state, standin, host_side, STANDIN_TRUCK_IF.format(index=ti), truck.bridge,
                         f"{address}/{IPv4Network(truck.cidr).prefixlen}")
    return net, inside, outside_addr


def _jump_account(paths: LabPaths, plan: LabPlan, hop: tuple[str, str], targets: list[str]) -> None:
    """The jump-only account on the stand-in, its sshd block and its one authorized key."""
    user = hop[0]
    root = merged_dir(paths.root, plan.standin)
    public = paths.ssh_key.with_name(paths.ssh_key.name + ".pub").read_text()
    rootwrite.write_file(root, JUMP_SSHD_CONF, jump_config(user, targets))
    rootwrite.make_dirs(root, str(Path(JUMP_KEYS).parent), 0o755)
    rootwrite.write_file(root, JUMP_KEYS, jump_authorized_key(public, targets), 0o644)
    quoted = shlex.quote(user)
    script = (f"id -u {quoted} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent "
              f"--shell /usr/sbin/nologin {quoted}; sshd -t && systemctl reload ssh")
    from truckctl.lab.control import connection_for

    code, out = ssh_run(connection_for(paths), plan.uplink.standin_address, script)
    if code != 0:
        raise TruckctlError.single("lab-standin", f"the stand-in's jump account could not be set up: {out[:300]}")


def _hand_over(paths: LabPaths, plan: LabPlan, target: Path, name: str, netns: str) -> None:
    """The operator's state directory: only what an outside operator is given."""
    mine = LabPaths(target)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    mine.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for source, dest in [(paths.ssh_key, mine.ssh_key),
                         (paths.ssh_key.with_name(paths.ssh_key.name + ".pub"),
                          mine.ssh_key.with_name(mine.ssh_key.name + ".pub")),
                         (paths.known_hosts, mine.known_hosts)]:
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(dest, source.read_bytes(), 0o600)
    pki, given = LabPki(paths.pki), LabPki(mine.pki)
    given.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = [pki.ca.cert, pki.leaf(OPERATOR_LEAF).cert, pki.leaf(OPERATOR_LEAF).key]
    for truck in plan.trucks:
        files += [pki.leaf(f"truck-{truck.name}").cert, pki.leaf(f"truck-{truck.name}").key]
    for file in files:
        write_private(given.dir / file.name, file.read_bytes(), 0o600)
    record = {"operator": name, "netns": netns, "plan": plan.to_dict(), "vpn_public_key": pki.wireguard_public_key()}
    write_private(mine.root / OUTSIDE_FILE, json.dumps(record, indent=1).encode(), 0o600)
    write_private(target / VIA_FILE, f"{MANAGEMENT}\n".encode(), 0o644)
