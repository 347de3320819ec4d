"""`truckctl up`: the whole environment of a stage as one locked, journaled run.

lab (lab target) -> prechecks -> cloud tier -> CloudOutputs -> truck tier -> smoke check.

On the lab target the cloud tier is the offline plan with its policy rules (it runs beside the
truck tier: the trucks take their CloudOutputs from the lab's stand-in, not from the plan). On aws
it is `pulumi up`, whose outputs feed the truck tier. A failed run names its step; re-running is
safe: both tiers converge, so a re-run redoes nothing that is already in place.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import smoke, targets
from truckctl.lifecycle.plan import violation_problems
from truckctl.lifecycle.prechecks import run_prechecks
from truckctl.lifecycle.run import Run, finish_run, locked_run
from truckctl.project import Project
from truckctl.truck.plan import resolve_limit
from truckctl.truck.tier import TIERS, UpCallbacks, UpRequest


@dataclass
class Progress:
    """How the caller hears about the run: steps, and the truck tier's per-node events."""

    on_step: Callable[[str, str], None] = lambda step, message: None
    truck: UpCallbacks = field(default_factory=UpCallbacks)


def check_options(options: UpRequest) -> None:
    targets.check_target(options.target)
    if options.tier not in TIERS:
        raise TruckctlError.single("unknown-tier", f"expected --tier cloud, truck or all, got {options.tier!r}",
                                   "--tier", ExitCode.USAGE)


def up(project: Project, options: UpRequest, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or Progress()
    check_options(options)
    stage = load_stage(project, options.stage)  # configuration valid: the first precheck
    resolve_limit(stage, options.limit)  # an unknown --limit is a usage error before anything is written
    if options.target == "aws":
        from truckctl.cloud.engine import require_pulumi_cli

        require_pulumi_cli()  # before the lock and the journal: a missing tool writes nothing
    with locked_run(project, stage, "up", options.target) as run:
        result: dict[str, Any] = {"stage": stage.name, "target": options.target, "tier": options.tier,
                                  "limit": options.limit}
        wants_cloud = options.tier in ("cloud", "all")
        wants_truck = options.tier in ("truck", "all")
        if options.target == "lab":
            progress.on_step("lab", f"bringing up the lab of {stage.name} (simulated trucks and cloud stand-in)")
            result["lab"] = run.step("lab", lambda: lab_up(project, stage))
        connection = targets.connection(project, stage, options.target) if wants_truck else None
        progress.on_step("prechecks", "configuration, tools, SSH with pinned host keys, clocks, address conflicts")
        result["prechecks"] = run.step("prechecks", lambda: prechecks(stage, options, connection))
        # A node found unreachable is left out: the others converge, the run ends with exit 1 naming it.
        left_out = unreachable_problems(result["prechecks"])
        for problem in left_out:
            run.journal.event("node", "prechecks", node=problem.location, state="unreachable", message=problem.message)
        cloud: CloudOutputs | None = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            planned: Future[dict[str, Any]] | None = None
            if wants_cloud and options.target == "lab":
                progress.on_step("cloud", "lab target: the cloud tier is the offline plan with its policy rules; "
                                 "the lab's cloud stand-in provides the cloud outputs")
                planned = pool.submit(offline_cloud, project, stage)  # beside the truck tier: it needs no plan
            elif wants_cloud:
                progress.on_step("cloud", f"pulumi up of stack {stage.name} in {stage.cloud.region}")
                cloud, result["cloud"] = aws_cloud(project, stage, run)
            if wants_truck:
                inputs = targets.inputs(project, stage, options.target, cloud)
                result["cloud_source"] = inputs.cloud_source
                for truck_access in inputs.cloud.trucks.values():
                    run.secret(truck_access.private_key_pem.get_secret_value())
                run.lab_receiver = inputs.cloud.alert_webhook_url if options.target == "lab" else None
                progress.on_step("truck", f"converging the truck nodes of {stage.name} on {options.target}")
                request = dataclasses.replace(options, tier="truck",
                                              exclude=tuple(str(p.location) for p in left_out))
                result["truck"] = run.step("truck", lambda: truck_step(project, stage, request, inputs, run,
                                                                       progress.truck))
            if planned is not None:
                result["cloud"] = run.step("cloud", lambda: cloud_step_result(planned.result()))
        failures = truck_failures(result.get("truck"))
        if failures:
            raise TruckctlError(left_out + failures, ExitCode.ERROR, {**result, "failed_step": "truck"})
        if wants_truck and options.limit is None:
            # Trucks whose gateway was left out cannot be checked: they are already reported.
            gateways_out = {p.location for p in left_out}
            checked = stage.model_copy(update={"trucks": [t for t in stage.trucks
                                                          if stage.gateway(t).name not in gateways_out]})
            if checked.trucks:
                progress.on_step("verify", "smoke check: telemetry from each truck reaches the cloud side")
                result["smoke"] = run.step("verify", lambda: smoke.check(checked, options.target, inputs.cloud,
                                                                         run.journal.run_id))
        if left_out:
            result["unreachable"] = [p.location for p in left_out]
            raise TruckctlError(left_out, ExitCode.ERROR, {**result, "failed_step": "prechecks"})
        return finish_run(run, ExitCode.OK, result)


def lab_up(project: Project, stage: Stage) -> dict[str, Any]:
    """The lab under the run: built if missing, reused if its infrastructure is up. A truck node that is
    down or cut off is not rebuilt away: the prechecks report it, as they would for a real truck."""
    from truckctl.lab import api as lab_api

    return dict(lab_api.up(project, stage.name, keep_node_faults=True))


def prechecks(stage: Stage, options: UpRequest, connection: Any) -> dict[str, Any]:
    """Every precheck must pass, except that some (not all) nodes may be unreachable: those are left
    out of the run (step status `partial`) and the run ends with exit 1 naming them."""
    nodes = stage.nodes()
    if options.limit is not None:
        nodes = [(t, n) for t, n in nodes if n.name == options.limit]
    report = run_prechecks(stage, options.target, connection, nodes)
    unreachable = [p for p in report.problems if p.code == "node-unreachable"]
    if len(unreachable) < len(report.problems) or len(unreachable) == len(nodes):
        raise TruckctlError(report.problems, ExitCode.ERROR, {"prechecks": report.as_dict()})
    detail = report.as_dict()
    if unreachable:
        detail.update(_status="partial", unreachable=[p.as_dict() for p in unreachable],
                      summary_unreachable=[p.location for p in unreachable])
    return detail


def unreachable_problems(prechecks_detail: dict[str, Any]) -> list[Problem]:
    """The nodes the prechecks found unreachable, as the problems the run ends with."""
    return [Problem("node-unreachable", f"{item['message']}; it was left out of this run: re-run once it is back",
                    item["location"]) for item in prechecks_detail.get("unreachable", [])]


def offline_cloud(project: Project, stage: Stage) -> dict[str, Any]:
    from truckctl.cloud.offline import plan_offline

    return plan_offline(project, [stage.name])[0]


def cloud_step_result(plan: dict[str, Any]) -> dict[str, Any]:
    violations = violation_problems(plan)
    if violations:
        raise TruckctlError(violations, ExitCode.ERROR, {"cloud": plan})
    return {"mode": "offline plan (lab target)", "resources": plan["counts"]["total"],
            "by_component": plan["counts"]["by_component"], "policy_violations": 0,
            "policy_rules": plan["policy_rules"], "summary_resources": plan["counts"]["total"]}


def aws_cloud(project: Project, stage: Stage, run: Run) -> tuple[CloudOutputs, dict[str, Any]]:
    from truckctl.cloud.engine import AwsEngine, CloudEvent

    def record(event: CloudEvent) -> None:
        if event.kind == "resource" and event.phase in ("done", "failed"):
            run.journal.event("resource", "cloud", name=event.name, type=event.type, op=event.op,
                              status=event.phase)

    holder: dict[str, Any] = {}

    def apply() -> dict[str, Any]:
        outputs, operation = AwsEngine(project, stage, on_event=record).up()
        holder["outputs"] = outputs
        return {**operation.as_dict(), "_changed": sum(v for k, v in operation.changes.items() if k != "same")}

    detail = run.step("cloud", apply)
    return holder["outputs"], detail


def truck_step(project: Project, stage: Stage, request: UpRequest, inputs: targets.TargetInputs, run: Run,
               callbacks: UpCallbacks) -> dict[str, Any]:
    from truckctl.truck.plan import build_plan

    started = time.monotonic()
    plan = build_plan(project.playbooks_dir, stage, inputs.cloud, inputs.connection, request.target, request.limit,
                      request.check, request.exclude)
    result = run.truck(plan, callbacks)
    detail = result.as_dict()
    detail["_status"] = "ok" if result.ok else "failed"
    detail["_changed"] = result.changed
    detail["summary_seconds"] = round(time.monotonic() - started, 2)
    return detail


def truck_failures(truck: dict[str, Any] | None) -> list[Problem]:
    if not truck or truck["ok"]:
        return []
    problems = [Problem(f"truck-{f['status']}", f"{f['task']}: {f['message'] or f['status']}", f["host"])
                for f in truck["failures"]]
    return problems or [Problem("truck-failed", f"the truck run ended {truck['status']} (rc {truck['rc']}); "
                                f"see {truck['artifacts_dir']}")]
