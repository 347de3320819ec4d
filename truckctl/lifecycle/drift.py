"""`truckctl drift`: what differs from the configuration, per tier, and (with --fix) putting it back.

Truck tier: the playbooks in check mode with diff: every task that would change is drift, with
its node and diff. When the inputs are those of the last clean check and no node moved since, one SSH
call per node says so instead (truckctl.truck.fastcheck: the fast path). Cloud tier: on aws, Pulumi's
refresh (preview only) plus a preview that expects no changes; on the lab the cloud tier is an offline
plan with no deployed state, so there is no cloud drift to measure (said plainly). Exit 0 clean, 3 drift
found (or left after a fix).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import racelive
from truckctl.lifecycle.finished import RunEnd, finish
from truckctl.lifecycle.orchestrator import truck_failures
from truckctl.lifecycle.run import Run, locked_run
from truckctl.lifecycle.steps import StepResult
from truckctl.project import Project
from truckctl.remote import Connection
from truckctl.target import Target, Tier
from truckctl.truck.events import Change, TruckRunResult
from truckctl.truck.fastcheck import FastPath, node_addresses
from truckctl.truck.plan import build_plan, resolve_limit
from truckctl.truck.tier import UpCallbacks, UpRequest, run_truck_plan, truck_tier


@dataclass(frozen=True)
class DriftOptions:
    stage: str
    fix: bool = False
    limit: str | None = None
    interrupt_telemetry: bool = False  # --interrupt-telemetry: fix what would cut telemetry even while live
    full: bool = False  # --full: the check-mode run even where the fast path would say clean


@dataclass(frozen=True)
class DriftItem:
    """One drift item: where, what kind, what the configuration wants and what the node has."""

    tier: str  # truck or cloud
    node: str | None  # None: the cloud tier
    kind: str  # task, file, unit, cloud-resource, or the live-state module's kind (sshd, sudo, ...)
    item: str
    expected: str
    found: str
    diff: str = ""

    def to_json(self) -> JsonObject:
        return {"tier": self.tier, "node": self.node, "kind": self.kind, "item": self.item,
                "expected": self.expected, "found": self.found, "diff": self.diff}


@dataclass(frozen=True)
class DriftFound:
    """One measure of drift: its items, the truck tier's check-mode run, the cloud step's detail."""

    items: tuple[DriftItem, ...]
    truck: TruckRunResult
    cloud: JsonObject  # the target's cloud drift step detail (aws: Pulumi's refresh and preview)
    method: JsonObject | None = None  # how the truck tier was checked: the fast path, or why not

    @property
    def drift(self) -> bool:
        return bool(self.items)

    def to_json(self) -> JsonObject:
        found: JsonObject = {"drift": self.drift, "items": [item.to_json() for item in self.items],
                             "truck": self.truck.as_dict(), "cloud": self.cloud}
        if self.method is not None:
            found["truck_check"] = self.method
        return found


@dataclass(frozen=True)
class DriftResult:
    """`truckctl drift`'s result; `to_json` is the envelope's `result`, its keys in the order they always had."""

    stage: str
    target: str
    found: DriftFound
    fixed: bool = False
    fix: str | None = None  # why found drift was left as it is
    live: racelive.Liveness | racelive.NotChecked | None = None  # asked before a fix only
    held: tuple[racelive.Held, ...] | None = None  # what a live race holds back (None: the race is not live)
    held_reason: str | None = None
    applied: JsonObject | None = None  # the fix step's detail, as the journal has it
    after: DriftFound | None = None  # the re-check after a fix
    ended: RunEnd | None = None

    def to_json(self) -> JsonObject:
        result: JsonObject = {"stage": self.stage, "target": self.target, **self.found.to_json(), "fixed": self.fixed}
        if self.fix is not None:
            result["fix"] = self.fix
        if self.live is not None:
            result["live"] = self.live.as_dict()
        if self.held is not None:
            result.update(held=[item.as_dict() for item in self.held], held_reason=self.held_reason)
        if self.applied is not None:
            result["applied"] = self.applied
        if self.after is not None:
            result["after"] = self.after.to_json()
        if self.ended is not None:
            result.update(self.ended.to_json())
        return result


@dataclass
class DriftHooks:
    """`confirm(drift)` decides whether found drift is fixed (the CLI asks, or --yes says yes)."""

    confirm: Callable[[DriftFound], bool] = lambda drift: True
    on_step: Callable[[str, str], None] = lambda step, message: None
    truck: UpCallbacks = field(default_factory=UpCallbacks)


@dataclass(frozen=True)
class NodeAccess:
    """How the truck tier reaches the nodes in this run, and the cloud outputs it renders."""

    connection: Connection
    cloud: CloudOutputs


def drift(target: Target, options: DriftOptions, hooks: DriftHooks | None = None) -> tuple[DriftResult, ExitCode]:
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
        result = DriftResult(stage.name, target.kind.value, found)
        if not found.drift:
            return finish(run, ExitCode.OK, result), ExitCode.OK
        run.notify("drift-found", f"drift on {stage.name} ({target.kind.value}): {summary_line(found)}",
                   items=[item.to_json() for item in found.items[:50]])
        if not options.fix:
            return finish(run, ExitCode.CHANGES, result), ExitCode.CHANGES
        if not hooks.confirm(found):
            result = replace(result, fix="not applied: not confirmed (give --yes where there is no terminal to "
                                         "confirm on)")
            return finish(run, ExitCode.CHANGES, result), ExitCode.CHANGES
        result = hold_back(project, stage, options, target, access, run, hooks, result)
        held = result.held or ()
        hooks.on_step("fix", f"applying the configuration to put back {len(found.items)} drifted item(s)"
                      + (f", holding back {len(held)} that would interrupt telemetry" if held else ""))
        hold = bool(result.live is not None and result.live.live)
        applied = run.step("fix", lambda: apply_fix(project, stage, options, target, access, hooks, hold))
        after = measure(project, stage, options, target, access, run, hooks, "recheck")
        result = replace(result, applied=applied, after=after, fixed=not after.drift)
        code = ExitCode.OK if not after.drift and not held else ExitCode.CHANGES
        return finish(run, code, result), code


def hold_back(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess, run: Run,
              hooks: DriftHooks, result: DriftResult) -> DriftResult:
    """Is the stage live (unless --interrupt-telemetry)? If so, which found changes wait (journaled): the
    result with its liveness and what is held back."""
    if options.interrupt_telemetry:
        return replace(result, live=racelive.NotChecked(f"not checked: {racelive.OPTION} given"))
    hooks.on_step("liveness", "is the race live? (telemetry at the cloud side, the stage's race window)")
    liveness = racelive.journaled_check(run, stage, target.kind, access.cloud)
    if not liveness.live:
        return replace(result, live=liveness)
    held = racelive.held_changes(result.found.truck.changes, racelive.gateways(stage),
                                 racelive.tagged_tasks(project.playbooks_dir))
    for item in held:
        run.journal.event("held", "fix", node=item.node, task=item.task, change=item.change, reason=liveness.why)
    return replace(result, live=liveness, held=tuple(held), held_reason=racelive.held_line(stage, liveness, held))


def measure(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess, run: Run,
            hooks: DriftHooks, step: str) -> DriftFound:
    hooks.on_step(step, target.drift_message())
    checked: list[TruckRunResult] = []
    truck = run.step(f"{step}-truck", lambda: truck_check(project, stage, options, target, access, hooks, checked))
    cloud = run.step(f"{step}-cloud", lambda: target.cloud_drift(stage))
    items = [*truck_drift(checked[0].changes),
             *(DriftItem("cloud", None, "cloud-resource", name, "as the stack declares it", "differs")
               for name in cloud.get("drifted", []))]
    method = truck.get("truck_check")
    return DriftFound(tuple(items), checked[0], cloud, method if isinstance(method, dict) else None)


def truck_drift(changes: Iterable[Change]) -> list[DriftItem]:
    return [item for change in changes for item in truck_items(change)]


def truck_items(change: Change) -> list[DriftItem]:
    """A check-mode change as drift items: the module's own items (truck_files: one per file or unit,
    truck_live_state: one per live setting), or the task with its diff (Ansible's own modules)."""
    host = change.host
    if change.handler:  # a restart another drifted task notified: that task is the item
        return []
    if change.items:
        return [DriftItem("truck", host, i.get("kind", "live"), i.get("item", ""), i.get("expected", ""),
                          i.get("found", ""), i.get("diff", "")) for i in change.items]
    return [DriftItem("truck", host, "task", change.task, "as the roles render it", "differs", change.diff)]


def truck_check(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess,
                hooks: DriftHooks, checked: list[TruckRunResult]) -> StepResult:
    """The truck tier in check mode, or the fast path where it applies; its run is appended to `checked`
    (the drift items come from it)."""
    plan = build_plan(project.playbooks_dir, stage, access.cloud, access.connection, target.kind, options.limit,
                      check=True)
    fast = None if options.limit else FastPath(project.state_dir, stage.name, plan, access.connection,
                                               node_addresses(stage))
    method: JsonObject = {}
    if fast is not None:
        outcome = fast.try_clean(options.full)
        method = {"truck_check": outcome.as_dict()}
        if outcome.clean:
            checked.append(outcome.run_result(list(fast.addresses), check=True))
            return StepResult({**checked[0].as_dict(), **method})
    ran = run_truck_plan(project, plan, hooks.truck)
    failures = truck_failures(ran)
    if failures:  # an unreachable node is not "no drift": the check itself failed
        raise TruckctlError(failures, ExitCode.ERROR, {"truck": ran.as_dict()})
    if fast is not None:
        fast.after_full_run(ran)
    checked.append(ran)
    return StepResult({**ran.as_dict(), **method}, changed=ran.changed)



def apply_fix(project: Project, stage: Stage, options: DriftOptions, target: Target, access: NodeAccess,
              hooks: DriftHooks, hold_cuts: bool = False) -> StepResult:
    applied: JsonObject = {}
    cloud = target.cloud_fix(stage)
    if cloud is not None:
        applied["cloud"] = cloud.as_dict()
    request = UpRequest(stage.name, target.kind, Tier.truck, options.limit, hold_cuts=hold_cuts)
    truck = truck_tier(project, stage, request, access.connection, access.cloud, hooks.truck)
    failures = truck_failures(truck)
    if failures:
        raise TruckctlError(failures, ExitCode.ERROR, {"applied": {"truck": truck.as_dict()}})
    applied["truck"] = {"changed": truck.changed, "hosts": truck.as_dict()["hosts"],
                        "duration_s": round(truck.duration_s, 2)}
    return StepResult(applied, changed=truck.changed)


def summary_line(found: DriftFound) -> str:
    by_node: dict[str, int] = {}
    for item in found.items:
        key = item.node or "cloud"
        by_node[key] = by_node.get(key, 0) + 1
    return ", ".join(f"{node}: {count}" for node, count in sorted(by_node.items()))
