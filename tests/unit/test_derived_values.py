"""validate accepts exactly what the run's derivations accept (issue 13).

The network role derives each node's VLAN addresses and the gateway's DHCP pool (its filter plugin),
the stack derives the VPC, subnets and each truck's VPN tunnel address (truckctl.config.addressing).
For the shipped race and for generated races (truck and node counts, LAN and VLAN sizes, address
plans, cloud CIDRs), `load_stage` (what `validate` runs) succeeds exactly when every derivation the
run would make succeeds; when it refuses, each error is one line naming the file and field.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import REPO
from truckctl.config.addressing import cloud_layout
from truckctl.config.loader import load_stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project
from truckctl.truck.inventory import render_inventory

DERIVED_CODES = {"address-in-dhcp-pool", "derived-dhcp-pool", "derived-vlan-address", "derived-vpn-address"}


def _filter_plugin() -> ModuleType:
    path = REPO / "playbooks" / "roles" / "network" / "filter_plugins" / "truck_net.py"
    spec = importlib.util.spec_from_file_location("truck_net_derived", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NET = _filter_plugin().FilterModule().filters()


def run_derivations(race: dict[str, Any], stage_trucks: list[str]) -> list[str]:
    """Every derivation a run makes, called as the templates and the stack call them, on the raw values."""
    failures = []
    by_name = {t["name"]: t for t in race["trucks"]}
    order = [t["name"] for t in race["trucks"]]
    layout = cloud_layout(ipaddress.ip_network(race["cloud"]["cidr"]))
    for name in stage_trucks:
        truck = by_name[name]
        addresses = [n["address"] for n in truck["nodes"]]
        try:  # dnsmasq-truck.conf.j2, on the gateway
            NET["truck_dhcp_pool"](truck["lan"], addresses)
        except ValueError as exc:
            failures.append(f"dhcp: {exc}")
        for vlan in truck["vlans"]:  # vlan.network.j2, on every node
            for address in addresses:
                try:
                    NET["truck_vlan_address"](address, truck["lan"], vlan["cidr"])
                except ValueError as exc:
                    failures.append(f"vlan: {exc}")
        try:  # stacks/race_cloud/config.py from_stage
            layout.vpn_truck_address(order.index(name))
        except ValueError as exc:
            failures.append(f"vpn: {exc}")
    return failures


def validate(root: Path, race: dict[str, Any], stage_trucks: list[str]) -> list[str]:
    """The problems `validate` reports for stage-1 (empty: accepted)."""
    (root / "inventory" / "race.yaml").write_text(yaml.safe_dump(race, sort_keys=False))
    stage = yaml.safe_load((REPO / "inventory" / "stages" / "stage-1.yaml").read_text())
    stage["tech_zone"] = {"name": "generated", "trucks": stage_trucks}
    (root / "inventory" / "stages" / "stage-1.yaml").write_text(yaml.safe_dump(stage, sort_keys=False))
    try:
        loaded = load_stage(Project(root), "stage-1")
    except TruckctlError as exc:
        assert exc.exit_code == ExitCode.INVALID_CONFIG
        lines = [p.line() for p in exc.problems]
        assert all("\n" not in line and "inventory/" in line for line in lines), lines
        assert {p.code for p in exc.problems} <= DERIVED_CODES, lines  # generated races break nothing else
        return lines
    render_inventory(loaded)
    return []


@st.composite
def races(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A race whose only possible faults are derived ones: distinct, non-overlapping, in-LAN addresses."""
    race = yaml.safe_load((REPO / "inventory" / "race.yaml").read_text())
    race["cloud"]["cidr"] = f"10.100.0.0/{draw(st.integers(16, 24))}"
    fillers = draw(st.integers(0, 12))  # trucks before the stage's ones: they shift the VPN tunnel index
    count = draw(st.integers(1, min(4, 16 - fillers)))
    trucks = [{"name": f"filler-{i}", "lan": f"10.200.{i}.0/24", "vlans": [],
               "nodes": [{"name": f"filler-{i}-gw", "role": "gateway", "address": f"10.200.{i}.1"}]}
              for i in range(fillers)]
    names = []
    for t in range(count):
        prefix = draw(st.integers(22, 30))
        lan = ipaddress.ip_network(f"10.{50 + t}.0.0/{prefix}")
        hosts = lan.num_addresses - 2
        offsets = draw(st.lists(st.integers(1, hosts), min_size=1, max_size=min(5, hosts), unique=True))
        vlans = [{"id": 100 + v, "name": f"v{v}", "cidr": f"10.{50 + t}.{64 + 4 * v}.0/{draw(st.integers(22, 30))}"}
                 for v in range(draw(st.integers(0, 3)))]
        name = f"truck-{chr(97 + t)}"
        names.append(name)
        trucks.append({
            "name": name, "lan": str(lan), "vlans": vlans,
            "nodes": [{"name": f"{name}-n{i}", "role": "gateway" if i == 0 else "compute",
                       "address": str(lan.network_address + off)} for i, off in enumerate(offsets)],
        })
    race["trucks"] = trucks
    return race, names


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "inventory", tmp_path / "inventory")
    for extra in (tmp_path / "inventory" / "stages").glob("*.yaml"):
        if extra.name != "stage-1.yaml":
            extra.unlink()
    return tmp_path


def test_the_shipped_race_derives_cleanly(root: Path) -> None:
    race = yaml.safe_load((REPO / "inventory" / "race.yaml").read_text())
    for stage_trucks in (["truck-a", "truck-b"], ["truck-a"], ["truck-b"]):
        assert run_derivations(race, stage_trucks) == []
        assert validate(root, race, stage_trucks) == []


def test_a_node_in_the_dhcp_pool_is_refused_with_its_file_and_field(root: Path) -> None:
    race = yaml.safe_load((REPO / "inventory" / "race.yaml").read_text())
    race["trucks"][0]["nodes"][2]["address"] = "10.31.1.200"  # the gateway's pool is .128-.254
    assert run_derivations(race, ["truck-a", "truck-b"])  # the run would fail on it half-way
    [line] = validate(root, race, ["truck-a", "truck-b"])
    assert "inventory/race.yaml" in line and "trucks[0].nodes[2].address" in line
    assert "10.31.1.200" in line and "DHCP pool 10.31.1.128-10.31.1.254" in line


def test_a_vlan_too_small_for_a_node_is_refused(root: Path) -> None:
    race = yaml.safe_load((REPO / "inventory" / "race.yaml").read_text())
    race["trucks"][1]["vlans"][0]["cidr"] = "10.32.10.0/29"  # host position 13 does not fit in a /29
    assert run_derivations(race, ["truck-b"])
    [line] = validate(root, race, ["truck-b"])
    assert "trucks[1].vlans[0].cidr" in line and "truck-b-hv2" in line


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=races())
def test_validate_accepts_exactly_what_the_run_derives(root: Path, generated: tuple[dict[str, Any], list[str]]
                                                       ) -> None:
    race, stage_trucks = generated
    derivation_failures = run_derivations(race, stage_trucks)
    problems = validate(root, race, stage_trucks)
    event("refused" if problems else "accepted")
    assert bool(problems) == bool(derivation_failures), (problems, derivation_failures)
