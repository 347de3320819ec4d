"""Address arithmetic for the truck roles (ansible-core ships no ipaddr filter).

The functions live in truckctl.config.derived, so that `truckctl validate` checks every derived
address with the very code the templates use (a run can never fail on one validate accepted).
"""

from __future__ import annotations

from typing import Any

from truckctl.config.derived import truck_dhcp_pool, truck_host_offset, truck_vlan_address


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "truck_host_offset": truck_host_offset,
            "truck_vlan_address": truck_vlan_address,
            "truck_dhcp_pool": truck_dhcp_pool,
        }
