"""Human renderings of command results (the JSON envelope needs none)."""

from __future__ import annotations

from truckctl.cli.dispatch import Outcome
from truckctl.cli.output import Env, visible


def table(env: Env, title: str, columns: list[str], rows: list[list[str]]) -> None:
    """The one table style of human output: cells are text, never rich markup; long cells fold."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD if env.rich else None,
                 show_edge=False, pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(escape(cell) for cell in row))
    env.console().print(grid)


def validation(env: Env, outcome: Outcome) -> None:
    result = outcome.result
    env.console().print(f"{result['race_file']}: {result['race']}: {result['count']} stage(s) valid", markup=False)


def stages(env: Env, outcome: Outcome) -> None:
    rows = [[s["name"], s["date"], f"{s['start']} - {s['finish']}", s["kind"], s["tech_zone"],
             ", ".join(s["trucks"]), s["state"]] for s in outcome.result["stages"]]
    table(env, "Stages", ["stage", "date", "route", "kind", "tech zone", "trucks", "state"], rows)


def inventory(env: Env, outcome: Outcome) -> None:
    env.stdout.write(visible(outcome.result["yaml"]))  # ASCII already (ansible_data escapes): a second guard
