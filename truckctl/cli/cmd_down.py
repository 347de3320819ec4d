"""`truckctl down STAGE [--race] [--target lab|aws] [--yes] [--delete-data [--confirm-delete-data STAGE]] [--json]`.

`down STAGE` ends the day (the stage's trucks down, the race's cloud leaves the stage and keeps
everything that lives the race); `down STAGE --race` tears the race's cloud down after the race.

Confirmation (truckctl.lifecycle.down.confirm): on a terminal the stage name is typed; `--yes`
confirms without a prompt. `--delete-data` always needs the name typed, even with --yes; in CI,
where nobody can type, `--yes --delete-data --confirm-delete-data STAGE` is the typed name.

Exit codes: 0 torn down; 1 failed (a step failed, or nodes were not taken down: the cloud tier is
then left in place), also a wrong name typed at the prompt; 2 not confirmed where nobody can be
asked (no terminal and no --yes; --delete-data without --confirm-delete-data) or a usage error;
4 stage locked; 5 invalid configuration; 130 interrupted (re-run to resume). In every refusal,
nothing was changed: no lock taken, no journal written, no node or cloud resource touched.

Only typer is imported at module level (`truckctl --help` stays fast).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl.cli.options import InterruptTelemetryOpt, TargetOpt
from truckctl.target import TargetKind

if TYPE_CHECKING:
    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.project import Project

StageArg = Annotated[str, typer.Argument(help="Stage name, e.g. stage-1.", show_default=False)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Confirm the teardown without typing the stage name.")]
DeleteDataOpt = Annotated[bool, typer.Option("--delete-data", help="Also delete the data lake (always needs the "
                                             "stage name typed, or --confirm-delete-data).")]
ConfirmDataOpt = Annotated[str | None, typer.Option("--confirm-delete-data", metavar="STAGE", show_default=False,
                                                    help="The stage name again, to delete the data lake where "
                                                         "nobody can type it (CI).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
RaceOpt = Annotated[bool, typer.Option("--race", help="After the race: tear the race's cloud down (certificates "
                                       "first), keeping the data lake unless --delete-data. Without it: the day only.")]


def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("down")
    def down(stage: StageArg, target: TargetOpt = TargetKind.lab, race: RaceOpt = False, yes: YesOpt = False,
             delete_data: DeleteDataOpt = False,
             confirm_delete_data: ConfirmDataOpt = None, json_output: JsonOpt = False,
             interrupt_telemetry: InterruptTelemetryOpt = False) -> None:
        """End the day (the stage's trucks, the cloud's day parts), or with --race tear the race's cloud
        down: certificates, truck tier, cloud tier; keeps the data lake."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.cli.progress import NodeProgress
        from truckctl.lifecycle import down as core

        env = env_factory(json_output)

        def ask(prompt: str) -> str:
            return str(typer.prompt(prompt, err=True, default="", show_default=False))

        def action() -> Outcome:
            from truckctl.targets import for_kind

            chosen = for_kind(target, project_factory())
            confirmation = core.confirm(stage, chosen, yes=yes, delete_data=delete_data,
                                        confirm_delete_data=confirm_delete_data, interactive=sys.stdin.isatty(),
                                        ask=ask, race=race)
            options = core.DownOptions(stage, delete_data, race, interrupt_telemetry)
            with NodeProgress(env) as progress:  # silent with --json: stdout holds only the document
                steps = core.DownProgress() if env.json else core.DownProgress(progress.phase, progress.callbacks())
                result = core.down(chosen, options, confirmation, steps)
            return Outcome(result.to_json())

        raise typer.Exit(run(env, "down", stage, action, render))


def render(env: Env, outcome: Outcome) -> None:
    from rich.markup import escape

    from truckctl.cli.progress import truck_summary

    result = outcome.result
    console = env.console()
    if result.get("truck"):
        truck_summary(env, outcome)
    if result.get("resumed_from"):
        skipped = ", ".join(result.get("skipped_steps") or []) or "none"
        console.print(f"resumed {escape(result['resumed_from'])}: steps skipped as done there: {skipped}",
                      highlight=False)
    for item in (result.get("truck") or {}).get("not_down", []):
        console.print(f"NOT taken down: {escape(item['node'])}: {escape(item['reason'])}", highlight=False)
    revoke = result.get("revoke")
    if revoke and revoke.get("certificates"):  # aws: the IoT certificates, first
        states = ", ".join(f"{item['truck']} {item['after']}" for item in revoke["certificates"])
        console.print(f"certificates (first): {escape(states)}: {escape(revoke.get('note', ''))}", highlight=False)
    elif revoke:
        trucks = ", ".join(item["truck"] for item in revoke.get("revoked", []))
        console.print(f"certificates: {'revoked for ' + trucks if trucks else escape(revoke.get('note', ''))}",
                      highlight=False)
    cloud = result.get("cloud")
    if cloud:
        if cloud.get("operation") and not cloud.get("destroyed"):
            changes = ", ".join(f"{op} {n}" for op, n in cloud["operation"]["changes"].items()) or "nothing"
            console.print(f"cloud tier: left the stage ({changes}): {escape(cloud.get('note', ''))}", highlight=False)
        elif cloud.get("operation"):
            changes = ", ".join(f"{op} {n}" for op, n in cloud["operation"]["changes"].items()) or "nothing"
            console.print(f"cloud tier: destroyed ({changes})", highlight=False)
        elif cloud.get("note"):
            console.print(f"cloud tier: {escape(cloud['note'])}", highlight=False)
        elif cloud.get("reason"):
            console.print(f"cloud tier: NOT destroyed: {escape(cloud['reason'])}", highlight=False)
    if result.get("note"):
        console.print(escape(result["note"]), highlight=False)
    for title, key in (("kept", "kept"), ("DELETED", "deleted")):
        for item in result.get(key) or []:
            console.print(f"{title}: {escape(item['what'])}: {escape(item['name'])} ({escape(item['detail'])})",
                          highlight=False, soft_wrap=True)
    if result.get("run_id"):
        console.print(f"run {result['run_id']} (truckctl runs show {result['run_id']})", highlight=False)
