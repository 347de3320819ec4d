"""Address arithmetic used by the network role's templates (playbooks/roles/network/filter_plugins)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.helpers import REPO


def load() -> ModuleType:
    path = REPO / "playbooks" / "roles" / "network" / "filter_plugins" / "truck_net.py"
    spec = importlib.util.spec_from_file_location("truck_net", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


net = load()


def test_vlan_address_keeps_the_host_position() -> None:
    assert net.truck_vlan_address("10.31.1.12", "10.31.1.0/24", "10.31.10.0/24") == "10.31.10.12/24"
    assert net.truck_vlan_address("10.31.1.200", "10.31.0.0/23", "10.31.20.0/23") == "10.31.21.200/23"


def test_vlan_too_small_or_address_outside_lan_is_an_error() -> None:
    with pytest.raises(ValueError):
        net.truck_vlan_address("10.31.1.12", "10.31.1.0/24", "10.31.10.0/29")
    with pytest.raises(ValueError):
        net.truck_host_offset("10.32.1.12", "10.31.1.0/24")


def test_dhcp_pool_is_the_upper_half_and_refuses_node_addresses() -> None:
    assert net.truck_dhcp_pool("10.31.1.0/24", ["10.31.1.11"]) == {
        "start": "10.31.1.128", "end": "10.31.1.254", "netmask": "255.255.255.0"}
    with pytest.raises(ValueError, match=r"10\.31\.1\.200"):
        net.truck_dhcp_pool("10.31.1.0/24", ["10.31.1.200"])


def test_filters_are_registered() -> None:
    assert set(net.FilterModule().filters()) == {"truck_host_offset", "truck_vlan_address", "truck_dhcp_pool"}
