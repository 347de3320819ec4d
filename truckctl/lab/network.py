"""Bridges, namespaces and veth pairs: each truck LAN on its own bridge, gateways also on the uplink.

Nodes get no default route and the host never forwards: traffic stays between the host and the
lab's own namespaces.
"""

from __future__ import annotations

import json
from pathlib import Path

from truckctl.lab import state as st
from truckctl.lab.plan import LAN_IF, UPLINK_IF, HostRoute, LabPlan, NodePlan, parse_routes
from truckctl.lab.system import run

NETNS_DIR = Path("/run/netns")


def host_routes() -> list[HostRoute]:
    return parse_routes(json.loads(run(["ip", "-j", "-4", "route", "show"], what="ip route").stdout or "[]"))


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def make_bridge(state: st.LabState, name: str, address: str, prefixlen: int) -> None:
    state.record(st.LINK, name)
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"], what=f"create bridge {name}")
    run(["ip", "addr", "replace", f"{address}/{prefixlen}", "dev", name], what=f"address {address} on {name}")
    run(["ip", "link", "set", name, "up"], what=f"bring {name} up")


def make_node_network(state: st.LabState, plan: LabPlan, node: NodePlan) -> None:
    """The node's namespace with its LAN interface (and a gateway's uplink interface), addresses set."""
    state.record(st.NETNS, node.netns)
    if not netns_exists(node.netns):
        run(["ip", "netns", "add", node.netns], what=f"create namespace {node.netns}")
    ns = ["ip", "-n", node.netns]
    run([*ns, "link", "set", "lo", "up"], what=f"{node.name}: lo up")
    veth(state, node, node.veth, LAN_IF, node.bridge, f"{node.address}/{node.prefixlen}")
    if node.uplink_veth and node.uplink_address:
        veth(state, node, node.uplink_veth, UPLINK_IF, plan.uplink.bridge,
              f"{node.uplink_address}/{node.uplink_prefixlen}")


def veth(state: st.LabState, node: NodePlan, host_side: str, inside: str, bridge: str, cidr: str) -> None:
    state.record(st.LINK, host_side)
    if not link_exists(host_side):
        # The peer is created directly inside the namespace, so its name never clashes on the host.
        run(["ip", "link", "add", host_side, "type", "veth", "peer", "name", inside, "netns", node.netns],
            what=f"{node.name}: veth {host_side}")
    run(["ip", "link", "set", host_side, "master", bridge, "up"], what=f"{node.name}: attach {host_side}")
    ns = ["ip", "-n", node.netns]
    run([*ns, "addr", "replace", cidr, "dev", inside], what=f"{node.name}: address {cidr}")
    run([*ns, "link", "set", inside, "up"], what=f"{node.name}: {inside} up")


def flush_addresses(name: str) -> None:
    """Remove every address of a host link (a parked truck's bridge: its route goes with it)."""
    run(["ip", "addr", "flush", "dev", name], what=f"remove the addresses of {name}")


def readdress_node(node: NodePlan) -> None:
    """Give a node's interfaces its plan's addresses, dropping the ones it had (the daily move)."""
    ns = ["ip", "-n", node.netns]
    wanted = [(LAN_IF, f"{node.address}/{node.prefixlen}")]
    if node.uplink_address:
        wanted.append((UPLINK_IF, f"{node.uplink_address}/{node.uplink_prefixlen}"))
    for inside, cidr in wanted:
        run([*ns, "addr", "flush", "dev", inside], what=f"{node.name}: remove the addresses of {inside}")
        run([*ns, "addr", "add", cidr, "dev", inside], what=f"{node.name}: address {cidr}")


def set_link(name: str, up: bool) -> None:
    run(["ip", "link", "set", name, "up" if up else "down"], what=f"set {name} {'up' if up else 'down'}")


def link_is_up(name: str) -> bool:
    try:
        flags = int(Path("/sys/class/net", name, "flags").read_text(), 16)
    except OSError:
        return False
    return bool(flags & 0x1)  # IFF_UP


def delete_netns(name: str) -> None:
    if netns_exists(name):
        run(["ip", "netns", "del", name], what=f"delete namespace {name}")


def delete_link(name: str) -> None:
    if link_exists(name):
        run(["ip", "link", "del", name], check=False)
