"""`truckctl runs [STAGE]`, `truckctl runs show RUN_ID`, `truckctl unlock STAGE`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl.cli.dispatch import Outcome, run
from truckctl.cli.options import TargetOpt
from truckctl.cli.output import Env
from truckctl.target import TargetKind

if TYPE_CHECKING:
    from truckctl.lifecycle.teamlock import GatewayLock
    from truckctl.project import Project

runs_app = typer.Typer(help="The run journal: what ran, per node and resource, and how it ended.",
                       invoke_without_command=True, no_args_is_help=False)


def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @runs_app.callback()
    def runs(ctx: typer.Context,
             stage: Annotated[str | None, typer.Option("--stage", "-s", help="Only this stage, with the runs every "
                                                       "operator recorded on its gateways.")] = None,
             target: TargetOpt = TargetKind.lab,
             json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False) -> None:
        """List runs, newest first (or `runs show RUN_ID`)."""
        if ctx.invoked_subcommand is not None:
            return
        from truckctl.cli import render_lifecycle
        from truckctl.config.loader import check_stage_name
        from truckctl.lifecycle.history import all_runs
        from truckctl.targets import for_kind

        def action() -> Outcome:
            if stage is not None:
                check_stage_name(stage)
            return Outcome(all_runs(for_kind(target, project_factory()), stage).to_json())

        raise typer.Exit(run(env_factory(json_output), "runs", stage, action, render_lifecycle.runs))

    @runs_app.command("show")
    def show(run_id: Annotated[str, typer.Argument(help="A run id from `truckctl runs`.")],
             json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False) -> None:
        """Show one run: its summary and every event."""
        from truckctl.cli import render_lifecycle
        from truckctl.lifecycle.journal import show_run

        raise typer.Exit(run(env_factory(json_output), "runs show", None,
                             lambda: Outcome(show_run(project_factory(), run_id)), render_lifecycle.run_detail))

    @app.command()
    def unlock(stage: Annotated[str, typer.Argument(help="Stage name, e.g. stage-1.")],
               target: TargetOpt = TargetKind.lab,
               yes: Annotated[bool, typer.Option("--yes", "-y", help="Release another operator's lock on the "
                                                 "gateways without asking.")] = False,
               force: Annotated[bool, typer.Option("--force", help="Also clear a local lock file written by "
                                                   "another host (a shared state directory).")] = False,
               json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False) -> None:
        """Clear a stage's stale lock, and (confirmed) force the team lock off its gateways; recorded."""
        import sys

        from truckctl.cli import render_lifecycle
        from truckctl.config.loader import check_stage_name
        from truckctl.lifecycle.unlock import unlock as clear
        from truckctl.targets import for_kind

        def confirm(held: list[GatewayLock]) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty():
                return False
            who = "; ".join(f"{lock.description} on {lock.gateway}" for lock in held)
            return bool(typer.confirm(f"{stage} is locked by {who}. If that run is still going, it stops at its "
                                      "next lease renewal. Release the lock?", default=False, err=True))

        def action() -> Outcome:
            check_stage_name(stage)
            return Outcome(clear(for_kind(target, project_factory()), stage, confirm, force).to_json())

        raise typer.Exit(run(env_factory(json_output), "unlock", stage, action, render_lifecycle.message))

    app.add_typer(runs_app, name="runs")

