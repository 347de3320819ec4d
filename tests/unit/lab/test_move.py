"""The daily move's plan: which nodes stop, start, are built or re-addressed, from two stages' lab plans
(pure: the shipped stages, and copies edited as a race would have them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from truckctl.config.loader import load_stage
from truckctl.errors import TruckctlError
from truckctl.lab.move import parked_after, plan_move
from truckctl.lab.plan import LabPlan, plan_lab
from truckctl.project import Project

LAB = "abc123"
TRUCK_A = ("truck-a-gw", "truck-a-hv1", "truck-a-hv2")
TRUCK_B = ("truck-b-gw", "truck-b-hv1", "truck-b-hv2")


def lab_plan(root: Path, stage: str) -> LabPlan:
    return plan_lab(load_stage(Project(root), stage), LAB)


def leave_out(root: Path, stage: str, truck: str) -> None:
    """The stage's tech zone without `truck` (no shipped stage leaves one out)."""
    path = root / "inventory" / "stages" / f"{stage}.yaml"
    text = path.read_text()
    assert "trucks: [truck-a, truck-b]" in text
    path.write_text(text.replace("trucks: [truck-a, truck-b]", "trucks: [" + ("truck-a" if truck == "truck-b"
                                                                              else "truck-b") + "]"))


def test_the_next_day_with_the_same_trucks_changes_no_node(example_project: Path) -> None:
    move = plan_move(lab_plan(example_project, "stage-1"), [], lab_plan(example_project, "stage-2"))
    assert (move.from_stage, move.to_stage) == ("stage-1", "stage-2")
    assert move.keep == TRUCK_A + TRUCK_B
    assert not (move.stop or move.start or move.build or move.readdress)
    assert not (move.trucks_parked or move.trucks_joined or move.trucks_readdressed)
    assert move.changes  # the stage itself changes: the stand-in is told


def test_a_truck_on_another_lan_is_readdressed_and_nothing_else(example_project: Path) -> None:
    stage7 = lab_plan(example_project, "stage-7")
    move = plan_move(lab_plan(example_project, "stage-6"), [], stage7)
    assert move.readdress == TRUCK_A and move.keep == TRUCK_B
    assert move.trucks_readdressed == ("truck-a",)
    assert not (move.stop or move.start or move.build)
    assert {n.name: n.address for n in stage7.truck_nodes if n.truck == "truck-a"} == {
        "truck-a-gw": "10.33.1.11", "truck-a-hv1": "10.33.1.12", "truck-a-hv2": "10.33.1.13"}
    back = plan_move(stage7, [], lab_plan(example_project, "stage-8"))
    assert back.readdress == TRUCK_A and back.trucks_readdressed == ("truck-a",)


def test_an_absent_truck_is_parked_and_comes_back_on_a_later_day(example_project: Path) -> None:
    leave_out(example_project, "stage-2", "truck-b")
    stage1, stage2, stage7 = (lab_plan(example_project, s) for s in ("stage-1", "stage-2", "stage-7"))
    day2 = plan_move(stage1, [], stage2)
    assert day2.stop == TRUCK_B and day2.keep == TRUCK_A and day2.trucks_parked == ("truck-b",)
    assert not (day2.start or day2.build or day2.readdress)
    parked = parked_after(stage1, [], stage2)
    assert tuple(n.name for n in parked) == TRUCK_B
    # stage-7: truck-b back (switched on, not built), truck-a on its ITT paddock LAN
    day7 = plan_move(stage2, parked, stage7)
    assert day7.start == TRUCK_B and not day7.build and not day7.stop
    assert day7.readdress == TRUCK_A and day7.trucks_readdressed == ("truck-a",)
    assert day7.trucks_joined == ("truck-b",) and day7.keep == ()
    assert parked_after(stage2, parked, stage7) == []


def test_a_parked_truck_that_returns_on_another_lan_is_readdressed_before_it_starts(example_project: Path) -> None:
    leave_out(example_project, "stage-6", "truck-a")
    stage5, stage6, stage7 = (lab_plan(example_project, s) for s in ("stage-5", "stage-6", "stage-7"))
    parked = parked_after(stage5, [], stage6)
    assert tuple(n.name for n in parked) == TRUCK_A
    move = plan_move(stage6, parked, stage7)
    assert move.start == TRUCK_A and move.keep == ("truck-b-hv1", "truck-b-hv2")
    # truck-b-gw had the first uplink address on its own; truck-a's gateway takes it back
    assert move.readdress == (*TRUCK_A, "truck-b-gw")


def test_a_node_the_lab_never_had_is_built(example_project: Path) -> None:
    leave_out(example_project, "stage-1", "truck-b")
    move = plan_move(lab_plan(example_project, "stage-1"), [], lab_plan(example_project, "stage-2"))
    assert move.build == TRUCK_B and move.trucks_joined == ("truck-b",) and not move.start


def test_the_gateways_uplink_address_counts_as_an_address(example_project: Path) -> None:
    """Gateways take uplink addresses in the stage's truck order: a day without truck-a moves truck-b's."""
    leave_out(example_project, "stage-2", "truck-a")
    move = plan_move(lab_plan(example_project, "stage-1"), [], lab_plan(example_project, "stage-2"))
    assert move.stop == TRUCK_A and move.readdress == ("truck-b-gw",)
    assert move.keep == ("truck-b-hv1", "truck-b-hv2")


def test_a_move_the_lab_cannot_make_in_place_is_refused(example_project: Path) -> None:
    stage1, stage2 = lab_plan(example_project, "stage-1"), lab_plan(example_project, "stage-2")
    other_uplink = replace(stage2, uplink=replace(stage2.uplink, cidr="100.64.99.0/24"))
    with pytest.raises(TruckctlError) as err:
        plan_move(stage1, [], other_uplink)
    assert err.value.problems[0].code == "lab-move" and "lab down" in err.value.problems[0].message
    swapped = [replace(n, role="storage") if n.name == "truck-a-hv1" else n for n in stage2.nodes]
    with pytest.raises(TruckctlError, match="truck-a-hv1 is truck truck-a's compute"):
        plan_move(stage1, [], replace(stage2, nodes=swapped))
    with pytest.raises(TruckctlError, match="another race or lab"):
        plan_move(stage1, [], replace(stage2, lab_id="zzz999"))
