"""How the race's cloud CIDR is carved up: the VPC, its subnets and the management VPN tunnel.

Pure functions, shared by the Pulumi program (stacks/) and the truck tier (its VPN role needs the
same tunnel addresses), so both sides derive them from the one validated `cloud.cidr` and can
never disagree. The tunnel network sits inside the cloud CIDR, which validation keeps clear of
every truck network, but outside the VPC, so VPC route tables can point it at the VPN gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

# Addresses below this offset in the tunnel network are reserved for the gateway and ops peers.
_FIRST_TRUCK_OFFSET = 10


@dataclass(frozen=True)
class CloudLayout:
    vpc: IPv4Network
    public_subnets: tuple[IPv4Network, IPv4Network]
    private_subnets: tuple[IPv4Network, IPv4Network]
    vpn_tunnel: IPv4Network

    @property
    def vpn_gateway_address(self) -> IPv4Address:
        return self.vpn_tunnel.network_address + 1

    def vpn_truck_address(self, truck_index: int) -> IPv4Address:
        """The tunnel address of the n-th truck of the race (its index in the race file)."""
        address = self.vpn_tunnel.network_address + _FIRST_TRUCK_OFFSET + truck_index
        if address >= self.vpn_tunnel.broadcast_address:
            raise ValueError(f"truck index {truck_index} does not fit in the VPN tunnel {self.vpn_tunnel}")
        return address


def cloud_layout(cloud_cidr: IPv4Network) -> CloudLayout:
    """First half of the cloud CIDR is the VPC (4 subnets over 2 AZs); the tunnel is cut from the last part."""
    vpc, rest = cloud_cidr.subnets(prefixlen_diff=1)
    public_a, public_b, private_a, private_b = vpc.subnets(prefixlen_diff=2)
    # A /24 tunnel is plenty (16 trucks at most); smaller cloud ranges get what is left.
    tunnel_prefix = max(rest.prefixlen, 24)
    tunnel = list(rest.subnets(new_prefix=tunnel_prefix))[-1]
    return CloudLayout(vpc, (public_a, public_b), (private_a, private_b), tunnel)
