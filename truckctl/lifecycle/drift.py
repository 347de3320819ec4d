"""`truckctl drift`: what differs from the configuration, per tier, and (with --fix) putting it back.

Truck tier: the playbooks in check mode with diff: every task that would change is drift, with
its node and diff. Cloud tier: on aws, Pulumi's refresh (preview only) plus a preview that expects
no changes; on the lab the cloud tier is an offline plan with no deployed state, so there is no
cloud drift to measure (said plainly). Exit 0 clean, 3 drift found (or left after a fix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle import racelive
from truckctl.lifecycle.orchestrator import truck_failures
from truckctl.lifecycle.run import Run, finish_run, locked_run
from truckctl.lifecycle.steps import StepResult
from truckctl.project import Project
from truckctl.remote import Connection
from truckctl.target import Target, Tier
from truckctl.truck.plan import resolve_limit
from truckctl.truck.tier import UpCallbacks, UpRequest, truck_tier


@dataclass(frozen=True)
class DriftOptions:
    stage: str
    fix: bool = False
    limit: str | None = None
    interrupt_telemetry: bool = False  # --interrupt-telemetry: fix what would cut telemetry even while live


@dataclass
class DriftHooks:
    """`confirm(drift)` decides whether found drift is fixed (the CLI asks, or --yes says yes)."""

    confirm: Callable[[dict[str, Any]], bool] = lambda drift: True
    on_step: Callable[[str, str], None] = lambda step, message: None
    truck: UpCallbacks = field(default_factory=UpCallbacks)


@dataclass(frozen=True)
class NodeAccess:
    """How the truck tier reaches the nodes in this run, and the cloud outputs it renders."""

    connection: Connection
    cloud: CloudOutputs


def drift(target: Target, options: DriftOptions, hooks: DriftHooks | None = None) -> tuple[dict[str, Any], ExitCode]:
    hooks = hooks or DriftHooks()
    project = target.project
    stage = load_stage(project, options.stage)
    resolve_limit(stage, options.limit)  # an unknown --limit is a usage error before anything is written
    target.preflight()
    with locked_run(project, stage, "drift", target) as run:
        access = NodeAccess(target.connection(stage), target.cloud_outputs(stage))
        for secret in access.cloud.trucks.values():
            run.secret(secret.private_key_pem.get_secret_value())
        run.lab_receiver = target.alert_receiver(access.cloud)
        found = measure(project, stage, options, target, access, run, hooks, "check")
        result: dict[str, Any] = {"stage": stage.name, "target": target.kind.value, **found, "fixed": False}
        if not found["drift"]:
            return finish_run(run, ExitCode.OK, result), ExitCode.OK
        run.notify("drift-found", f"drift on {stage.name} ({target.kind.value}): {summary_line(found)}",
                   items=found["items"][:50])
        if not options.fix:
            return finish_run(run, ExitCode.CHANGES, result), ExitCode.CHANGES
        if not hooks.confirm(found):
            result["fix"] = "not applied: not confirmed (give --yes where there is no terminal to confirm on)"
            return finish_run(run, ExitCode.CHANGES, result), ExitCode.CHANGES
        held = hold_back(project, stage, options, target, access, run, hooks, found, result)
        hooks.on_step("fix", f"applying the configuration to put back {len(found['items'])} drifted item(s)"
                      + (f", holding back {len(held)} that would interrupt telemetry" if held else ""))
        hold = bool(result.get("live", {}).get("live"))
        result["applied"] = run.step("fix", lambda: apply_fix(project, stage, options, target, access, hooks, hold))
        after = measure(project, stage, options, target, access, run, hooks, "recheck")
        result.update(after=after, fixed=not after["drift"])
        code = ExitCode.OK if not after["drift"] and not held else ExitCode.CHANGES
        return finish_run(run, code, result), code


def hold_back(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess, run: Run,
              hooks: DriftHooks, found: dict[str, Any], result: dict[str, Any]) -> list[racelive.Held]:
    """Is the stage live (unless --interrupt-telemetry)? If so, which found changes wait (journaled)."""
    if options.interrupt_telemetry:
        result["live"] = {"live": None, "reasons": [f"not checked: {racelive.OPTION} given"]}
        return []
    hooks.on_step("liveness", "is the race live? (telemetry at the cloud side, the stage's race window)")
    liveness = racelive.journaled_check(run, stage, target.kind, access.cloud)
    result["live"] = liveness.as_dict()
    if not liveness.live:
        return []
    held = racelive.held_changes(found["truck"]["changes"], racelive.gateways(stage),
                                 racelive.tagged_tasks(project.playbooks_dir))
    for item in held:
        run.journal.event("held", "fix", node=item.node, task=item.task, change=item.change, reason=liveness.why)
    result.update(held=[item.as_dict() for item in held], held_reason=racelive.held_line(stage, liveness, held))
    return held


def measure(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess, run: Run,
            hooks: DriftHooks, step: str) -> dict[str, Any]:
    hooks.on_step(step, target.drift_message())
    truck = run.step(f"{step}-truck", lambda: truck_check(project, stage, options, target, access, hooks))
    cloud = run.step(f"{step}-cloud", lambda: target.cloud_drift(stage))
    items = [item for change in truck["changes"] for item in truck_items(change)]
    items += [drift_item("cloud", None, "cloud-resource", name, "as the stack declares it", "differs")
              for name in cloud.get("drifted", [])]
    return {"drift": bool(items), "items": items, "truck": truck, "cloud": cloud}


def drift_item(tier: str, node: str | None, kind: str, item: str, expected: str, found: str,
               diff: str = "") -> dict[str, Any]:
    """One drift item: where, what kind, what the configuration wants and what the node has."""
    return {"tier": tier, "node": node, "kind": kind, "item": item, "expected": expected, "found": found,
            "diff": diff}


def truck_items(change: dict[str, Any]) -> list[dict[str, Any]]:
    """A check-mode change as drift items: the live-state module's own items, one per unit of
    truck_services ("enable X", "start X"), or the task with its diff (files and anything else)."""
    host = change["host"]
    if change.get("handler"):  # a restart another drifted task notified: that task is the item
        return []
    if change.get("items"):
        return [drift_item("truck", host, i.get("kind", "live"), i.get("item", ""), i.get("expected", ""),
                           i.get("found", ""), i.get("diff", "")) for i in change["items"]]
    if change.get("action") == "truck_services" and change["diff"].strip():
        wrong: dict[str, list[str]] = {}
        for line in change["diff"].splitlines():
            verb, _, unit = line.partition(" ")
            wrong.setdefault(unit, []).append({"enable": "not enabled", "start": "not active"}.get(verb, verb))
        return [drift_item("truck", host, "unit", unit, "enabled and active", ", ".join(states))
                for unit, states in wrong.items()]
    kind = "file" if change.get("action") == "truck_files" else "task"
    return [drift_item("truck", host, kind, change["task"], "as the roles render it", "differs", change["diff"])]


def truck_check(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess,
                hooks: DriftHooks) -> StepResult:
    request = UpRequest(stage.name, target.kind, Tier.truck, options.limit, check=True)
    result = truck_tier(project, stage, request, access.connection, access.cloud, hooks.truck).as_dict()
    failures = truck_failures(result)
    if failures:  # an unreachable node is not "no drift": the check itself failed
        raise TruckctlError(failures, ExitCode.ERROR, {"truck": result})
    return StepResult(result, changed=result["changed"])


def apply_fix(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess,
              hooks: DriftHooks, hold_cuts: bool = False) -> StepResult:
    applied: dict[str, Any] = {}
    cloud = target.cloud_fix(stage)
    if cloud is not None:
        applied["cloud"] = cloud
    request = UpRequest(stage.name, target.kind, Tier.truck, options.limit, hold_cuts=hold_cuts)
    truck = truck_tier(project, stage, request, access.connection, access.cloud, hooks.truck).as_dict()
    failures = truck_failures(truck)
    if failures:
        raise TruckctlError(failures, ExitCode.ERROR, {"applied": {"truck": truck}})
    applied["truck"] = {"changed": truck["changed"], "hosts": truck["hosts"], "duration_s": truck["duration_s"]}
    return StepResult(applied, changed=truck["changed"])


def summary_line(found: dict[str, Any]) -> str:
    by_node: dict[str, int] = {}
    for item in found["items"]:
        key = item["node"] or "cloud"
        by_node[key] = by_node.get(key, 0) + 1
    return ", ".join(f"{node}: {count}" for node, count in sorted(by_node.items()))
