"""The lab's address plan and its refusals (pure: no root, no network)."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from truckctl.config.loader import load_stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lab import naming, registry
from truckctl.lab.plan import LabPlan, check_host_routes, parse_routes, plan_lab
from truckctl.project import Project

IP_ROUTE_JSON: list[dict[str, Any]] = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "192.0.2.2"},
    {"dst": "10.123.0.0/24", "dev": "trkscr0", "protocol": "kernel", "scope": "link"},
]


def stage1(root: Path) -> LabPlan:
    return plan_lab(load_stage(Project(root), "stage-1"), "abc123")


def edit_race(root: Path, old: str, new: str) -> None:
    race = root / "inventory" / "race.yaml"
    text = race.read_text()
    assert old in text
    race.write_text(text.replace(old, new))


def test_nodes_carry_the_stage_names_and_addresses(example_project: Path) -> None:
    plan = stage1(example_project)
    assert [(n.truck, n.name, n.address) for n in plan.truck_nodes] == [
        ("truck-a", "truck-a-gw", "10.31.1.11"), ("truck-a", "truck-a-hv1", "10.31.1.12"),
        ("truck-a", "truck-a-hv2", "10.31.1.13"), ("truck-b", "truck-b-gw", "10.32.1.11"),
        ("truck-b", "truck-b-hv1", "10.32.1.12"), ("truck-b", "truck-b-hv2", "10.32.1.13"),
    ]
    assert {n.prefixlen for n in plan.truck_nodes} == {24}


def test_host_takes_the_last_usable_address_of_each_truck_lan(example_project: Path) -> None:
    plan = stage1(example_project)
    assert [(t.name, t.host_address) for t in plan.trucks] == [("truck-a", "10.31.1.254"), ("truck-b", "10.32.1.254")]
    assert {n.host_address for n in plan.truck_nodes if n.truck == "truck-a"} == {"10.31.1.254"}


def test_uplink_holds_host_standin_and_only_the_gateways(example_project: Path) -> None:
    plan = stage1(example_project)
    assert plan.uplink.cidr == "100.64.10.0/24"
    assert plan.uplink.host_address == "100.64.10.1"
    assert plan.standin.address == plan.uplink.standin_address == "100.64.10.2"
    assert plan.standin.bridge == plan.uplink.bridge
    on_uplink = {n.name: n.uplink_address for n in plan.truck_nodes if n.uplink_address}
    assert on_uplink == {"truck-a-gw": "100.64.10.11", "truck-b-gw": "100.64.10.12"}
    assert all(n.uplink_veth for n in plan.truck_nodes if n.uplink_address)
    assert plan.stale_after_s == 20 and plan.vpn_port == 51820


def test_each_truck_has_its_own_bridge(example_project: Path) -> None:
    plan = stage1(example_project)
    bridges = {n.truck: n.bridge for n in plan.truck_nodes}
    assert len(set(bridges.values())) == 2
    assert plan.uplink.bridge not in bridges.values()


def test_node_on_the_host_address_is_refused(example_project: Path) -> None:
    edit_race(example_project, "{name: truck-b-hv2, role: storage, address: 10.32.1.13}",
              "{name: truck-b-hv2, role: storage, address: 10.32.1.254}")
    with pytest.raises(TruckctlError) as err:
        stage1(example_project)
    assert err.value.exit_code == ExitCode.INVALID_CONFIG
    message = str(err.value)
    assert "truck-b-hv2" in message and "10.32.1.254" in message and "\n" not in message


def test_uplink_overlapping_a_truck_lan_is_refused(example_project: Path) -> None:
    edit_race(example_project, "uplink_cidr: 100.64.10.0/24", "uplink_cidr: 10.31.0.0/16")
    with pytest.raises(TruckctlError, match=r"10\.31\.1\.0/24 .*overlaps|overlaps truck truck-a"):
        stage1(example_project)


def test_the_standin_name_is_reserved(example_project: Path) -> None:
    edit_race(example_project, "name: truck-a-hv2,", "name: cloud-standin,")
    with pytest.raises(TruckctlError, match="reserved"):
        stage1(example_project)


def test_parse_routes_skips_default_and_keeps_text() -> None:
    routes = parse_routes([*IP_ROUTE_JSON, {"dst": "10.9.9.9", "gateway": "192.0.2.1", "dev": "eth0"}])
    assert [r.text for r in routes] == ["192.0.2.0/24 dev eth0", "10.123.0.0/24 dev trkscr0",
                                       "10.9.9.9 via 192.0.2.1 dev eth0"]
    assert routes[-1].dst == IPv4Network("10.9.9.9/32")


def test_lab_overlapping_a_host_route_is_refused_naming_both(example_project: Path) -> None:
    plan = stage1(example_project)
    routes = parse_routes([*IP_ROUTE_JSON, {"dst": "10.32.0.0/16", "dev": "wg0", "scope": "link"}])
    with pytest.raises(TruckctlError) as err:
        check_host_routes(plan, routes, set())
    message = str(err.value)
    assert "10.32.1.0/24" in message and "'10.32.0.0/16 dev wg0'" in message and "\n" not in message


def test_uplink_overlapping_a_host_route_is_refused(example_project: Path) -> None:
    plan = stage1(example_project)
    with pytest.raises(TruckctlError, match=r"lab uplink .*100.64.10.0/24 overlaps this host's route '100.64.0.0/10"):
        check_host_routes(plan, parse_routes([{"dst": "100.64.0.0/10", "dev": "tailscale0"}]), set())


def test_routes_on_the_labs_own_bridges_are_not_conflicts(example_project: Path) -> None:
    plan = stage1(example_project)
    own: list[dict[str, Any]] = [{"dst": t.cidr, "dev": t.bridge} for t in plan.trucks]
    own.append({"dst": plan.uplink.cidr, "dev": plan.uplink.bridge})
    check_host_routes(plan, parse_routes(IP_ROUTE_JSON + own), set(plan.bridges()))
    with pytest.raises(TruckctlError):
        check_host_routes(plan, parse_routes(IP_ROUTE_JSON + own), set())


def test_plan_round_trips_and_fingerprint_follows_content(example_project: Path) -> None:
    plan = stage1(example_project)
    again = LabPlan.from_dict(plan.to_dict())
    assert again == plan and again.fingerprint() == plan.fingerprint()
    assert plan_lab(load_stage(Project(example_project), "stage-1"), "other1").fingerprint() != plan.fingerprint()


def test_interface_names_fit_and_never_collide(example_project: Path) -> None:
    plan = stage1(example_project)
    links = plan.bridges() + [n.veth for n in plan.nodes] + [n.uplink_veth for n in plan.nodes if n.uplink_veth]
    assert all(len(name) <= naming.IFNAME_MAX for name in links)
    assert len(set(links)) == len(links)
    assert not any(name.startswith(("trk", "scr")) for name in links)  # never the scratch lab's names
    other = plan_lab(load_stage(Project(example_project), "stage-1"), "zzz999")
    assert set(other.bridges()).isdisjoint(plan.bridges())


def test_a_route_of_another_truckctl_lab_names_the_command_that_clears_it(example_project: Path) -> None:
    plan = stage1(example_project)
    other = parse_routes([{"dst": plan.trucks[0].cidr, "dev": naming.truck_bridge("0ther1", "truck-a")}])
    with pytest.raises(TruckctlError) as err:
        check_host_routes(plan, other, set(), {"0ther1": Path("/srv/race-copy")})
    message = str(err.value)
    assert "taken by another truckctl lab" in message and "`truckctl -C /srv/race-copy lab down`" in message
    with pytest.raises(TruckctlError, match="in the project that brought it up"):
        check_host_routes(plan, other, set(), {})


def test_the_registry_lists_other_labs_with_their_projects(tmp_path: Path) -> None:
    registry.register("aaaaaa", tmp_path / "one", tmp_path / "reg")
    registry.register("bbbbbb", tmp_path / "two", tmp_path / "reg")
    assert registry.other_labs("aaaaaa", tmp_path / "reg") == {"bbbbbb": (tmp_path / "two").resolve()}
    assert registry.other_labs("aaaaaa", tmp_path / "missing") == {}
    assert naming.is_lab_link(naming.uplink_bridge("aaaaaa")) and not naming.is_lab_link("eth0")
