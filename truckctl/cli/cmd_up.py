"""`truckctl up STAGE`: the whole environment of a stage, as one run (lifecycle.orchestrator).

Only typer is imported at module level (`truckctl --help` stays fast); rich, the core and
ansible-runner load when the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl.cli.options import FullOpt, InterruptTelemetryOpt, TargetOpt, TierOpt
from truckctl.target import TargetKind, Tier

if TYPE_CHECKING:
    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.project import Project

StageArg = Annotated[str, typer.Argument(help="Stage name, e.g. stage-1.", show_default=False)]
LimitOpt = Annotated[str | None, typer.Option("--limit", help="Only this node (truck tier).", show_default=False)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Never prompt (up asks nothing today; for scripts).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]


def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("up")
    def up(stage: StageArg, target: TargetOpt = TargetKind.lab, tier: TierOpt = Tier.all, limit: LimitOpt = None,
           yes: YesOpt = False, json_output: JsonOpt = False,
           interrupt_telemetry: InterruptTelemetryOpt = False, full: FullOpt = False) -> None:
        """Bring a stage's environment up: prechecks, cloud tier, truck tier, smoke check."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.cli.progress import NodeProgress
        from truckctl.lifecycle import orchestrator

        env = env_factory(json_output)
        options = orchestrator.UpRequest(stage=stage, target=target, tier=tier, limit=limit,
                                         interrupt_telemetry=interrupt_telemetry, full=full)

        def action() -> Outcome:
            from truckctl.errors import ExitCode
            from truckctl.targets import for_kind

            chosen = for_kind(target, project_factory())
            with NodeProgress(env) as progress:
                result = orchestrator.up(chosen, options, progress.progress())
            return Outcome(result.to_json(), ExitCode.CHANGES if result.held else ExitCode.OK)

        raise typer.Exit(run(env, "up", stage, action, render_up))


def render_held(env: Env, result: dict[str, object]) -> None:
    """What a live race held back (up and drift --fix): one line per change, then why."""
    from rich.markup import escape

    console = env.console()
    held = result.get("held")
    for item in held if isinstance(held, list) else []:
        console.print(f"held back: {escape(item['node'])}: {escape(item['task'])}: {escape(item['change'])}",
                      highlight=False)
    if held:
        console.print(f"held: {result.get('held_reason')}", markup=False, highlight=False)


def render_fast_path(env: Env, result: dict[str, object]) -> None:
    """How the truck tier was checked or converged, when the fast path answered (up and drift)."""
    method = result.get("truck_check")
    if isinstance(method, dict) and method.get("method") == "fingerprint":
        env.console().print(f"truck tier: {method['fast_path']}, checked in {method['fast_path_s']} s (fast path: one "
                            "SSH call per node instead of site.yml; --full runs it)", markup=False, highlight=False)


def render_up(env: Env, outcome: Outcome) -> None:
    from truckctl.cli.progress import truck_summary

    result = outcome.result
    console = env.console()
    if result.get("cloud"):
        cloud = result["cloud"]
        console.print(f"cloud: {cloud.get('mode', 'pulumi up')}: {cloud.get('resources', '?')} resources, "
                      f"{cloud.get('policy_violations', 0)} policy violations", markup=False, highlight=False)
    if result.get("cloud_source"):
        console.print(f"cloud outputs from {result['cloud_source']}", markup=False, highlight=False)
    truck_summary(env, outcome)
    render_fast_path(env, result)
    render_held(env, result)
    smoke = result.get("smoke")
    if smoke:
        text = (f"smoke check: telemetry reached the cloud side from {', '.join(smoke['arrived_s'])}"
                if smoke.get("checked") else f"smoke check: {smoke['note']}")
        console.print(text, markup=False, highlight=False)
    if result.get("run_id"):
        console.print(f"run {result['run_id']} (truckctl runs show {result['run_id']})", markup=False,
                      highlight=False)
