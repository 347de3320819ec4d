"""`truckctl plan`: what the cloud tier would do for one stage or every stage.

Offline: the race's one stack under Pulumi mocks, with the policy rules (the cloud tier's plan on the
lab target), and the move to the stage (only the day's differences, with the move rule). aws: a
real `pulumi preview` of the race's stack moved to the stage, one stage after another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.steps import StepResult, StepSummary
from truckctl.project import Project

if TYPE_CHECKING:
    from truckctl.cloud.engine import CloudEvent

LAB_NOTE = ("offline plan: the race's one stack evaluated under Pulumi mocks, nothing is created "
            "(on the lab target this is the cloud tier's plan: the lab's cloud stand-in replaces AWS)")
AWS_NOTE = "aws preview: Pulumi's preview of the race's stack moved to the stage, against AWS"


def violation_problems(violations: Iterable[Mapping[str, str]], location: Callable[[str], str] = str
                       ) -> list[Problem]:
    """A plan's policy violations (rule, resource, message) as problems; `location` places the resource."""
    return [Problem("policy-violation", f"{v['rule']}: {v['message']}", location(v["resource"]))
            for v in violations]


@dataclass(frozen=True)
class PlanTotals:
    """Every stage planned: how many, the race's resources, the moves' operations, the violations."""

    stages: int
    race_resources: int
    moves: Mapping[str, int]  # create, update, replace, delete: summed over the stages' moves
    violations: int

    def to_json(self) -> JsonObject:
        return {"stages": self.stages, "race_resources": self.race_resources, "moves": dict(self.moves),
                "violations": self.violations}


@dataclass(frozen=True)
class PlanResult:
    """`truckctl plan`'s result: one stage (`stage`, `cloud`, offline its `move`) or every stage (offline: the
    `race` between stages, each stage's plan and move, the `totals`; aws: each stage's preview). The plans
    themselves are as the offline plan or Pulumi's preview gives them. `to_json` is the envelope's result."""

    target: str
    mode: str
    note: str
    stage: str | None = None
    cloud: JsonObject | None = None
    move: JsonObject | None = None
    race: JsonObject | None = None
    stages: tuple[JsonObject, ...] | None = None
    totals: PlanTotals | None = None

    def to_json(self) -> JsonObject:
        result: JsonObject = {"target": self.target, "mode": self.mode, "note": self.note}
        if self.stage is not None:
            result["stage"] = self.stage
        if self.cloud is not None:
            result["cloud"] = self.cloud
        if self.move is not None:
            result["move"] = self.move
        if self.race is not None:
            result["race"] = self.race
        if self.stages is not None:
            result["stages"] = list(self.stages)
        if self.totals is not None:
            result["totals"] = self.totals.to_json()
        return result


def offline_plan(project: Project, names: Sequence[str] | None, jobs: int | None,
                 from_stage: str | None = None) -> tuple[PlanResult, list[Problem]]:
    """One stage (names given): the race's stack at that stage and the move to it from `from_stage`
    (default: the stage before; `race`: from between stages). Every stage (None): the race's stack
    between stages once, then each stage's move from the one before. The problems are the violations,
    of the stack's rules and of the move rule."""
    from truckctl.cloud.offline import RACE, plan_move, plan_race, previous_stage

    if names is not None:
        stage = names[0]
        if from_stage is not None and from_stage != RACE:
            from truckctl.config.loader import check_stage_name

            check_stage_name(from_stage)
        planned = plan_move(project, stage, from_stage if from_stage is not None else previous_stage(project, stage),
                            jobs)
        result = PlanResult("lab", "offline", LAB_NOTE, stage=stage, cloud=planned["cloud"], move=planned["move"])
        return result, plan_violations([{"stage": stage, **planned}])
    race = plan_race(project, jobs)
    problems = plan_violations([{"stage": RACE, "cloud": race["race"], "move": {"policy": []}}, *race["stages"]])
    totals = PlanTotals(len(race["stages"]), race["race"]["counts"]["total"],
                        {op: sum(s["move"]["counts"][op] for s in race["stages"])
                         for op in ("create", "update", "replace", "delete")}, len(problems))
    return PlanResult("lab", "offline", LAB_NOTE, race=race["race"], stages=tuple(race["stages"]),
                      totals=totals), problems


def plan_violations(entries: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """The violations of each planned stage (its stack's rules and its move's), placed at the stage."""
    return [problem for e in entries
            for problem in violation_problems([*e["cloud"]["policy"], *e["move"]["policy"]],
                                              f"{e['stage']}: {{}}".format)]


def aws_plan(project: Project, names: Sequence[str] | None, backend: str | None, secrets_provider: str | None,
             on_event: Callable[[CloudEvent], None]) -> PlanResult:
    """Pulumi's preview of each stage's stack against AWS."""
    from truckctl.cloud.engine import AwsEngine
    from truckctl.config.loader import load_stages

    previews: list[JsonObject] = []
    for stage in load_stages(project, list(names) if names is not None else None):
        engine = AwsEngine(project, stage, backend=backend, secrets_provider=secrets_provider, on_event=on_event)
        previews.append({"stage": stage.name, "cloud": {"mode": "preview", **engine.preview().as_dict()}})
    if names is not None:
        return PlanResult("aws", "preview", AWS_NOTE, stage=previews[0]["stage"], cloud=previews[0]["cloud"])
    return PlanResult("aws", "preview", AWS_NOTE, stages=tuple(previews))


# ---- `up`: the day's move of the race's one stack, checked offline ------------------------------

MOVE_RULE = "move-keeps-data-and-identity"


def move_origin(project: Project, stage: str, target: str) -> str | None:
    """Where this morning's move starts: the stage the last `up` on this target left the race at, else
    the stage before in race order (None for stage-1: the race's first deployment)."""
    from truckctl.cloud import current
    from truckctl.cloud.offline import previous_stage

    return current.read(project, target) or previous_stage(project, stage)


@dataclass(frozen=True)
class OfflineMove:
    """The race's stack at a stage under mocks and the move to it, as the offline plan gives them (its
    resources, policy violations, rules and counts: Pulumi's shapes)."""

    stack: JsonObject
    move: JsonObject | None = None  # None: no move was planned

    def to_json(self) -> JsonObject:
        return {**self.stack, "move": self.move} if self.move is not None else dict(self.stack)


def offline_move(project: Project, stage: str, target: str) -> OfflineMove:
    """The race's stack at this stage and the move to it from the stage the race is at (`move_origin`).
    On the lab it is the cloud tier; on aws it is the move rule's check before `pulumi up`."""
    from truckctl.cloud.offline import plan_move

    planned = plan_move(project, stage, move_origin(project, stage, target))
    return OfflineMove(planned["cloud"], planned["move"])


def checked_move(planned: OfflineMove) -> StepResult:
    """The offline plan (with its move, where it has one) as the cloud step's result; a violation of the
    stack's rules or of the move rule fails the step (nothing is applied)."""
    plan = planned.stack
    move = planned.move or {"policy": [], "counts": {}, "from": None}
    violations = violation_problems([*plan["policy"], *move["policy"]])
    if violations:
        raise TruckctlError(violations, ExitCode.ERROR, {"cloud": planned.to_json()})
    moved = ", ".join(f"{op} {n}" for op, n in move["counts"].items() if n and op != "same") or "none"
    return StepResult({"mode": "offline plan", "resources": plan["counts"]["total"],
                       "by_component": plan["counts"]["by_component"], "policy_violations": 0,
                       "policy_rules": [*plan["policy_rules"], MOVE_RULE],
                       "move": {"from": move["from"], "counts": move["counts"],
                                "changes": [{"op": c["op"], "name": c["name"], "keys": c["keys"]}
                                            for c in move.get("changes", [])]}},
                      summary=StepSummary(resources=plan["counts"]["total"], move=moved))
