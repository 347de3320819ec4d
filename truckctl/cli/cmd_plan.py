"""`truckctl plan`: what the cloud tier would do for a stage.

Offline (the default on the lab target, or --offline): the real stack program under Pulumi
mocks, with the policy rules; `--target aws`: a real `pulumi preview` through the engine.
Only typer and the standard library are imported here: the rest inside the command.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

LAB_NOTE = ("offline plan: the race's one stack evaluated under Pulumi mocks, nothing is created "
            "(on the lab target this is the cloud tier's plan: the lab's cloud stand-in replaces AWS)")
AWS_NOTE = "aws preview: Pulumi's preview of the stage's stack against AWS"


class Target(StrEnum):
    lab = "lab"
    aws = "aws"


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)


def plan(
    stage: Annotated[str | None, typer.Argument(help="Stage name, e.g. stage-1.", show_default=False)] = None,
    all_stages: Annotated[bool, typer.Option("--all", help="Plan every stage.")] = False,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Evaluate the stack program under Pulumi mocks: no cloud, no credentials.")] = False,
    target: Annotated[Target, typer.Option(
        "--target", help="lab: the cloud tier plans offline; aws: a real Pulumi preview.")] = Target.lab,
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
    from truckctl.cli.app import _env, _project
    from truckctl.cli.dispatch import run
    from truckctl.cli.render_cloud import cloud_plan

    if all_stages == (stage is not None):
        raise typer.BadParameter("give one STAGE, or --all", param_hint="STAGE / --all")
    env = _env(json_output)
    names = None if all_stages else [stage or ""]
    use_aws = target is Target.aws and not offline

    def action() -> Any:
        project = _project()
        if use_aws:
            return _aws_plan(project, names, backend, secrets_provider, env)
        return _offline_plan(project, names, jobs, from_stage)

    raise typer.Exit(run(env, "plan", stage, action, cloud_plan))


def _offline_plan(project: Any, names: list[str] | None, jobs: int | None, from_stage: str | None = None) -> Any:
    """One stage: the race stack at that stage and the move to it; --all: the race stack once, then the
    moves of every stage from the one before."""
    from truckctl.cli.dispatch import Outcome
    from truckctl.cloud.offline import RACE, plan_move, plan_race, previous_stage
    from truckctl.errors import ExitCode, Problem

    result: dict[str, Any] = {"target": "lab", "mode": "offline", "note": LAB_NOTE}
    if names is not None:
        stage = names[0]
        if from_stage is not None and from_stage != RACE:
            from truckctl.config.loader import check_stage_name

            check_stage_name(from_stage)
        planned = plan_move(project, stage, from_stage if from_stage is not None else previous_stage(project, stage),
                            jobs)
        result.update(stage=stage, cloud=planned["cloud"], move=planned["move"])
        entries = [{"stage": stage, **planned}]
    else:
        race = plan_race(project, jobs)
        result.update(race=race["race"], stages=race["stages"])
        entries = [{"stage": RACE, "cloud": race["race"], "move": {"policy": []}}, *race["stages"]]
    problems = [Problem("policy-violation", f"{v['rule']}: {v['message']}", f"{e['stage']}: {v['resource']}")
                for e in entries for v in (*e["cloud"]["policy"], *e["move"]["policy"])]
    if names is None:
        result["totals"] = {"stages": len(race["stages"]), "race_resources": race["race"]["counts"]["total"],
                            "moves": {op: sum(s["move"]["counts"][op] for s in race["stages"])
                                      for op in ("create", "update", "replace", "delete")},
                            "violations": len(problems)}
    return Outcome(result, ExitCode.ERROR if problems else ExitCode.OK, problems)


def _aws_plan(project: Any, names: list[str] | None, backend: str | None, secrets_provider: str | None,
              env: Any) -> Any:
    from truckctl.cli.dispatch import Outcome
    from truckctl.cloud.engine import AwsEngine, CloudEvent
    from truckctl.config.loader import load_stages

    def progress(event: CloudEvent) -> None:
        # Progress goes to stderr, so stdout stays one JSON document with --json.
        if event.kind == "resource" and event.phase != "start":
            env.err_console().print(f"  {event.phase:<6} {event.op:<8} {event.type} {event.name}", markup=False)
        elif event.kind == "diagnostic":
            env.err_console().print(f"  {event.op}: {event.message}", markup=False)

    stages = load_stages(project, names)
    previews = []
    for stage in stages:
        engine = AwsEngine(project, stage, backend=backend, secrets_provider=secrets_provider, on_event=progress)
        previews.append({"stage": stage.name, "cloud": {"mode": "preview", **engine.preview().as_dict()}})
    result: dict[str, Any] = {"target": "aws", "mode": "preview", "note": AWS_NOTE}
    if names is not None:
        result.update(stage=previews[0]["stage"], cloud=previews[0]["cloud"])
    else:
        result["stages"] = previews
    return Outcome(result)
