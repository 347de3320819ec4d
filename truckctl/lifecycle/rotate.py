"""`truckctl rotate-cert TRUCK`: a new IoT certificate for one truck, on purpose.

A truck's certificate lasts the race: no stage move replaces it (the move rule fails one that would).
Rotating is the one deliberate act that does: the truck's certificate generation is raised in the
race's stack config, so Pulumi creates the new certificate (and its policy and thing attachments)
before it deletes the old one. The truck's bridge takes the new one at the next truck-tier run
(`truckctl up STAGE --tier truck`).

Offline (the lab target, or --offline) it shows the plan: the race's stack with the truck's
certificate at its next generation, against the stack as it is, with the move rule allowing that one
certificate and nothing else. On aws it applies it (`AwsEngine.rotate_certificate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.project import Project

if TYPE_CHECKING:
    from truckctl.cloud.engine import OperationResult
    from truckctl.cloud.moves import Move
    from truckctl.cloud.policy import Violation


@dataclass(frozen=True)
class Rotation:
    """`truckctl rotate-cert`'s result: offline, the plan (the certificate's next generation and the move to
    it); on aws, Pulumi's operation. `to_json` is the envelope's result."""

    truck: str
    mode: str  # offline or aws
    note: str
    generation: int | None = None
    move: Move | None = None
    operation: OperationResult | None = None

    def to_json(self) -> JsonObject:
        result: JsonObject = {"truck": self.truck, "mode": self.mode}
        if self.generation is not None:
            result["generation"] = self.generation
        if self.move is not None:
            result["move"] = self.move.as_dict()
        if self.operation is not None:
            result["operation"] = self.operation.as_dict()
        result["note"] = self.note
        return result


def check_truck(project: Project, truck: str) -> list[str]:
    """The race's trucks; a truck not among them is a usage error naming the race file."""
    from truckctl.config.loader import load_race

    loaded = load_race(project)
    names = [t.name for t in loaded.race.trucks]
    if truck not in names:
        raise TruckctlError.single("unknown-truck", f"truck {truck!r} is not defined in the race (trucks: "
                                   f"{', '.join(names)})", f"{project.display(project.race_file)}: trucks",
                                   ExitCode.USAGE)
    return names


def plan_rotation(project: Project, truck: str, generations: dict[str, int] | None = None) -> Rotation:
    """The offline plan of rotating `truck`'s certificate: what is created, replaced and deleted."""
    import json

    from truckctl.cloud.moves import diff
    from truckctl.cloud.offline import RACE, plan_offline, resources_of

    check_truck(project, truck)
    generations = dict(generations or {})
    before_settings = {"certificateGenerations": json.dumps(generations, sort_keys=True)}
    after = {**generations, truck: generations.get(truck, 0) + 1}
    after_settings = {"certificateGenerations": json.dumps(after, sort_keys=True)}
    (now,) = plan_offline(project, [RACE], settings=before_settings)
    (rotated,) = plan_offline(project, [RACE], settings=after_settings)
    old = [r for r in resources_of(now) if r.type == "aws:iot/certificate:Certificate"
           and r.name.startswith(f"{truck}-cert")]
    move = diff(resources_of(now), resources_of(rotated), RACE, RACE, allowed=frozenset(r.urn for r in old))
    violations = move.violations() + [v for v in _policy(rotated)]
    if violations:
        raise TruckctlError([Problem("policy-violation", f"{v.rule}: {v.message}", v.resource) for v in violations],
                            ExitCode.ERROR, {"move": move.as_dict()})
    return Rotation(truck, "offline", f"on aws this replaces {truck}'s IoT certificate (the new one first) and "
                    f"nothing else; then `truckctl up STAGE --tier truck` gives the truck's bridge the new one",
                    generation=after[truck], move=move)


def _policy(plan: JsonObject) -> list[Violation]:
    """The offline plan's policy violations (its document's `policy`) as Violations."""
    from truckctl.cloud.policy import Violation

    return [Violation(v["rule"], v["resource"], v["message"]) for v in plan["policy"]]


def rotate(project: Project, truck: str) -> Rotation:
    """Apply the rotation on aws: one `pulumi up` of the race's stack, its day unchanged."""
    from truckctl.cloud.engine import AwsEngine, require_pulumi_cli
    from truckctl.config.loader import load_stages

    check_truck(project, truck)
    require_pulumi_cli()
    stage = load_stages(project)[0]  # any stage carries the race's secrets; the stack's day is not changed
    operation = AwsEngine(project, stage).rotate_certificate(truck)
    return Rotation(truck, "aws", f"{truck}'s new certificate is active, the old one deleted: run `truckctl up "
                    f"STAGE --tier truck` so its bridge uses the new one", operation=operation)
