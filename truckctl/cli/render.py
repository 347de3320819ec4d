"""Human renderings of command results (the JSON envelope needs none)."""

from __future__ import annotations

from truckctl.cli.dispatch import Outcome
from truckctl.cli.output import Env


def _table(env: Env, title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title, box=None, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    env.console().print(table)


def validation(env: Env, outcome: Outcome) -> None:
    result = outcome.result
    env.console().print(f"{result['race_file']}: {result['race']}: {result['count']} stage(s) valid")


def stages(env: Env, outcome: Outcome) -> None:
    rows = [[s["name"], s["date"], f"{s['start']} - {s['finish']}", s["kind"], s["tech_zone"],
             ", ".join(s["trucks"]), s["state"]] for s in outcome.result["stages"]]
    _table(env, "Stages", ["stage", "date", "route", "kind", "tech zone", "trucks", "state"], rows)


def inventory(env: Env, outcome: Outcome) -> None:
    env.stdout.write(outcome.result["yaml"])
