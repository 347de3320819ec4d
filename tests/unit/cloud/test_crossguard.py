"""The CrossGuard adapter: engine resources in, the same rules, violations reported on URNs."""

from __future__ import annotations

import importlib.util
import runpy
from types import SimpleNamespace
from typing import Any

import pytest

from tests.helpers import REPO
from truckctl.cloud import policy
from truckctl.cloud.crossguard import planned_resources, stack_validation


def resource(type_: str, name: str, props: dict[str, Any], protect: bool = False, parent: Any = None,
             dependencies: list[Any] | None = None) -> SimpleNamespace:
    return SimpleNamespace(resource_type=type_, name=name, urn=f"urn:pulumi:s::p::{type_}::{name}", props=props,
                           opts=SimpleNamespace(protect=protect), parent=parent, dependencies=dependencies or [])


def test_adapter_normalises_props_and_keeps_structure() -> None:
    component = resource("truckctl:race:Ingest", "ingest", {})
    stream = resource(policy.STREAM, "telemetry-stream", {"encryptionType": "KMS", "shardCount": 1.0},
                      parent=component)
    rule = resource("aws:iot/topicRule:TopicRule", "rule", {}, parent=component, dependencies=[stream])
    planned = planned_resources([component, stream, rule])
    assert [p.name for p in planned] == ["telemetry-stream", "rule"]  # components are grouping only
    assert planned[0].inputs == {"encryption_type": "KMS", "shard_count": 1}
    assert planned[0].component == "ingest" and planned[1].depends_on == ["telemetry-stream"]
    assert planned[0].retain_on_delete is None  # not reported by the engine


def test_stack_validation_reports_violations_on_urns() -> None:
    reported: list[tuple[str, str | None]] = []
    args = SimpleNamespace(resources=[
        resource(policy.KMS_KEY, "good", {"enableKeyRotation": True}),
        resource(policy.KMS_KEY, "bad", {"enableKeyRotation": False}),
    ])
    rotation = next(r for r in policy.RULES if r.name == "kms-rotation")
    stack_validation(rotation)(args, lambda message, urn=None: reported.append((message, urn)))
    assert reported == [("key rotation is off", f"urn:pulumi:s::p::{policy.KMS_KEY}::bad")]


def test_retention_rule_checks_protection_only_under_crossguard() -> None:
    tags = {"tags": {policy.DATA_TAG: "race-telemetry"}, "bucket": "lake"}
    protected = [resource(policy.BUCKET, "lake", tags, protect=True)]
    unprotected = [resource(policy.BUCKET, "lake", tags)]
    assert policy.datalake_retained(planned_resources(protected)) == []
    assert [v.resource for v in policy.datalake_retained(planned_resources(unprotected))] == ["lake"]


@pytest.mark.skipif(importlib.util.find_spec("pulumi_policy") is None,
                    reason="pulumi_policy not installed (policypack/requirements.txt)")
def test_policy_pack_wraps_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi_policy

    packs: list[Any] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: packs.append(kwargs))
    runpy.run_path(str(REPO / "policypack" / "__main__.py"))
    (pack,) = packs
    assert [p.name for p in pack["policies"]] == [r.name for r in policy.RULES]
    reported: list[str] = []
    bad_key = resource(policy.KMS_KEY, "k", {"enableKeyRotation": False})
    rotation = next(p for p in pack["policies"] if p.name == "kms-rotation")
    rotation.validate(pulumi_policy.StackValidationArgs([bad_key]), lambda message, urn=None: reported.append(urn))
    assert reported == [bad_key.urn]
    assert all(p.description for p in pack["policies"])


def test_the_race_long_identity_rule_runs_under_crossguard_on_urns() -> None:
    """The part of the move rule one plan can express: CrossGuard reports a thing whose name carries a stage."""
    reported: list[tuple[str, str | None]] = []
    args = SimpleNamespace(resources=[
        resource("aws:iot/thing:Thing", "truck-a-thing", {"name": "gdf27-truck-a"}),
        resource("aws:iot/thing:Thing", "truck-b-thing", {"name": "gdf27-stage-1-truck-b"}),
    ])
    rule = next(r for r in policy.RULES if r.name == "race-long-identity")
    stack_validation(rule)(args, lambda message, urn=None: reported.append((message, urn)))
    assert reported == [("name carries a stage: the next stage would replace it",
                         "urn:pulumi:s::p::aws:iot/thing:Thing::truck-b-thing")]
    assert [p.urn for p in planned_resources(args.resources)] == [r.urn for r in args.resources]
