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
from truckctl.core.up import TIERS, UpCallbacks, UpRequest, truck_tier
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import smoke, targets
from truckctl.lifecycle.prechecks import run_prechecks
from truckctl.lifecycle.run import Run, finish_run, locked_run
from truckctl.project import Project


@dataclass(frozen=True)
class UpOptions:
    stage: str
    target: str = "lab"
    tier: str = "all"
    limit: str | None = None


@dataclass
class Progress:
    """How the caller hears about the run: steps, and the truck tier's per-node events."""

    on_step: Callable[[str, str], None] = lambda step, message: None
    truck: UpCallbacks = field(default_factory=UpCallbacks)


def check_options(options: UpOptions) -> None:
    targets.check_target(options.target)
    if options.tier not in TIERS:
        raise TruckctlError.single("unknown-tier", f"expected --tier cloud, truck or all, got {options.tier!r}",
                                   "--tier", ExitCode.USAGE)


def up(project: Project, options: UpOptions, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or Progress()
    check_options(options)
    stage = load_stage(project, options.stage)  # configuration valid: the first precheck
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
                request = UpRequest(stage.name, options.target, "truck", options.limit)
                result["truck"] = run.step("truck", lambda: truck_step(project, stage, request, inputs, run,
                                                                       progress.truck))
            if planned is not None:
                result["cloud"] = run.step("cloud", lambda: cloud_step_result(planned.result()))
        failures = truck_failures(result.get("truck"))
        if failures:
            raise TruckctlError(failures, ExitCode.ERROR, {**result, "failed_step": "truck"})
        if wants_truck and options.limit is None:
            progress.on_step("verify", "smoke check: telemetry from each truck reaches the cloud side")
            result["smoke"] = run.step("verify", lambda: smoke.check(stage, options.target, inputs.cloud,
                                                                     run.journal.run_id))
        return finish_run(run, ExitCode.OK, result)


def lab_up(project: Project, stage: Stage) -> dict[str, Any]:
    from truckctl.lab import api as lab_api

    return dict(lab_api.up(project, stage.name))


def prechecks(stage: Stage, options: UpOptions, connection: Any) -> dict[str, Any]:
    nodes = stage.nodes()
    if options.limit is not None:
        nodes = [(t, n) for t, n in nodes if n.name == options.limit]
    report = run_prechecks(stage, options.target, connection, nodes)
    if not report.ok:
        raise TruckctlError(report.problems, ExitCode.ERROR, {"prechecks": report.as_dict()})
    return report.as_dict()


def offline_cloud(project: Project, stage: Stage) -> dict[str, Any]:
    from truckctl.cloud.offline import plan_offline

    return plan_offline(project, [stage.name])[0]


def cloud_step_result(plan: dict[str, Any]) -> dict[str, Any]:
    violations = plan["policy"]
    if violations:
        raise TruckctlError([Problem("policy-violation", f"{v['rule']}: {v['message']}", v["resource"])
                             for v in violations], ExitCode.ERROR, {"cloud": plan})
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
    def on_event(event: Any) -> None:
        # Tasks with secrets are no_log; scrubbing here too keeps a mistake in a role off the screen.
        event = dataclasses.replace(event, message=run.journal.redactor.scrub(event.message))
        if event.status in ("changed", "failed", "unreachable"):
            run.journal.event("task", "truck", node=event.host, task=event.task, status=event.status,
                              message=event.message)
        callbacks.on_host_event(event)

    started = time.monotonic()
    result = truck_tier(project, stage, request, inputs.connection, inputs.cloud,
                        UpCallbacks(on_phase=callbacks.on_phase, on_host_event=on_event, on_hosts=callbacks.on_hosts,
                                    cancel=callbacks.cancel))
    for host, stats in result.hosts.items():
        run.journal.event("node", "truck", node=host, state=stats.state, ok=stats.ok, changed=stats.changed,
                          failed=stats.failed, unreachable=stats.unreachable)
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
