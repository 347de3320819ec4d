"""The commands' typed results: `to_json()` is the JSON envelope's `result`, keys in the order the envelope
has always had them (sections appear where the run reached them)."""

from __future__ import annotations

from tests.unit.lifecycle.fakes import truck_result
from truckctl.lifecycle.down import DownResult
from truckctl.lifecycle.drift import DriftFound, DriftItem, DriftResult, summary_line
from truckctl.lifecycle.finished import RunEnd
from truckctl.lifecycle.orchestrator import UpResult
from truckctl.lifecycle.plan import OfflineMove, PlanResult, PlanTotals
from truckctl.lifecycle.prechecks import Check, HopCheck, PrecheckReport
from truckctl.lifecycle.racelive import Held, Liveness, NotChecked
from truckctl.truck.events import Change

LIVE = Liveness(True, ("inside the race window",), None, "2027-05-08 11:00-17:30 Europe/Rome")
ENDED = RunEnd("run-1", ({"channel": "webhook"},))


def test_up_puts_a_cloud_that_ran_beside_the_truck_tier_after_it() -> None:
    base = UpResult("stage-1", "lab", "all", None, prechecks={"ok": True}, cloud={"mode": "offline plan"},
                    cloud_source="the stand-in", truck=truck_result(False, []), ended=ENDED)
    assert list(base.to_json()) == ["stage", "target", "tier", "limit", "prechecks", "cloud", "cloud_source",
                                    "truck", "run_id", "notifications"]
    beside = UpResult("stage-1", "lab", "all", None, prechecks={"ok": True}, cloud={"mode": "offline plan"},
                      cloud_after_truck=True, live=LIVE, truck=truck_result(False, []),
                      held=(Held("truck-a-gw", "Restart mosquitto", "would run"),), held_reason="live",
                      smoke={"checked": True}, unreachable=("truck-b-hv2",))
    assert list(beside.to_json()) == ["stage", "target", "tier", "limit", "prechecks", "live", "truck", "held",
                                      "held_reason", "cloud", "smoke", "unreachable"]
    assert beside.failed_at("truck")["failed_step"] == "truck"
    assert base.to_json()["notifications"] == [{"channel": "webhook"}]


def test_drift_items_keep_their_fields_and_the_result_its_sections() -> None:
    item = DriftItem("truck", "truck-a-gw", "unit", "mosquitto", "enabled and active", "not active")
    found = DriftFound((item, DriftItem("cloud", None, "cloud-resource", "datalake", "declared", "differs")),
                       truck_result(True, [Change("truck-a-gw", "Run the broker", "start mosquitto")]),
                       {"checked": True, "drifted": ["datalake"]})
    assert item.to_json() == {"tier": "truck", "node": "truck-a-gw", "kind": "unit", "item": "mosquitto",
                              "expected": "enabled and active", "found": "not active", "diff": ""}
    assert summary_line(found) == "cloud: 1, truck-a-gw: 1"
    clean = DriftFound((), found.truck, {"checked": False})
    fixed = DriftResult("stage-1", "lab", found, fixed=True, live=NotChecked("not checked"), held=(),
                        held_reason="none held", applied={"truck": {"changed": 1}}, after=clean, ended=ENDED)
    body = fixed.to_json()
    assert list(body) == ["stage", "target", "drift", "items", "truck", "cloud", "fixed", "live", "held",
                          "held_reason", "applied", "after", "run_id", "notifications"]
    assert body["live"] == {"live": None, "reasons": ["not checked"]} and body["held"] == []
    assert body["after"]["drift"] is False
    refused = DriftResult("stage-1", "lab", found, fix="not applied").to_json()
    assert list(refused)[-2:] == ["fixed", "fix"]


def test_down_revokes_before_or_after_the_truck_tier_as_the_target_orders_it() -> None:
    first = DownResult("stage-1", "aws", False, "race", None, (), revoke={"certificates": []}, truck={"ok": True},
                       cloud={"destroyed": True}, kept=(), deleted=())
    assert list(first.to_json()) == ["stage", "target", "delete_data", "scope", "resumed_from", "skipped_steps",
                                     "revoke", "truck", "cloud", "kept", "deleted"]
    after = DownResult("stage-1", "lab", False, "race", "run-0", ("truck",), live=LIVE, revoke={"revoked": []},
                       revoke_after_truck=True, truck={"ok": True}, note="kept", kept=(), deleted=())
    assert list(after.to_json()) == ["stage", "target", "delete_data", "scope", "resumed_from", "skipped_steps",
                                     "live", "truck", "revoke", "note", "kept", "deleted"]


def test_prechecks_show_only_what_each_check_saw() -> None:
    report = PrecheckReport()
    report.add("configuration", [], Check(stage="stage-1"))
    report.add("management-path", [], Check(hops=(HopCheck("cloud-gw", "10.0.0.1:22", "jump", True, ""),)))
    report.add("clock", [], Check(max_skew_s=2.0))
    assert report.as_dict() == {"ok": True, "checks": {
        "configuration": {"ok": True, "stage": "stage-1"},
        "management-path": {"ok": True, "hops": [{"hop": "cloud-gw", "address": "10.0.0.1:22", "user": "jump",
                                                  "ok": True, "detail": ""}]},
        "clock": {"ok": True, "max_skew_s": 2.0}}}


def test_plan_results_and_the_offline_move() -> None:
    one = PlanResult("lab", "offline", "note", stage="stage-2", cloud={"counts": {}}, move={"policy": []})
    assert list(one.to_json()) == ["target", "mode", "note", "stage", "cloud", "move"]
    every = PlanResult("lab", "offline", "note", race={}, stages=({"stage": "stage-1"},),
                       totals=PlanTotals(1, 67, {"create": 0}, 0))
    assert list(every.to_json()) == ["target", "mode", "note", "race", "stages", "totals"]
    assert every.to_json()["totals"] == {"stages": 1, "race_resources": 67, "moves": {"create": 0}, "violations": 0}
    assert OfflineMove({"policy": []}).to_json() == {"policy": []}
    assert OfflineMove({"policy": []}, {"from": None}).to_json() == {"policy": [], "move": {"from": None}}
