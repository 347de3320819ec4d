"""`truckctl drift STAGE [--fix] [--yes] [--full]`: find configuration drift, and put it back.

Only typer is imported at module level; the lifecycle loads when the command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl.cli.options import FullOpt, InterruptTelemetryOpt, TargetOpt
from truckctl.target import TargetKind

if TYPE_CHECKING:
    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.lifecycle.drift import DriftFound
    from truckctl.project import Project

FORMATS = ("text", "markdown")


def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("drift")
    def drift(
        stage: Annotated[str, typer.Argument(help="Stage name, e.g. stage-1.", show_default=False)],
        target: TargetOpt = TargetKind.lab,
        fix: Annotated[bool, typer.Option("--fix", help="Apply the configuration where it drifted.")] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Fix without asking (needed without a terminal).")
                       ] = False,
        limit: Annotated[str | None, typer.Option("--limit", help="Only this node.", show_default=False)] = None,
        output_format: Annotated[str, typer.Option("--format", help="text, or markdown for a pull-request comment."
                                                   )] = "text",
        json_output: Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")
                               ] = False,
        interrupt_telemetry: InterruptTelemetryOpt = False,
        full: FullOpt = False,
    ) -> None:
        """Report drift (exit 3) or none (exit 0); with --fix, fix it and exit 0 once clean."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.cli.progress import NodeProgress
        from truckctl.lifecycle.drift import DriftHooks, DriftOptions
        from truckctl.lifecycle.drift import drift as core_drift
        from truckctl.targets import for_kind

        if output_format not in FORMATS:
            raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}", param_hint="--format")
        if json_output and output_format != "text":
            raise typer.BadParameter("--json and --format markdown are two different outputs: pick one",
                                     param_hint="--format")
        markdown = output_format == "markdown"
        env = env_factory(json_output)
        quiet = json_output or markdown  # markdown output is the document: no progress lines in it

        def confirm(found: DriftFound) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty() or quiet:
                return False
            return typer.confirm(f"Fix {len(found.items)} drifted item(s) on {stage}?", default=False)

        def action() -> Outcome:
            with NodeProgress(env if not quiet else env_factory(True)) as progress:
                hooks = DriftHooks(confirm=confirm, on_step=progress.progress().on_step, truck=progress.callbacks())
                options = DriftOptions(stage, fix, limit, interrupt_telemetry, full)
                result, code = core_drift(for_kind(target, project_factory()), options, hooks)
            return Outcome(result.to_json(), code)

        raise typer.Exit(run(env, "drift", stage, action, render_markdown if markdown else render_drift))


def render_drift(env: Env, outcome: Outcome) -> None:
    from rich.markup import escape

    from truckctl.cli.cmd_up import render_fast_path, render_held

    result = outcome.result
    console = env.console()
    after = result.get("after")
    for item in result.get("items", []):
        where = item["node"] or "cloud"
        console.print(f"drift: {escape(where)}: {escape(item['kind'])} {escape(item['item'])}: expected "
                      f"{escape(item['expected'])}, found {escape(item['found'])}", highlight=False)
        if item["diff"]:
            console.print(escape(item["diff"].rstrip()), highlight=False, soft_wrap=True)
    render_fast_path(env, result)
    cloud = result.get("cloud", {})
    if not cloud.get("checked", True):
        console.print(f"cloud: {cloud['note']}", markup=False, highlight=False)
    if result.get("held"):
        render_held(env, result)
        left = len(after["items"]) if after else 0
        console.print(f"fixed the rest: {len(result['items'])} drifted item(s) found, {left} remain until the "
                      "held-back changes are applied", highlight=False)
    elif result.get("fixed"):
        console.print(f"fixed: {len(result['items'])} item(s); a re-check finds no drift", highlight=False)
    elif result.get("fix"):
        console.print(result["fix"], markup=False, highlight=False)
    elif not result.get("items"):
        console.print(f"no drift on {result['stage']} ({result['target']})", highlight=False)
    elif after:
        console.print(f"drift remains after the fix on {len(after['items'])} item(s)", highlight=False)
    console.print(f"run {result['run_id']}", markup=False, highlight=False)


def render_markdown(env: Env, outcome: Outcome) -> None:
    from truckctl.cli.output import visible
    from truckctl.lifecycle.report import drift_markdown

    env.stdout.write(visible(drift_markdown(outcome.result)))  # a node's diff is data: no escape sequence raw
