"""A stage move: the diff between two plans of the race's stack, its replacement table, and the rules
that a move replaces nothing holding data or identity (the two-plan rule, and the one-plan rule
CrossGuard runs)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.helpers import REPO
from tests.unit.cloud.support import Plan
from truckctl.cloud import policy, replacement
from truckctl.cloud.moves import MOVE_RULE, diff
from truckctl.cloud.offline import plan_move
from truckctl.cloud.resources import PlannedResource
from truckctl.project import Project

STACK = "urn:pulumi:gdf27::truckctl-race::"
THING = "aws:iot/thing:Thing"
CERT = "aws:iot/certificate:Certificate"
RULE = "aws:iot/topicRule:TopicRule"
ROUTE = "aws:ec2/route:Route"


def res(type_: str, logical: str, **inputs: Any) -> PlannedResource:
    return PlannedResource(type_, logical, inputs, urn=f"{STACK}{type_}::{logical}")


def ops(move: Any) -> dict[str, str]:
    return {c.name: c.op for c in move.changes}


# ---- the diff ----------------------------------------------------------------------------------

def test_same_urn_and_inputs_is_unchanged_other_inputs_update_replace_on_inputs_replace() -> None:
    before = [res(RULE, "rule", name="r", sql="stage-1"), res(ROUTE, "lan", destination_cidr_block="10.31.1.0/24",
                                                               route_table_id="rt"),
              res(THING, "thing", name="gdf27-truck-a")]
    after = [res(RULE, "rule", name="r", sql="stage-2"), res(ROUTE, "lan", destination_cidr_block="10.33.1.0/24",
                                                              route_table_id="rt"),
             res(THING, "thing", name="gdf27-truck-a")]
    move = diff(before, after, "stage-2", "stage-1")
    assert ops(move) == {"rule": "update", "lan": "replace"}
    assert move.counts == {"create": 0, "update": 1, "replace": 1, "delete": 0, "same": 1}
    lan = next(c for c in move.changes if c.name == "lan")
    assert lan.keys == ("destination_cidr_block",) and lan.replaced_on == ("destination_cidr_block",)
    assert move.violations() == []  # a route and a rule hold nothing


def test_a_urn_only_before_is_deleted_only_after_is_created() -> None:
    alarm = res("aws:cloudwatch/metricAlarm:MetricAlarm", "truck-b-telemetry-stopped", name="a")
    move = diff([alarm], [res("aws:cloudwatch/metricAlarm:MetricAlarm", "truck-c-telemetry-stopped", name="c")],
                "stage-3", "stage-2")
    assert ops(move) == {"truck-c-telemetry-stopped": "create", "truck-b-telemetry-stopped": "delete"}
    assert move.violations() == []  # an absent truck's alarm goes: quiet, not alarming


def test_from_nothing_everything_is_created_and_nothing_lost() -> None:
    move = diff([], [res(THING, "thing", name="t"), res(CERT, "cert")], "stage-1", None)
    assert ops(move) == {"thing": "create", "cert": "create"} and move.violations() == []


def test_dotted_and_conditional_replace_on_inputs() -> None:
    instance = "aws:ec2/instance:Instance"
    base = res(instance, "vpn", ami="ami-1", user_data="a", user_data_replace_on_change=True,
               root_block_device={"encrypted": True, "volume_size": 8})
    assert replacement.replacing_keys(base, replace(base, inputs={**base.inputs, "user_data": "b"})) == ("user_data",)
    quiet = replace(base, inputs={**base.inputs, "user_data_replace_on_change": False})
    assert replacement.replacing_keys(quiet, replace(quiet, inputs={**quiet.inputs, "user_data": "b"})) == ()
    bigger = replace(base, inputs={**base.inputs, "root_block_device": {"encrypted": True, "volume_size": 16}})
    assert replacement.replacing_keys(base, bigger) == ()  # a volume grows in place
    clear = replace(base, inputs={**base.inputs, "root_block_device": {"encrypted": False, "volume_size": 8}})
    assert replacement.replacing_keys(base, clear) == ("root_block_device.encrypted",)


def test_unknown_types_are_replaced_on_their_name() -> None:
    old, new = res("aws:foo/bar:Bar", "x", name="a", size=1), res("aws:foo/bar:Bar", "x", name="b", size=1)
    assert replacement.replacing_keys(old, new) == ("name",)


# ---- the move rule (two plans) ---------------------------------------------------------------------

@pytest.mark.parametrize(("before", "after", "op"), [
    (res("aws:s3/bucket:Bucket", "datalake", bucket="gdf27-stage-1-datalake"),
     res("aws:s3/bucket:Bucket", "datalake", bucket="gdf27-stage-2-datalake"), "replace"),
    (res("aws:kinesis/stream:Stream", "telemetry-stream", name="gdf27-stage-1-telemetry"),
     res("aws:kinesis/stream:Stream", "telemetry-stream", name="gdf27-stage-2-telemetry"), "replace"),
    (res(THING, "truck-a-thing", name="gdf27-stage-1-truck-a"),
     res(THING, "truck-a-thing", name="gdf27-stage-2-truck-a"), "replace"),
    (res("aws:ec2/eip:Eip", "vpn-eip", domain="vpc"), res("aws:ec2/eip:Eip", "vpn-eip", domain="standard"), "replace"),
    (res(CERT, "truck-a-cert"), None, "delete"),
    (res("aws:kms/key:Key", "key", key_usage="ENCRYPT_DECRYPT"), None, "delete"),
])
def test_the_move_rule_fails_a_move_that_loses_data_or_identity(before: PlannedResource, after: PlannedResource | None,
                                                                op: str) -> None:
    move = diff([before], [after] if after else [], "stage-2", "stage-1")
    (violation,) = move.violations()
    assert violation.rule == MOVE_RULE and violation.resource == before.name
    assert f"would {op} it" in violation.message and replacement.holds(before.type) in violation.message


def test_the_move_rule_passes_what_holds_data_updated_in_place() -> None:
    bucket = res("aws:s3/bucket:Bucket", "datalake", bucket="gdf27-datalake", tags={"a": "1"})
    move = diff([bucket], [replace(bucket, inputs={**bucket.inputs, "tags": {"a": "2"}})], "stage-2", "stage-1")
    assert ops(move) == {"datalake": "update"} and move.violations() == []


def test_a_deliberate_rotation_may_replace_the_certificate_it_names() -> None:
    old, new = res(CERT, "truck-a-cert"), res(CERT, "truck-a-cert-g1")
    move = diff([old], [new], "stage-4", "stage-4")
    assert [v.resource for v in move.violations()] == ["truck-a-cert"]
    assert diff([old], [new], "stage-4", "stage-4", allowed=frozenset({old.urn})).violations() == []


# ---- the one-plan rule (CrossGuard can run it) -------------------------------------------------------

def test_race_long_identity_passes_names_without_a_stage() -> None:
    resources = [res(THING, "truck-a-thing", name="gdf27-truck-a"), res(CERT, "truck-a-cert-g2"),
                 res("aws:s3/bucket:Bucket", "datalake", bucket="gdf27-datalake-123456789012"),
                 res(RULE, "truck-a-telemetry-rule", name="gdf27_truck_a_telemetry", sql="'stage-4' AS stage")]
    assert policy.race_long_identity(resources) == []  # a topic rule holds nothing: it may name the day


def test_race_long_identity_fails_a_stage_in_a_name_or_a_replace_on_input() -> None:
    resources = [res(THING, "truck-a-thing", name="gdf27-stage-1-truck-a"), res(CERT, "stage-1-truck-a-cert"),
                 res("aws:s3/bucket:Bucket", "datalake", bucket="gdf27-stage_12-datalake"),
                 res("aws:ssm/parameter:Parameter", "vpn-private-key", name="/truckctl/gdf27/stage-3/vpn/key")]
    found = {(v.resource, v.message.split(" ")[0]) for v in policy.race_long_identity(resources)}
    assert found == {("truck-a-thing", "name"), ("stage-1-truck-a-cert", "its"), ("datalake", "bucket"),
                     ("vpn-private-key", "name")}
    assert "race-long-identity" in {r.name for r in policy.RULES}  # so the CrossGuard pack runs it too


# ---- the real stack -------------------------------------------------------------------------------

def test_every_type_of_the_race_stack_is_in_the_replacement_table(plan1: Plan) -> None:
    """No resource of the stack falls back to the default (name only): its replace-on inputs are written down."""
    missing = sorted({r.type for r in plan1.resources} - set(replacement.REPLACE_ON))
    assert missing == []


def test_moving_stage_1_to_2_to_7_replaces_no_data_or_identity_resource() -> None:
    """The issue's offline-plan test: two mornings in a row, the second one moving truck-a to another LAN."""
    project = Project(REPO)
    two = plan_move(project, "stage-2", "stage-1")
    seven = plan_move(project, "stage-7", "stage-2")
    for planned in (two, seven):
        move = planned["move"]
        assert move["policy"] == [] and planned["cloud"]["policy"] == []
        lost = [c for c in move["changes"] if c["holds"] and c["op"] in ("replace", "delete")]
        assert lost == [] and move["counts"]["create"] == move["counts"]["delete"] == 0
    assert {c["name"]: c["op"] for c in two["move"]["changes"]} == {
        "truck-a-telemetry-rule": "update", "truck-b-telemetry-rule": "update"}
    assert {c["name"]: c["op"] for c in seven["move"]["changes"]} == {
        "truck-a-telemetry-rule": "update", "truck-b-telemetry-rule": "update",
        "day-lan-truck-a-private": "replace", "day-lan-truck-a-public": "replace"}
    # The things, certificates, lake, stream, key and hub are the very same resources at stage 1, 2 and 7.
    held = {r["urn"]: r["inputs"] for r in seven["cloud"]["resources"] if replacement.holds(r["type"])}
    assert len(held) >= 10
    assert {r["urn"]: r["inputs"] for r in two["cloud"]["resources"] if r["urn"] in held} == held


def test_a_truck_absent_today_has_no_alarm_and_keeps_its_identity(tmp_path: Any) -> None:
    """A stage whose tech zone has truck-a only: moving there deletes truck-b's alarms and LAN routes
    (quiet, not alarming), and leaves its thing, certificate and topic rule as they are."""
    import shutil

    shutil.copytree(REPO / "inventory", tmp_path / "inventory")
    (tmp_path / "stacks").symlink_to(REPO / "stacks")
    stage2 = tmp_path / "inventory" / "stages" / "stage-2.yaml"
    stage2.write_text(stage2.read_text().replace("trucks: [truck-a, truck-b]", "trucks: [truck-a]"))
    planned = plan_move(Project(tmp_path), "stage-2", "stage-1")
    move = planned["move"]
    assert sorted(c["name"] for c in move["changes"] if c["op"] == "delete") == [
        "day-lan-truck-b-private", "day-lan-truck-b-public", "truck-b-heartbeat-missing",
        "truck-b-telemetry-stopped"]
    assert move["policy"] == [] and planned["cloud"]["policy"] == []
    alarms = {r["name"] for r in planned["cloud"]["resources"] if r["type"] == "aws:cloudwatch/metricAlarm:MetricAlarm"}
    assert alarms == {"truck-a-telemetry-stopped", "truck-a-heartbeat-missing", "ingest-stopped",
                      "lake-delivery-stale"}
    present = {r["name"] for r in planned["cloud"]["resources"]}
    assert {"truck-b-thing", "truck-b-cert", "truck-b-iot-policy", "truck-b-telemetry-rule"} <= present
