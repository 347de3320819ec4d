"""Rules that relate values to each other: uniqueness, references, containment, overlap."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network
from itertools import combinations

from truckctl.config.model import Race, Truck
from truckctl.config.yamlfile import FieldPath
from truckctl.errors import Problem

# `where(truck_name, path_inside_truck)` gives the location of a truck's field in whichever
# file set it (the race file, or the stage file that overrides that truck's network).
TruckLocator = Callable[[str, FieldPath], str]


def suggest(name: str, choices: Iterable[str]) -> str:
    options = sorted(choices)
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    hint = f", did you mean {close[0]!r}?" if close else ""
    return f"{hint} (defined: {', '.join(options)})" if not close else hint


def race_rules(race: Race, where: Callable[[FieldPath], str]) -> list[Problem]:
    """Rules on the race file alone (names, roles, gateways, reserved ranges)."""
    problems: list[Problem] = []
    seen_trucks: set[str] = set()
    seen_nodes: dict[str, str] = {}
    for ti, truck in enumerate(race.trucks):
        if truck.name in seen_trucks:
            problems.append(Problem("duplicate-name", f"truck name {truck.name!r} is used twice",
                                    where(("trucks", ti, "name"))))
        seen_trucks.add(truck.name)
        gateways = []
        for ni, node in enumerate(truck.nodes):
            if node.name in seen_nodes:
                problems.append(Problem(
                    "duplicate-name",
                    f"node name {node.name!r} is already used in truck {seen_nodes[node.name]!r}",
                    where(("trucks", ti, "nodes", ni, "name"))))
            seen_nodes[node.name] = truck.name
            role = race.roles.get(node.role)
            if role is None:
                problems.append(Problem("unknown-role", f"role {node.role!r} is not defined in roles"
                                        + suggest(node.role, race.roles), where(("trucks", ti, "nodes", ni, "role"))))
            elif role.gateway:
                gateways.append(node.name)
        if len(gateways) != 1 and all(n.role in race.roles for n in truck.nodes):
            problems.append(Problem(
                "gateway-count",
                f"truck {truck.name!r} needs exactly one node with a gateway role, found {len(gateways)}"
                + (f" ({', '.join(gateways)})" if gateways else ""),
                where(("trucks", ti, "nodes"))))
    users = [u.name for u in race.ops_users]
    for ui, name in enumerate(users):
        if name in users[:ui]:
            problems.append(Problem("duplicate-name", f"ops user {name!r} is listed twice",
                                    where(("ops_users", ui, "name"))))
    if race.lab.uplink_cidr.overlaps(race.cloud.cidr):
        problems.append(Problem(
            "network-overlap",
            f"lab uplink {race.lab.uplink_cidr} overlaps the cloud CIDR {race.cloud.cidr}",
            where(("lab", "uplink_cidr"))))
    hops = [hop.name for hop in race.management.jump] if race.management else []
    for hi, name in enumerate(hops):
        if name in hops[:hi]:
            problems.append(Problem("duplicate-name", f"jump hop {name!r} is listed twice",
                                    where(("management", "jump", hi, "name"))))
    return problems


def network_rules(race: Race, trucks: list[Truck], where: TruckLocator) -> list[Problem]:
    """Rules on the networks of the trucks taking part in one stage."""
    # Overlaps between trucks first: they explain the containment errors that often follow.
    problems: list[Problem] = []
    named: list[tuple[str, FieldPath, IPv4Network]] = []
    for truck in trucks:
        named.append((truck.name, ("lan",), truck.lan))
        named += [(truck.name, ("vlans", vi, "cidr"), v.cidr) for vi, v in enumerate(truck.vlans)]
    for (ta, pa, na), (tb, pb, nb) in combinations(named, 2):
        if ta != tb and na.overlaps(nb):
            problems.append(Problem(
                "network-overlap",
                f"{na} of truck {ta!r} overlaps {nb} of truck {tb!r} ({where(tb, pb)})",
                where(ta, pa)))
    for name, path, net in named:
        for other, label in ((race.cloud.cidr, "the cloud CIDR"), (race.lab.uplink_cidr, "the lab uplink")):
            if net.overlaps(other):
                problems.append(Problem(
                    "network-overlap", f"{net} of truck {name!r} overlaps {label} {other}", where(name, path)))
    addresses: dict[str, str] = {}
    for truck in trucks:
        own = _truck_network(truck, where, addresses)
        problems += own
        if not own:  # the derivations assume addresses inside the LAN: only checked once that holds
            problems += derived_rules(race, truck, where)
    return problems


def derived_rules(race: Race, truck: Truck, where: TruckLocator) -> list[Problem]:
    """What the roles and the stack derive for one truck, computed by the very functions they use
    (truckctl.config.derived, truckctl.config.addressing): the gateway's DHCP pool, each node's VLAN
    addresses, the truck's VPN tunnel address. A value they would fail on is refused here, before
    any side effect, instead of half-way through a run."""
    from truckctl.config.addressing import cloud_layout
    from truckctl.config.derived import dhcp_pool_conflicts, dhcp_pool_range, truck_host_offset, truck_vlan_address

    problems: list[Problem] = []
    lan = str(truck.lan)
    try:
        start, end = dhcp_pool_range(lan)
    except ValueError as exc:
        problems.append(Problem("derived-dhcp-pool", f"truck {truck.name!r}: {exc} (its gateway serves the upper "
                                "half of the LAN over DHCP)", where(truck.name, ("lan",))))
    else:
        conflicts = set(dhcp_pool_conflicts(lan, [str(n.address) for n in truck.nodes]))
        for ni, node in enumerate(truck.nodes):
            if str(node.address) in conflicts:
                problems.append(Problem(
                    "address-in-dhcp-pool", f"address {node.address} of node {node.name!r} falls in the DHCP pool "
                    f"{start}-{end} that the gateway serves (the upper half of the LAN {lan}): use an address "
                    f"below {start}", where(truck.name, ("nodes", ni, "address"))))
    for vi, vlan in enumerate(truck.vlans):
        for node in sorted(truck.nodes, key=lambda n: -int(n.address)):
            try:
                truck_vlan_address(str(node.address), lan, str(vlan.cidr))
            except ValueError:
                problems.append(Problem(
                    "derived-vlan-address", f"VLAN {vlan.name!r} {vlan.cidr} of truck {truck.name!r} has no address "
                    f"for node {node.name!r} (host position {truck_host_offset(str(node.address), lan)} on the LAN "
                    "is kept on every VLAN): use a larger VLAN", where(truck.name, ("vlans", vi, "cidr"))))
            break  # the highest host position decides for the whole VLAN
    race_trucks = [t.name for t in race.trucks]
    if truck.name in race_trucks:
        layout = cloud_layout(race.cloud.cidr)
        try:
            layout.vpn_truck_address(race_trucks.index(truck.name))
        except ValueError as exc:
            problems.append(Problem("derived-vpn-address", f"truck {truck.name!r} has no VPN tunnel address: {exc} "
                                    f"(derived from cloud.cidr {race.cloud.cidr})", where(truck.name, ("name",))))
    return problems


def _truck_network(truck: Truck, where: TruckLocator, addresses: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    for ni, node in enumerate(truck.nodes):
        here = where(truck.name, ("nodes", ni, "address"))
        if node.address not in truck.lan:
            problems.append(Problem("address-outside-lan",
                                    f"address {node.address} of node {node.name!r} is outside the truck LAN "
                                    f"{truck.lan}", here))
        elif node.address in (truck.lan.network_address, truck.lan.broadcast_address):
            problems.append(Problem("reserved-address",
                                    f"address {node.address} of node {node.name!r} is the network or broadcast "
                                    f"address of {truck.lan}", here))
        key = str(node.address)
        if key in addresses:
            problems.append(Problem("duplicate-address",
                                    f"address {key} of node {node.name!r} is already used by node "
                                    f"{addresses[key]!r}", here))
        addresses[key] = node.name
    ids: set[int] = set()
    names: set[str] = set()
    for vi, vlan in enumerate(truck.vlans):
        if vlan.id in ids:
            problems.append(Problem("duplicate-vlan", f"VLAN id {vlan.id} is used twice in truck {truck.name!r}",
                                    where(truck.name, ("vlans", vi, "id"))))
        if vlan.name in names:
            problems.append(Problem("duplicate-vlan",
                                    f"VLAN name {vlan.name!r} is used twice in truck {truck.name!r}",
                                    where(truck.name, ("vlans", vi, "name"))))
        ids.add(vlan.id)
        names.add(vlan.name)
        if vlan.cidr.overlaps(truck.lan):
            problems.append(Problem("network-overlap",
                                    f"VLAN {vlan.name!r} {vlan.cidr} overlaps the LAN {truck.lan} of truck "
                                    f"{truck.name!r}", where(truck.name, ("vlans", vi, "cidr"))))
        for other in truck.vlans[:vi]:
            if vlan.cidr.overlaps(other.cidr) and vlan.name != other.name:
                problems.append(Problem("network-overlap",
                                        f"VLAN {vlan.name!r} {vlan.cidr} overlaps VLAN {other.name!r} {other.cidr} "
                                        f"of truck {truck.name!r}", where(truck.name, ("vlans", vi, "cidr"))))
    return problems
