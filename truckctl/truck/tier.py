"""The truck tier as one call: plan the ansible-playbook run for a stage and run it.

The lifecycle (truckctl.lifecycle.orchestrator for `up`, drift.py for `drift`) wraps this with
the lock, the journal, prechecks and the cloud tier. The core never prints: progress goes
through `UpCallbacks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.project import Project
from truckctl.target import TargetKind, Tier

if TYPE_CHECKING:
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage
    from truckctl.truck.events import HostEvent, TruckRunResult
    from truckctl.truck.plan import Connection, RunPlan



@dataclass(frozen=True)
class UpRequest:
    """What `truckctl up` was asked for; the truck tier gets it with the nodes the prechecks left out."""

    stage: str
    target: TargetKind = TargetKind.lab  # the embedded default, as on the command line
    tier: Tier = Tier.all
    limit: str | None = None
    check: bool = False  # --check --diff: report what would change, change nothing
    exclude: tuple[str, ...] = ()  # nodes left out (found unreachable by the prechecks)
    hold_cuts: bool = False  # the race is live: what would interrupt telemetry waits (lifecycle/racelive.py)
    interrupt_telemetry: bool = False  # --interrupt-telemetry: never hold back (the race crew decided)
    full: bool = False  # --full: run site.yml even where the fast path (truck.fastcheck) says it would change nothing


def _ignore(*_: Any) -> None:
    return None


@dataclass
class UpCallbacks:
    """How the caller hears about progress (all optional)."""

    on_phase: Callable[[str, str], None] = _ignore  # (tier, message)
    on_host_event: Callable[[HostEvent], None] = _ignore
    on_hosts: Callable[[list[str]], None] = _ignore  # the nodes a truck run will touch, before it starts
    cancel: Callable[[], bool] | None = None


Runner = Callable[["RunPlan", Project, Callable[["HostEvent"], None], "Callable[[], bool] | None"], "TruckRunResult"]


def execute_plan(plan: RunPlan, project: Project, on_event: Callable[[HostEvent], None],
              cancel: Callable[[], bool] | None) -> TruckRunResult:
    from truckctl.truck.runner import RunnerSettings, run_plan

    return run_plan(plan, RunnerSettings(project.state_dir), on_event, cancel)


def run_truck_plan(project: Project, plan: RunPlan, callbacks: UpCallbacks,
                   interrupted: str = "the truck run was interrupted", runner: Runner | None = None) -> TruckRunResult:
    """Run a planned ansible-playbook run; a canceled run is an interruption (exit 130)."""
    callbacks.on_hosts(plan.hosts)
    result = (runner or execute_plan)(plan, project, callbacks.on_host_event, callbacks.cancel)
    if result.status == "canceled":
        raise TruckctlError([Problem("interrupted", interrupted)], ExitCode.INTERRUPTED, {"truck": result.as_dict()})
    return result


def truck_tier(project: Project, stage: Stage, request: UpRequest, connection: Connection,
                cloud: CloudOutputs, callbacks: UpCallbacks) -> TruckRunResult:
    """site.yml over the stage's nodes, as `request` asks (check mode, limit, nodes left out)."""
    from truckctl.truck.plan import build_plan

    plan = build_plan(project.playbooks_dir, stage, cloud, connection, request.target, request.limit,
                      request.check, request.exclude, request.hold_cuts)
    result = run_truck_plan(project, plan, callbacks)
    remember_converge(project, stage, plan, result)
    return result


def remember_converge(project: Project, stage: Stage, plan: RunPlan, result: TruckRunResult) -> None:
    """A converge of every node: its spec, for drift's fast path (truck.fastcheck)."""
    if not plan.check and plan.limit is None:
        from truckctl.truck.fastcheck import remember_spec

        remember_spec(project.state_dir, stage.name, plan, result)
