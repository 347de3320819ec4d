"""Address arithmetic for the truck roles (ansible-core ships no ipaddr filter)."""

from __future__ import annotations

import ipaddress
from typing import Any


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


def truck_dhcp_pool(lan: str, reserved: list[str]) -> dict[str, Any]:
    """The DHCP pool of a truck LAN: its upper half, minus nothing the nodes use.

    The nodes are configured statically; devices plugged in at the tech zone (laptops,
    transponder base stations) get the upper half, so the pool must not hold a node's address.
    """
    net = ipaddress.ip_network(lan)
    if net.num_addresses < 8:
        raise ValueError(f"LAN {lan} is too small for a DHCP pool")
    start = net.network_address + net.num_addresses // 2
    end = net.broadcast_address - 1
    taken = [a for a in map(ipaddress.ip_address, reserved) if start <= a <= end]
    if taken:
        raise ValueError(f"node address(es) {', '.join(map(str, taken))} fall in the DHCP pool {start}-{end}")
    return {"start": str(start), "end": str(end), "netmask": str(net.netmask)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "truck_host_offset": truck_host_offset,
            "truck_vlan_address": truck_vlan_address,
            "truck_dhcp_pool": truck_dhcp_pool,
        }
