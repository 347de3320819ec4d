"""The truckctl command line: each command parses, calls the core and renders (DESIGN section 7).

Heavy modules (pulumi, pulumi_aws, ansible_runner, even pydantic) are imported inside the
commands that need them so `truckctl --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl import __version__
from truckctl.cli import cmd_down, cmd_drift, cmd_lab, cmd_plan, cmd_portal, cmd_rotate, cmd_runs, cmd_status, cmd_up
from truckctl.cli.dispatch import Outcome, run
from truckctl.cli.output import Env

if TYPE_CHECKING:
    from truckctl.project import Project

def _rich_help() -> bool:
    """Rich help costs ~65 ms of imports: worth it on a terminal, not in pipes, CI or scripts."""
    import os

    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and "--no-color" not in sys.argv


app = typer.Typer(
    name="truckctl",
    rich_markup_mode="rich" if _rich_help() else None,
    help="Bring up, check and tear down the IT environment of a race-data truck.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
StageArg = Annotated[str, typer.Argument(help="Stage name, e.g. stage-1.", show_default=False)]


class State:
    project_dir: Path | None = None
    no_color: bool = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"truckctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    project_dir: Annotated[
        Path | None,
        typer.Option("--project-dir", "-C", help="Project directory (default: TRUCKCTL_PROJECT_DIR, "
                     "else the current directory or a parent holding inventory/race.yaml)."),
    ] = None,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain output even on a terminal.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    State.project_dir = project_dir
    State.no_color = no_color


def _env(json_output: bool) -> Env:
    return Env(json=json_output, no_color=State.no_color)


def _project() -> Project:
    from truckctl.project import find_project

    return find_project(State.project_dir)


def _finish(code: int) -> None:
    raise typer.Exit(code)


@app.command()
def validate(
    stages: Annotated[list[str] | None, typer.Argument(help="Stages to validate (default: all).",
                                                       show_default=False)] = None,
    all_stages: Annotated[bool, typer.Option("--all", help="Validate every stage.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Validate the race and stage configuration without touching anything."""
    from truckctl.cli import render
    from truckctl.lifecycle import configuration

    env = _env(json_output)
    stage = stages[0] if stages and len(stages) == 1 else None
    _finish(run(env, "validate", stage,
                lambda: Outcome(configuration.validate(_project(), None if all_stages else stages)),
                render.validation))


@app.command("stages")
def list_stages(json_output: JsonOpt = False) -> None:
    """List the race's stages with dates, towns and state."""
    from truckctl.cli import render
    from truckctl.lifecycle import configuration

    env = _env(json_output)
    _finish(run(env, "stages", None, lambda: Outcome(configuration.stages(_project())), render.stages))


@app.command()
def inventory(stage: StageArg, json_output: JsonOpt = False) -> None:
    """Print the Ansible inventory rendered for a stage (YAML; JSON with --json)."""
    from truckctl.cli import render
    from truckctl.lifecycle import configuration

    env = _env(json_output)
    _finish(run(env, "inventory", stage, lambda: Outcome(configuration.inventory(_project(), stage)),
                render.inventory))


# Commands that live in their own modules register here (each module imports only typer at the top).
# In the order `truckctl --help` lists them: the stage's lifecycle, then the journal, then the lab.
cmd_plan.register(app, _env, _project)
cmd_up.register(app, _env, _project)
cmd_drift.register(app, _env, _project)
cmd_status.register(app, _env, _project)
cmd_down.register(app, _env, _project)
cmd_runs.register(app, _env, _project)
cmd_portal.register(app, _env, _project)
cmd_lab.register(app, _env, _project)
cmd_rotate.register(app, _env, _project)


def main() -> None:
    """Console entry point: usage errors become a JSON envelope too when --json is given."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except Exception as exc:
        # Click's usage errors (Typer vendors Click, so match by shape, not by class).
        if not (hasattr(exc, "exit_code") and hasattr(exc, "format_message") and hasattr(exc, "show")):
            raise
        code = exc.exit_code
        if "--json" in sys.argv[1:]:
            from truckctl.cli.output import write_json
            from truckctl.envelope import envelope
            from truckctl.errors import ExitCode, Problem

            command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
            write_json(Env(), envelope(command, None, ExitCode.USAGE, {}, [Problem("usage", exc.format_message())]))
        else:
            exc.show()
    sys.exit(code if isinstance(code, int) else 0)
