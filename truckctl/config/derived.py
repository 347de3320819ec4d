"""Truck addresses the roles derive from the configuration: ONE implementation, used by the network
role (its filter plugin, playbooks/roles/network/filter_plugins/truck_net.py, imports these) and by
validation (truckctl.config.rules.derived_rules), so `validate` refuses exactly what a run would fail
on. The cloud side's derivations (VPC, subnets, VPN tunnel addresses) are truckctl.config.addressing,
shared the same way with stacks/. Strings in, strings out: the filter plugin gets Jinja values.
"""

from __future__ import annotations

import ipaddress
from typing import Any

MIN_POOL_LAN = 8  # a LAN needs at least this many addresses for a DHCP pool (its upper half)


def truck_host_offset(address: str, network: str) -> int:
    """The position of `address` inside `network` (10.31.1.12 in 10.31.1.0/24 -> 12)."""
    net = ipaddress.ip_network(network)
    offset = int(ipaddress.ip_address(address)) - int(net.network_address)
    if not 0 < offset < net.num_addresses - 1:
        raise ValueError(f"{address} is not a host address of {network}")
    return offset


def truck_vlan_address(address: str, lan: str, vlan: str) -> str:
    """A node's address on a VLAN: the same host position as on the LAN, with the VLAN's prefix.

    10.31.1.12 on LAN 10.31.1.0/24 -> 10.31.10.12/24 on VLAN 10.31.10.0/24.
    """
    net = ipaddress.ip_network(vlan)
    offset = truck_host_offset(address, lan)
    if offset >= net.num_addresses - 1:
        raise ValueError(f"VLAN {vlan} is too small for host position {offset} of {lan}")
    return f"{net.network_address + offset}/{net.prefixlen}"


def dhcp_pool_range(lan: str) -> tuple[str, str]:
    """The DHCP pool of a truck LAN: its upper half, up to the address before broadcast."""
    net = ipaddress.ip_network(lan)
    if net.num_addresses < MIN_POOL_LAN:
        raise ValueError(f"LAN {lan} is too small for a DHCP pool (at least /{32 - MIN_POOL_LAN.bit_length() + 1})")
    return str(net.network_address + net.num_addresses // 2), str(net.broadcast_address - 1)


def dhcp_pool_conflicts(lan: str, reserved: list[str]) -> list[str]:
    """The node addresses that fall in the LAN's DHCP pool (the nodes are static: none may)."""
    first, last = (int(ipaddress.ip_address(a)) for a in dhcp_pool_range(lan))
    return [str(a) for a in map(ipaddress.ip_address, reserved) if first <= int(a) <= last]


def truck_dhcp_pool(lan: str, reserved: list[str]) -> dict[str, Any]:
    """The DHCP pool of a truck LAN for dnsmasq: devices plugged in at the tech zone (laptops,
    transponder base stations) get the upper half, so the pool must not hold a node's address."""
    start, end = dhcp_pool_range(lan)
    taken = dhcp_pool_conflicts(lan, reserved)
    if taken:
        raise ValueError(f"node address(es) {', '.join(taken)} fall in the DHCP pool {start}-{end}")
    return {"start": start, "end": end, "netmask": str(ipaddress.ip_network(lan).netmask)}
