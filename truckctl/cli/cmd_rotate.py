"""`truckctl rotate-cert TRUCK [--target lab|aws] [--offline] [--json]`: a truck's new certificate, on purpose.

Offline (the lab target, or --offline) it shows the plan; `--target aws` applies it. Only typer is
imported at module level (`truckctl --help` stays fast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl.target import TargetKind

if TYPE_CHECKING:
    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.project import Project


def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("rotate-cert")
    def rotate_cert(
        truck: Annotated[str, typer.Argument(help="Truck name, e.g. truck-a.", show_default=False)],
        target: Annotated[TargetKind, typer.Option("--target", help="lab (shows the plan) or aws (applies it).")
                          ] = TargetKind.lab,
        offline: Annotated[bool, typer.Option("--offline", help="Only show the plan, whatever the target.")] = False,
        json_output: Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")] = False,
    ) -> None:
        """Give one truck a new IoT certificate (certificates last the race; no stage move replaces them)."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.lifecycle import rotate

        env = env_factory(json_output)

        def action() -> Outcome:
            project = project_factory()
            if target is TargetKind.aws and not offline:
                return Outcome(rotate.rotate(project, truck).to_json())
            return Outcome(rotate.plan_rotation(project, truck).to_json())

        raise typer.Exit(run(env, "rotate-cert", None, action, render))


def render(env: Env, outcome: Outcome) -> None:
    from truckctl.cli.render import table

    result = outcome.result
    move = result.get("move")
    if move:
        table(env, f"Rotating {result['truck']}'s certificate (offline plan)", ["op", "type", "name", "inputs"],
              [[c["op"], c["type"].rsplit(":", 1)[-1], c["name"], ", ".join(c["replaced_on"] or c["keys"])]
               for c in move["changes"]])
    elif result.get("operation"):
        changes = ", ".join(f"{op} {n}" for op, n in result["operation"]["changes"].items())
        env.console().print(f"rotated on aws: {changes}", markup=False)
    env.console().print(result["note"], markup=False)
