"""`truckctl up`: bring a stage's environment up, tier by tier.

Today: the truck tier on the lab target. The cloud tier, prechecks, the run journal and the
stage lock slot in around `_truck_tier` (the orchestration order is prechecks -> cloud ->
CloudOutputs -> truck -> verify). The core never prints: progress goes through `UpCallbacks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.project import Project

if TYPE_CHECKING:
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage
    from truckctl.truck.events import HostEvent, TruckRunResult
    from truckctl.truck.plan import Connection

Target = Literal["lab", "aws"]
Tier = Literal["cloud", "truck", "all"]
TARGETS: tuple[str, ...] = ("lab", "aws")
TIERS: tuple[str, ...] = ("cloud", "truck", "all")
SUPPORTED: set[tuple[str, str]] = {("lab", "truck")}


@dataclass(frozen=True)
class UpRequest:
    stage: str
    target: str = "aws"
    tier: str = "all"
    limit: str | None = None
    check: bool = False  # --check --diff: report what would change, change nothing


def _ignore(*_: Any) -> None:
    return None


@dataclass
class UpCallbacks:
    """How the caller hears about progress (all optional)."""

    on_phase: Callable[[str, str], None] = _ignore  # (tier, message)
    on_host_event: Callable[[HostEvent], None] = _ignore
    on_hosts: Callable[[list[str]], None] = _ignore  # the nodes a truck run will touch, before it starts
    cancel: Callable[[], bool] | None = None


@dataclass
class UpResult:
    request: UpRequest
    truck: TruckRunResult | None = None
    tiers: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        if self.truck is not None and not self.truck.ok:
            return ExitCode.ERROR
        if self.request.check and self.truck is not None and self.truck.changed:
            return ExitCode.CHANGES
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.request.stage,
            "target": self.request.target,
            "tier": self.request.tier,
            "limit": self.request.limit,
            "check": self.request.check,
            "tiers": self.tiers,
            "truck": self.truck.as_dict() if self.truck is not None else None,
        }


def check_request(request: UpRequest) -> None:
    """Refuse, clearly, what is not implemented instead of doing part of it silently."""
    if request.target not in TARGETS:
        raise TruckctlError.single("unknown-target", f"expected --target lab or aws, got {request.target!r}",
                                   "--target", ExitCode.USAGE)
    if request.tier not in TIERS:
        raise TruckctlError.single("unknown-tier", f"expected --tier cloud, truck or all, got {request.tier!r}",
                                   "--tier", ExitCode.USAGE)
    if (request.target, request.tier) not in SUPPORTED:
        raise TruckctlError.single(
            "unsupported", f"`up --target {request.target} --tier {request.tier}` is not available yet: "
            "supported is --target lab --tier truck (the cloud tier and the aws target are not implemented)",
            "--target/--tier", ExitCode.USAGE)


def up(project: Project, request: UpRequest, callbacks: UpCallbacks | None = None) -> UpResult:
    """Run the requested tiers; return their results, or raise TruckctlError (with the partial result)."""
    from truckctl.config.loader import load_stage

    callbacks = callbacks or UpCallbacks()
    check_request(request)
    stage = load_stage(project, request.stage)
    result = UpResult(request)
    if request.tier in ("truck", "all"):
        connection, cloud = _target_inputs(project, stage, request.target)
        callbacks.on_phase("truck", f"{'checking' if request.check else 'converging'} the truck nodes of "
                           f"{stage.name} on {request.target}")
        result.truck = _truck_tier(project, stage, request, connection, cloud, callbacks)
        result.tiers.append("truck")
    if result.exit_code == ExitCode.ERROR:
        raise TruckctlError(_failures(result), ExitCode.ERROR, result.as_dict())
    return result


def _target_inputs(project: Project, stage: Stage, target: str) -> tuple[Connection, CloudOutputs]:
    """How to reach the nodes and what the cloud tier provides, for the target."""
    if target != "lab":  # check_request keeps other targets out; the aws target plugs in here
        raise TruckctlError.single("unsupported", f"no truck-tier inputs for target {target!r}")
    from truckctl.lab import api as lab_api

    return lab_api.connection(project), lab_api.cloud_outputs(project, stage)


def _truck_tier(project: Project, stage: Stage, request: UpRequest, connection: Connection,
                cloud: CloudOutputs, callbacks: UpCallbacks) -> TruckRunResult:
    from truckctl.truck.plan import build_plan
    from truckctl.truck.runner import RunnerSettings, run_plan

    plan = build_plan(project.playbooks_dir, stage, cloud, connection, request.target, request.limit,
                      request.check)
    callbacks.on_hosts(plan.hosts)
    result = run_plan(plan, RunnerSettings(project.state_dir), callbacks.on_host_event, callbacks.cancel)
    if result.status == "canceled":
        raise TruckctlError([Problem("interrupted", "the truck run was interrupted")], ExitCode.INTERRUPTED,
                            {"truck": result.as_dict()})
    return result


def _failures(result: UpResult) -> list[Problem]:
    problems = []
    if result.truck is not None:
        for failure in result.truck.failures:
            problems.append(Problem(f"truck-{failure.status}", f"{failure.task}: {failure.message or failure.status}",
                                    failure.host))
        if not problems:
            problems.append(Problem("truck-failed", f"the truck run ended {result.truck.status} "
                                    f"(rc {result.truck.rc}); see {result.truck.artifacts_dir}"))
    return problems
