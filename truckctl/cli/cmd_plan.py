"""`truckctl plan`: what the cloud tier would do for a stage.

Offline (the default on the lab target, or --offline): the real stack program under Pulumi
mocks, with the policy rules; `--target aws`: a real `pulumi preview` through the engine.
Only typer and the standard library are imported here: the rest inside the command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl.target import TargetKind

if TYPE_CHECKING:
    from truckctl.cli.output import Env
    from truckctl.cloud.engine import CloudEvent
    from truckctl.project import Project

def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("plan")
    def plan(
        stage: Annotated[str | None, typer.Argument(help="Stage name, e.g. stage-1.", show_default=False)] = None,
        all_stages: Annotated[bool, typer.Option("--all", help="Plan every stage.")] = False,
        offline: Annotated[bool, typer.Option(
            "--offline", help="Evaluate the stack program under Pulumi mocks: no cloud, no credentials.")] = False,
        target: Annotated[TargetKind, typer.Option(
            "--target", help="lab: the cloud tier plans offline; aws: a real Pulumi preview.")] = TargetKind.lab,
        backend: Annotated[str | None, typer.Option(
            "--backend", help="Pulumi backend URL for --target aws (default: file backend in the state directory).",
            show_default=False)] = None,
        secrets_provider: Annotated[str | None, typer.Option(
            "--secrets-provider", help="passphrase (default, from the environment) or awskms://KEY.",
            show_default=False)] = None,
        from_stage: Annotated[str | None, typer.Option(
            "--from", metavar="STAGE", help="Offline: show the move from this stage (default: the stage before; "
            "`race` for the race between stages).", show_default=False)] = None,
        jobs: Annotated[int | None, typer.Option(
            "--jobs", min=1, max=16, help="Stages planned in parallel offline (default: CPU count, at most 4).",
            show_default=False)] = None,
        json_output: Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")] = False,
    ) -> None:
        """Show what the cloud tier would create for a stage, with the policy check (offline under mocks)."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.cli.render_cloud import cloud_plan
        from truckctl.errors import ExitCode
        from truckctl.lifecycle.plan import aws_plan, offline_plan

        if all_stages == (stage is not None):
            raise typer.BadParameter("give one STAGE, or --all", param_hint="STAGE / --all")
        env = env_factory(json_output)
        names = None if all_stages else [stage or ""]
        use_aws = target is TargetKind.aws and not offline

        def progress(event: CloudEvent) -> None:
            # Progress goes to stderr, so stdout stays one JSON document with --json.
            if event.kind == "resource" and event.phase != "start":
                env.err_console().print(f"  {event.phase:<6} {event.op:<8} {event.type} {event.name}", markup=False)
            elif event.kind == "diagnostic":
                env.err_console().print(f"  {event.op}: {event.message}", markup=False)

        def action() -> Outcome:
            project = project_factory()
            if use_aws:
                return Outcome(aws_plan(project, names, backend, secrets_provider, progress).to_json())
            result, problems = offline_plan(project, names, jobs, from_stage)
            return Outcome(result.to_json(), ExitCode.ERROR if problems else ExitCode.OK, problems)

        raise typer.Exit(run(env, "plan", stage, action, cloud_plan))
