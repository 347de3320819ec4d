"""Offline plan: the race's one stack at a stage, and the move to it, with policy results, no cloud needed.

Runs the real stacks/__main__.py under Pulumi mocks in the worker process (see offline_worker),
which starts at once and warms its imports while this process validates the configuration. A
stage's plan is the race stack moved to that stage; the move is its difference from the stack at
the stage before (truckctl/cloud/moves.py), with the rule that it replaces nothing holding data or
identity. This module itself imports no pulumi: the CLI stays light.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

from truckctl.cloud.moves import Move
from truckctl.cloud.policy import RULES, evaluate
from truckctl.cloud.resources import COMPONENT_TYPE_PREFIX, PlannedResource
from truckctl.config.names import STAGE_NAME
from truckctl.errors import Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.project import Project

RACE = "race"  # the race stack between stages (offline_worker.RACE)
WORKER_TIMEOUT_S = 600
PLACEHOLDER_NOTE = ("placeholder values from mocks: never fed to a real apply "
                    "(ids, ARNs, endpoints and keys are fakes; secrets are redacted)")

# The inputs worth a glance in a table, by short type; the JSON carries all of them.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "ec2:Vpc": ("cidr_block",),
    "ec2:Subnet": ("cidr_block",),
    "ec2:SecurityGroup": ("name",),
    "ec2:Route": ("destination_cidr_block",),
    "ec2:Instance": ("instance_type",),
    "ec2:VpcEndpoint": ("service_name",),
    "s3:Bucket": ("bucket",),
    "kinesis:Stream": ("name", "encryption_type", "shard_count"),
    "kinesis:FirehoseDeliveryStream": ("name", "destination"),
    "iot:Thing": ("name",),
    "iot:Policy": ("name",),
    "iot:TopicRule": ("name", "sql"),
    "sns:Topic": ("name",),
    "sns:TopicSubscription": ("protocol", "endpoint"),
    "cloudwatch:MetricAlarm": ("metric_name", "namespace"),
    "kms:Key": ("enable_key_rotation",),
    "kms:Alias": ("name",),
    "iam:Role": ("name",),
    "glue:CatalogDatabase": ("name",),
    "glue:CatalogTable": ("name",),
    "athena:Workgroup": ("name",),
    "ssm:Parameter": ("name", "type"),
}


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def plan_offline(project: Project, names: Sequence[str] | None, jobs: int | None = None,
                 settings: dict[str, str] | None = None) -> list[JsonObject]:
    """Plan the given stages (every stage when None); one result per stage, in race order.

    `settings` is stack config for the program (e.g. deleteData=true, to see a teardown's effect).
    """
    if names is not None and not all(STAGE_NAME.fullmatch(n) or n == RACE for n in names):
        from truckctl.config.loader import check_stage_name

        for name in names:
            if name != RACE:
                check_stage_name(name)  # raises the loader's own error; nothing was started
    # The worker starts first: its imports (about a second) overlap the validation below.
    worker = _start_worker(project, list(names) if names is not None else ["--all"], jobs or default_jobs(),
                           settings or {})
    try:
        from truckctl.config.loader import load_stages

        stages = [n for n in names if n != RACE] if names is not None else None
        wanted = [s.name for s in load_stages(project, stages)] if stages != [] else []
        if names is not None and RACE in names:
            from truckctl.config.loader import load_race

            load_race(project)
            wanted = [n for n in names if n == RACE or n in wanted]
        from truckctl.cloud import lint

        lint.warm()  # parliament's import (about 0.5 s) overlaps the worker's stacks too
        stdout, stderr = worker.communicate(timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TruckctlError.single("plan-timeout", f"the offline plan took longer than {WORKER_TIMEOUT_S} s") from None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    if worker.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise TruckctlError.single("plan-failed", f"the offline plan worker failed: {last}")
    import json

    documents = {}
    for line in stdout.splitlines():
        if line.strip():
            document = json.loads(line)
            documents[document["stage"]] = document
    failed = [Problem("plan-failed", documents[n].get("error", "no result") if n in documents else "no result", n)
              for n in wanted if not documents.get(n, {}).get("ok")]
    if failed:
        raise TruckctlError(failed)
    return [stage_plan(documents[name]) for name in wanted]


def _start_worker(project: Project, stages: list[str], jobs: int,
                  settings: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "truckctl.cloud.offline_worker", "--project", str(project.root),
               "--jobs", str(jobs), *(f"--set={k}={v}" for k, v in settings.items()), *stages]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, cwd=project.root)


def planned_resources(registrations: list[JsonObject]) -> list[PlannedResource]:
    """Custom resources only (components group them; providers are plumbing), deps by logical name."""
    by_urn = {r["urn"]: r for r in registrations}

    def is_resource(record: JsonObject | None) -> bool:
        return bool(record and record["custom"] and not record["type"].startswith("pulumi:providers:"))

    def component(record: JsonObject) -> str:
        parent = by_urn.get(record["parent"])
        while parent is not None:
            if parent["type"].startswith(COMPONENT_TYPE_PREFIX):
                return str(parent["name"])
            parent = by_urn.get(parent["parent"])
        return "stack"

    resources = []
    for record in registrations:
        if not is_resource(record):
            continue
        depends = [by_urn[urn]["name"] for urn in record["dependencies"] if is_resource(by_urn.get(urn))]
        resources.append(PlannedResource(
            type=record["type"], name=record["name"], inputs=record["inputs"], depends_on=list(dict.fromkeys(depends)),
            component=component(record), id=record.get("id", ""), protect=record["protect"],
            retain_on_delete=record["retain_on_delete"], urn=record["urn"]))
    # Components register synchronously, in program order: list their resources in that order.
    components = [r["name"] for r in registrations if r["type"].startswith(COMPONENT_TYPE_PREFIX)]
    order = {name: index for index, name in enumerate(components)}
    return sorted(resources, key=lambda r: order.get(r.component, len(order)))


def key_inputs(resource: PlannedResource) -> JsonObject:
    return {k: resource.inputs[k] for k in KEY_INPUTS.get(resource.short_type, ("name",)) if k in resource.inputs}


def stage_plan(document: JsonObject) -> JsonObject:
    """The `cloud` part of a plan result for one stage, from the worker's document."""
    from truckctl.cloud.stack_outputs import cloud_outputs_from_stack

    resources = planned_resources(document["registrations"])
    violations = evaluate(resources)
    try:
        preview: JsonObject = cloud_outputs_from_stack(document["outputs"], placeholder=True).model_dump(
            mode="json")
    except TruckctlError as exc:
        preview = {"error": str(exc)}
    preview["note"] = PLACEHOLDER_NOTE
    return {
        "stage": document["stage"],
        "mode": "offline",
        "region": document.get("region"),
        "resources": [{**r.as_dict(), "key_inputs": key_inputs(r)} for r in resources],
        "counts": {
            "total": len(resources),
            "by_component": dict(Counter(r.component for r in resources)),
            "by_type": dict(sorted(Counter(r.short_type for r in resources).items())),
        },
        "policy": [v.as_dict() for v in violations],
        "policy_rules": [rule.name for rule in RULES],
        "outputs_preview": preview,
        "warnings": document.get("warnings", []),
    }


# ---- moves -----------------------------------------------------------------------------------

def resources_of(plan: JsonObject) -> list[PlannedResource]:
    """A plan's resources back as PlannedResource (from `stage_plan`'s JSON form)."""
    fields = ("type", "name", "inputs", "depends_on", "component", "protect", "retain_on_delete", "urn")
    return [PlannedResource(**{k: r[k] for k in fields if k in r}) for r in plan["resources"]]


def move_between(before: JsonObject | None, after: JsonObject) -> Move:
    """The move from the plan `before` (None: nothing deployed yet) to the plan `after`."""
    from truckctl.cloud.moves import diff

    return diff(resources_of(before) if before else [], resources_of(after), after["stage"],
                before["stage"] if before else None)


def previous_stage(project: Project, stage: str) -> str | None:
    """The stage before this one in race order (None for the first: the race is not deployed yet)."""
    from truckctl.config.loader import stage_names

    names = stage_names(project)
    index = names.index(stage) if stage in names else 0
    return names[index - 1] if index > 0 else None


def plan_move(project: Project, stage: str, from_stage: str | None, jobs: int | None = None,
              settings: dict[str, str] | None = None) -> JsonObject:
    """The race stack at `stage` (`cloud`) and the move to it from `from_stage` (`move`; None: from nothing,
    i.e. the race's first deployment; `race`: from between stages)."""
    names = [stage] if from_stage in (None, stage) else [stage, from_stage]
    plans = {p["stage"]: p for p in plan_offline(project, names, jobs, settings)}
    before = plans[from_stage] if from_stage is not None else None
    return {"cloud": plans[stage], "move": move_between(before, plans[stage]).as_dict()}


def plan_race(project: Project, jobs: int | None = None, settings: dict[str, str] | None = None) -> JsonObject:
    """The race stack between stages once (`race`, every resource), then every stage's move from the
    one before (`stages`: the day's differences, and the policy result of the stack at that stage)."""
    from truckctl.config.loader import stage_names

    names = stage_names(project)
    plans = plan_offline(project, [RACE, *names], jobs, settings)
    race, days = plans[0], plans[1:]
    stages = []
    for before, after in zip([race, *days[:-1]], days, strict=True):
        summary = {k: after[k] for k in ("stage", "mode", "region", "counts", "policy", "policy_rules", "warnings")}
        stages.append({"stage": after["stage"], "cloud": summary, "move": move_between(before, after).as_dict()})
    return {"race": race, "stages": stages}
