"""Live progress of a run (steps, and per node for the truck tier) and the truck tier's summary.

A live table on a terminal, one line per change or failure otherwise, nothing with --json
(stdout then holds exactly the JSON document).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.lifecycle.orchestrator import Progress
    from truckctl.truck.events import HostEvent
    from truckctl.truck.tier import UpCallbacks


class NodeProgress:
    """Per-node progress: a live table on a terminal, one line per change or failure otherwise,
    nothing with --json (stdout then holds exactly the JSON document)."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None

    def callbacks(self) -> UpCallbacks:
        from truckctl.truck.tier import UpCallbacks

        if self.env.json:
            return UpCallbacks()
        return UpCallbacks(on_phase=self.phase, on_hosts=self.hosts, on_host_event=self.event)

    def progress(self) -> Progress:
        """The lifecycle's progress hooks: each step announced, the truck tier per node."""
        from truckctl.lifecycle.orchestrator import Progress

        if self.env.json:
            return Progress()
        return Progress(on_step=self.phase, truck=self.callbacks())

    def __enter__(self) -> NodeProgress:
        return self

    def __exit__(self, *_: object) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def phase(self, tier: str, message: str) -> None:
        self._console().print(f"{tier}: {message}", markup=False, highlight=False)

    def hosts(self, names: list[str]) -> None:
        self.rows = {name: {"ok": 0, "changed": 0, "failed": 0, "task": "waiting"} for name in names}
        if self.env.rich:
            from rich.live import Live

            self.live = Live(self._table(), console=self._console(), refresh_per_second=8, transient=True)
            self.live.start()

    def event(self, event: HostEvent) -> None:
        row = self.rows.setdefault(event.host, {"ok": 0, "changed": 0, "failed": 0, "task": ""})
        row["task"] = event.task
        if event.status in ("ok", "changed"):
            row["ok"] += 1
        if event.status == "changed":
            row["changed"] += 1
        if event.status in ("failed", "unreachable"):
            row["failed"] += 1
            row["task"] = f"{event.status}: {event.task}"
        if self.live is not None:
            self.live.update(self._table())
        elif event.status in ("changed", "failed", "unreachable"):
            detail = f" ({event.message})" if event.message else ""
            self._console().print(f"{event.host}: {event.status}: {event.task}{detail}", markup=False,
                                  highlight=False, soft_wrap=True)

    def _table(self) -> Table:
        from rich.markup import escape
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("node", "ok", "changed", "failed", "task"):
            table.add_column(column)
        for name, row in self.rows.items():
            style = "red" if row["failed"] else ("yellow" if row["changed"] else "green")
            table.add_row(f"[{style}]{escape(name)}[/]", str(row["ok"]), str(row["changed"]), str(row["failed"]),
                          escape(row["task"]))
        return table

    def _console(self) -> Console:
        return self.env.console()


def truck_summary(env: Env, outcome: Outcome) -> None:
    """The recap: one row per node, then (check mode) what would change."""
    from rich.markup import escape
    from rich.table import Table

    truck = outcome.result.get("truck")
    if not truck:
        return
    console = env.console()
    table = Table(title=f"truck tier: {outcome.result['stage']} on {outcome.result['target']}"
                  + (" (check mode)" if truck["check"] else ""), box=None, pad_edge=False)
    for column in ("node", "state", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(column)
    for name, stats in sorted(truck["hosts"].items()):
        table.add_row(name, stats["state"], *(str(stats[k]) for k in ("ok", "changed", "failed", "unreachable",
                                                                        "skipped")))
    console.print(table)
    if truck["check"]:
        for change in truck["changes"]:
            console.print(f"would change: {escape(change['host'])}: {escape(change['task'])}", highlight=False)
            if change["diff"]:
                console.print(escape(change["diff"].rstrip()), highlight=False, soft_wrap=True)
    verb = "would change" if truck["check"] else "changed"
    where = f"artifacts: {escape(truck['artifacts_dir'])}" if truck["artifacts_dir"] else "no playbook run (fast path)"
    console.print(f"{truck['changed']} task(s) {verb} on {len(truck['hosts'])} node(s) in {truck['duration_s']} s; "
                  f"{where}", highlight=False)
