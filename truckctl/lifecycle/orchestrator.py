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
from dataclasses import dataclass, field, replace

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import racelive
from truckctl.lifecycle.finished import RunEnd, finish
from truckctl.lifecycle.prechecks import PrecheckReport, run_prechecks
from truckctl.lifecycle.run import Run, locked_run
from truckctl.lifecycle.steps import StepResult, StepSummary
from truckctl.project import Project
from truckctl.remote import Connection
from truckctl.target import CloudApplied, Target, Tier, parse_tier
from truckctl.truck.events import TruckRunResult
from truckctl.truck.fastcheck import FastPath, node_addresses
from truckctl.truck.plan import RunPlan, resolve_limit
from truckctl.truck.tier import UpCallbacks, UpRequest, remember_converge


@dataclass
class Progress:
    """How the caller hears about the run: steps, and the truck tier's per-node events."""

    on_step: Callable[[str, str], None] = lambda step, message: None
    truck: UpCallbacks = field(default_factory=UpCallbacks)


@dataclass(frozen=True)
class UpResult:
    """`truckctl up`'s result; `to_json` is the envelope's `result`, its keys in the order they always had.
    The steps' details are as the journal has them."""

    stage: str
    target: str
    tier: str
    limit: str | None
    lab: JsonObject | None = None  # the lab step (lab target)
    prechecks: JsonObject | None = None
    cloud: JsonObject | None = None
    cloud_after_truck: bool = False  # the cloud step ran beside the truck tier: it ended after it
    cloud_source: str | None = None  # where the truck tier's cloud outputs came from
    live: racelive.Liveness | None = None  # asked before the truck tier (unless --interrupt-telemetry)
    truck: TruckRunResult | None = None
    truck_check: JsonObject | None = None  # how the truck tier was converged: the fast path, or site.yml and why
    held: tuple[racelive.Held, ...] = ()  # what a live race held back
    held_reason: str | None = None
    smoke: JsonObject | None = None
    unreachable: tuple[str, ...] = ()  # the nodes the prechecks left out
    ended: RunEnd | None = None

    def to_json(self) -> JsonObject:
        result: JsonObject = {"stage": self.stage, "target": self.target, "tier": self.tier, "limit": self.limit}
        if self.lab is not None:
            result["lab"] = self.lab
        if self.prechecks is not None:
            result["prechecks"] = self.prechecks
        if self.cloud is not None and not self.cloud_after_truck:
            result["cloud"] = self.cloud
        if self.cloud_source is not None:
            result["cloud_source"] = self.cloud_source
        if self.live is not None:
            result["live"] = self.live.as_dict()
        if self.truck is not None:
            result["truck"] = self.truck.as_dict()
        if self.truck_check is not None:
            result["truck_check"] = self.truck_check
        if self.held:
            result.update(held=[item.as_dict() for item in self.held], held_reason=self.held_reason)
        if self.cloud is not None and self.cloud_after_truck:
            result["cloud"] = self.cloud
        if self.smoke is not None:
            result["smoke"] = self.smoke
        if self.unreachable:
            result["unreachable"] = list(self.unreachable)
        if self.ended is not None:
            result.update(self.ended.to_json())
        return result

    def failed_at(self, step: str) -> JsonObject:
        """The result a failure carries: as far as the run got, and the step that failed."""
        return {**self.to_json(), "failed_step": step}


def up(target: Target, options: UpRequest, progress: Progress | None = None) -> UpResult:
    progress = progress or Progress()
    project = target.project
    options = dataclasses.replace(options, target=target.kind, tier=parse_tier(options.tier))
    stage = load_stage(project, options.stage)  # configuration valid: the first precheck
    resolve_limit(stage, options.limit)  # an unknown --limit is a usage error before anything is written
    target.preflight()  # before the lock and the journal: a missing tool writes nothing
    with locked_run(project, stage, "up", target) as run:
        result = UpResult(stage.name, target.kind.value, options.tier.value, options.limit)
        message = target.prepare_message(stage)
        if message:
            progress.on_step("lab", message)
            result = replace(result, lab=run.step("lab", lambda: StepResult(target.prepare(stage) or {})))
        connection = target.connection(stage) if options.tier.wants_truck else None
        progress.on_step("prechecks", "configuration, tools, SSH with pinned host keys, clocks, address conflicts")
        reports: list[PrecheckReport] = []
        result = replace(result, prechecks=run.step("prechecks", lambda: prechecks(stage, options, connection, target,
                                                                                  reports)))
        # A node found unreachable is left out: the others converge, the run ends with exit 1 naming it.
        left_out = unreachable_problems(reports[0])
        for problem in left_out:
            run.journal.event("node", "prechecks", node=problem.location, state="unreachable", message=problem.message)
        cloud: CloudOutputs | None = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            planned: Future[CloudApplied] | None = None
            if options.tier.wants_cloud:
                progress.on_step("cloud", target.cloud_up_message(stage))
                if target.cloud_beside_truck:  # it feeds the truck tier nothing: it runs beside it
                    planned = pool.submit(target.cloud_up, stage, run.journal.event)
                else:
                    applied: list[CloudApplied] = []
                    result = replace(result, cloud=run.step("cloud", lambda: applied_step(applied, target.cloud_up(
                        stage, run.journal.event))))
                    cloud = applied[0].outputs
            if options.tier.wants_truck:
                outputs = cloud if cloud is not None else target.cloud_outputs(stage)
                result = replace(result, cloud_source=target.cloud_source(stage))
                for truck_access in outputs.trucks.values():
                    run.secret(truck_access.private_key_pem.get_secret_value())
                run.lab_receiver = target.alert_receiver(outputs)
                request = dataclasses.replace(options, tier=Tier.truck,
                                              exclude=tuple(str(p.location) for p in left_out))
                assert connection is not None
                request, liveness = hold_if_live(stage, request, outputs, run, progress)
                result = replace(result, live=liveness)
                progress.on_step("truck", f"converging the truck nodes of {stage.name} on {target.kind.value}")
                ran: list[TruckRunResult] = []
                detail = run.step("truck", lambda: truck_step(project, stage, request, connection, outputs, run,
                                                              progress.truck, ran))
                method = detail.get("truck_check")
                result = replace(result, truck=ran[0], truck_check=method if isinstance(method, dict) else None)
                if liveness is not None and liveness.live:
                    result = report_held(project, stage, liveness, run, result)
            if planned is not None:
                done = planned
                result = replace(result, cloud=run.step("cloud", lambda: done.result().step), cloud_after_truck=True)
        failures = truck_failures(result.truck)
        if failures:
            raise TruckctlError(left_out + failures, ExitCode.ERROR, result.failed_at("truck"))
        if options.tier.wants_truck and options.limit is None:
            # Trucks whose gateway was left out cannot be checked: they are already reported.
            gateways_out = {p.location for p in left_out}
            checked = stage.model_copy(update={"trucks": [t for t in stage.trucks
                                                          if stage.gateway(t).name not in gateways_out]})
            if checked.trucks:
                progress.on_step("verify", "smoke check: telemetry from each truck reaches the cloud side")
                result = replace(result, smoke=run.step("verify", lambda: target.smoke(checked, outputs,
                                                                                       run.journal.run_id)))
        if left_out:
            result = replace(result, unreachable=tuple(str(p.location) for p in left_out))
            raise TruckctlError(left_out, ExitCode.ERROR, result.failed_at("prechecks"))
        return finish(run, ExitCode.CHANGES if result.held else ExitCode.OK, result)


def hold_if_live(stage: Stage, request: UpRequest, cloud: CloudOutputs, run: Run, progress: Progress
                 ) -> tuple[UpRequest, racelive.Liveness | None]:
    """While the race is live (and no --interrupt-telemetry), the truck run holds back what would cut telemetry.
    The request (holding back when live) and the liveness asked; None when it was not asked."""
    if request.interrupt_telemetry:
        return request, None
    progress.on_step("liveness", "is the race live? (telemetry at the cloud side, the stage's race window)")
    liveness = racelive.journaled_check(run, stage, request.target, cloud)
    if not liveness.live:
        return request, liveness
    return dataclasses.replace(request, hold_cuts=True), liveness


def report_held(project: Project, stage: Stage, liveness: racelive.Liveness, run: Run, result: UpResult) -> UpResult:
    """What the truck run held back, as it said itself (node, task, change): journaled, and in the result
    (exit 3). No check pass is needed to find it."""
    assert result.truck is not None
    held = racelive.held_in_run(result.truck, racelive.gateways(stage), racelive.tagged_tasks(project.playbooks_dir))
    for item in held:
        run.journal.event("held", "truck", node=item.node, task=item.task, change=item.change, reason=liveness.why)
    if not held:
        return result
    return replace(result, held=tuple(held), held_reason=racelive.held_line(stage, liveness, held))


def applied_step(applied: list[CloudApplied], outcome: CloudApplied) -> StepResult:
    applied.append(outcome)  # its outputs feed the truck tier
    return outcome.step


def prechecks(stage: Stage, options: UpRequest, connection: Connection | None, target: Target,
              reports: list[PrecheckReport]) -> StepResult:
    """Every precheck must pass, except that some (not all) nodes may be unreachable: those are left
    out of the run (step status `partial`) and the run ends with exit 1 naming them. The report is
    appended to `reports`."""
    nodes = stage.nodes()
    if options.limit is not None:
        nodes = [(t, n) for t, n in nodes if n.name == options.limit]
    report = run_prechecks(stage, target, connection, nodes)
    unreachable = report.unreachable
    if len(unreachable) < len(report.problems) or len(unreachable) == len(nodes):
        raise TruckctlError(report.problems, ExitCode.ERROR, {"prechecks": report.as_dict()})
    reports.append(report)
    detail = report.as_dict()
    if not unreachable:
        return StepResult(detail)
    detail["unreachable"] = [p.as_dict() for p in unreachable]
    return StepResult(detail, "partial", summary=StepSummary(unreachable=tuple(str(p.location) for p in unreachable)))


def unreachable_problems(report: PrecheckReport) -> list[Problem]:
    """The nodes the prechecks found unreachable, as the problems the run ends with."""
    return [Problem("node-unreachable", f"{p.message}; it was left out of this run: re-run once it is back",
                    p.location) for p in report.unreachable]


def truck_step(project: Project, stage: Stage, request: UpRequest, connection: Connection, cloud: CloudOutputs,
               run: Run, callbacks: UpCallbacks, ran: list[TruckRunResult]) -> StepResult:
    """The truck tier's run of the stage's plan; the run is appended to `ran`."""
    from truckctl.truck.plan import build_plan

    started = time.monotonic()
    plan = build_plan(project.playbooks_dir, stage, cloud, connection, request.target, request.limit,
                      request.check, request.exclude, request.hold_cuts)
    fast = converge_fast_path(project, stage, request, plan, connection)
    outcome = fast.try_clean(request.full) if fast is not None else None
    method: JsonObject = {"truck_check": outcome.as_dict()} if outcome is not None else {}
    if outcome is not None and outcome.clean:  # nothing would change: no playbook run
        result = outcome.run_result(plan.hosts, check=False)
        run.recap(result)
    else:
        result = run.truck(plan, callbacks)
        if fast is not None:
            fast.after_full_run(result)
        else:
            remember_converge(project, stage, plan, result)
    ran.append(result)
    return StepResult({**result.as_dict(), **method}, "ok" if result.ok else "failed", result.changed,
                      StepSummary(seconds=round(time.monotonic() - started, 2)))


def converge_fast_path(project: Project, stage: Stage, request: UpRequest, plan: RunPlan, connection: Connection
                       ) -> FastPath | None:
    """The fast path of a converge of the whole stage (truck.fastcheck); None for a check, a --limit or a
    run that leaves nodes out: those always run site.yml."""
    if request.check or request.limit is not None or request.exclude:
        return None
    return FastPath(project.state_dir, stage.name, plan, connection, node_addresses(stage))


def truck_failures(truck: TruckRunResult | None) -> list[Problem]:
    if truck is None or truck.ok:
        return []
    problems = [Problem(f"truck-{f.status}", f"{f.task}: {f.message or f.status}", f.host) for f in truck.failures]
    return problems or [Problem("truck-failed", f"the truck run ended {truck.status} (rc {truck.rc}); "
                                f"see {truck.artifacts_dir}")]
