"""Host-side names: short enough for Linux, stable, and distinct per lab."""

from __future__ import annotations

from pathlib import Path

from truckctl.lab import naming


def test_lab_id_is_stable_per_state_dir(tmp_path: Path) -> None:
    assert naming.lab_id(tmp_path / "a") == naming.lab_id(tmp_path / "a")
    assert naming.lab_id(tmp_path / "a") != naming.lab_id(tmp_path / "b")
    assert len(naming.lab_id(tmp_path)) == 6


def test_link_names_are_at_most_15_characters_even_for_long_node_names() -> None:
    long_node = "n" * 32
    for name in (naming.truck_bridge("abc123", long_node), naming.uplink_bridge("abc123"),
                 naming.lan_veth("abc123", long_node), naming.uplink_veth("abc123", long_node)):
        assert len(name) <= naming.IFNAME_MAX
        assert name.startswith("tl")


def test_a_nodes_two_veths_differ_and_are_deterministic() -> None:
    assert naming.lan_veth("abc123", "truck-a-gw") != naming.uplink_veth("abc123", "truck-a-gw")
    assert naming.lan_veth("abc123", "truck-a-gw") == naming.lan_veth("abc123", "truck-a-gw")
    assert naming.lan_veth("abc123", "truck-a-gw") != naming.lan_veth("abc124", "truck-a-gw")


def test_namespaces_machines_and_cgroups_are_readable_and_lab_scoped() -> None:
    assert naming.netns("abc123", "truck-a-gw") == "tl-abc123-truck-a-gw"
    assert naming.machine("abc123", "truck-a-gw") == "tl-abc123-truck-a-gw"
    assert naming.cgroup("abc123", "truck-a-gw") == "truckctl-lab-abc123/truck-a-gw"
    assert naming.cgroup("abc123", "x").startswith(naming.cgroup_parent("abc123") + "/")
