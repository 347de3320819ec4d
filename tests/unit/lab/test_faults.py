"""The drills' pure parts: kinds, targets (and their refusals), what a drill records, the CRL hold.

The drills themselves run for real on the lab in tests/lab/test_drills.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from truckctl.config.loader import load_stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lab import faults, naming
from truckctl.lab import state as st
from truckctl.lab.pki import LabPki, client_id
from truckctl.lab.plan import LabPlan, plan_lab
from truckctl.project import Project


def stage1(root: Path) -> LabPlan:
    return plan_lab(load_stage(Project(root), "stage-1"), "abc123")


def test_every_incident_kind_of_the_contract_has_a_drill() -> None:
    incidents = {"uplink-down", "cloud-unreachable", "tls-refused", "broker-down", "bridge-down", "feed-silent",
                 "node-down", "heartbeat-stopped", "clock-skew", "address-conflict"}
    assert {incident for _, incident in faults.KINDS.values()} == incidents
    assert len(faults.KINDS) == 11


def test_targets_resolve_to_the_truck_its_gateway_a_node_or_an_address(example_project: Path) -> None:
    plan = stage1(example_project)
    cable = faults.resolve(plan, "cable", "truck-b")
    assert (cable.truck, cable.node and cable.node.name) == ("truck-b", "truck-b-gw")
    cut = faults.resolve(plan, "node-cut", "truck-a-hv2")
    assert (cut.truck, cut.address) == ("truck-a", "10.31.1.13")
    impostor = faults.resolve(plan, "impostor", "10.32.1.12")
    assert (impostor.truck, impostor.node and impostor.node.name) == ("truck-b", "truck-b-hv1")


def test_a_left_out_target_is_the_first_truck_or_its_first_non_gateway_node(example_project: Path) -> None:
    plan = stage1(example_project)
    assert faults.resolve(plan, "broker-stop", None).name == "truck-a"
    assert faults.resolve(plan, "heartbeat-stop", None).name == "truck-a-hv1"
    assert faults.resolve(plan, "impostor", None).name == "10.31.1.12"


@pytest.mark.parametrize(("kind", "target", "expected"), [
    ("cable", "truck-z", "cable takes a truck of the lab, not 'truck-z' (trucks: truck-a, truck-b)"),
    ("node-off", "truck-a", "node-off takes a truck node of the lab, not 'truck-a'"),
    ("node-off", "cloud-standin", "node-off takes a truck node of the lab, not 'cloud-standin'"),
    ("impostor", "10.31.1.99", "impostor takes one of the stage's node addresses, not '10.31.1.99'"),
    ("impostor", "truck-a-hv1", "impostor takes one of the stage's node addresses, not 'truck-a-hv1'"),
    ("unplug", "truck-a", "no drill 'unplug' (drills: cable, cloud-block,"),
])
def test_a_bad_kind_or_target_is_one_usage_line(example_project: Path, kind: str, target: str, expected: str) -> None:
    with pytest.raises(TruckctlError) as info:
        faults.resolve(stage1(example_project), kind, target)
    assert info.value.exit_code == ExitCode.USAGE
    [problem] = info.value.problems
    assert problem.message.startswith(expected) and "\n" not in problem.message


def test_the_nft_rules_of_cloud_block_drop_both_ways_and_bridge_stop_resets_only_the_broker(
        example_project: Path) -> None:
    plan = stage1(example_project)
    host = plan.uplink.standin_address
    block = faults._nft_rules("cloud-block", plan)
    assert f"ip daddr {host} tcp dport 8883 drop" in block and f"ip saddr {host} tcp sport 8883 drop" in block
    bridge = faults._nft_rules("bridge-stop", plan)
    assert "meta skuid mosquitto" in bridge and "reject with tcp reset" in bridge and " drop" not in bridge
    assert "table inet truckctl_drill_cloud_block" in block and "table inet truckctl_drill_bridge_stop" in bridge


def test_the_impostor_has_a_fixed_locally_administered_mac_and_lab_names(example_project: Path) -> None:
    plan = stage1(example_project)
    netns, link, mac = faults._impostor_names(plan, "10.31.1.12")
    assert int(mac.split(":")[0], 16) & 0x02 and not int(mac.split(":")[0], 16) & 0x01
    assert faults.impostor_mac(plan, "10.31.1.12") == mac != faults.impostor_mac(plan, "10.31.1.13")
    assert naming.is_lab_link(link) and len(link) <= naming.IFNAME_MAX
    assert netns.startswith(f"tl-{plan.lab_id}-")


def crl_serials(pki: LabPki) -> set[int]:
    return {r.serial_number for r in x509.load_pem_x509_crl(pki.crl_pem())}


def test_a_held_certificate_is_on_the_crl_until_released_and_keeps_its_files(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    issued = pki.ensure_client("truck-truck-a", client_id("gdf27", "truck-a"))
    serial = pki.hold("truck-truck-a")
    assert serial == issued.serial and int(serial, 16) in crl_serials(pki)
    assert issued.cert.exists() and issued.key.exists()
    pki.release(serial)
    assert crl_serials(pki) == set()
    assert pki.hold("truck-nobody") is None


def test_a_revocation_is_still_one_that_drops_the_files(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    issued = pki.ensure_client("truck-truck-a", client_id("gdf27", "truck-a"))
    serial = pki.revoke("truck-truck-a")
    assert serial is not None and int(serial, 16) in crl_serials(pki) and not issued.cert.exists()


def test_lab_down_releases_a_held_certificate_and_nothing_else(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    pki.ensure_client("truck-truck-a", client_id("gdf27", "truck-a"))
    pki.ensure_client("truck-truck-b", client_id("gdf27", "truck-b"))
    held = pki.hold("truck-truck-a")
    revoked = pki.revoke("truck-truck-b")  # truckctl down's revocation: stays
    assert held is not None and revoked is not None
    drills = [st.Resource(st.DRILL, "revoke-cert:truck-a", {"drill": "revoke-cert", "undo": {"serial": held}}),
              st.Resource(st.DRILL, "cable:truck-a", {"drill": "cable", "undo": {"link": "tlw00000000"}})]
    faults.teardown(drills, lambda: pki)
    assert crl_serials(pki) == {int(revoked, 16)}


def test_drills_are_undone_first_when_the_lab_goes_down() -> None:
    assert st.TEARDOWN_ORDER[0] == st.DRILL
