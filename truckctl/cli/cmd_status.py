"""`truckctl status STAGE [--target lab|aws] [--watch [--interval S]] [--json]`.

Exit codes: 0 all healthy, 1 something unhealthy (an incident: one per root cause, with the symptoms
it explains under it; or a symptom no incident explains: a node unreachable, a key service not
active, a telemetry or heartbeat stream stale or never seen at the cloud side), 2 usage (--watch with --json),
5 invalid configuration, 130 Ctrl-C (the normal end of --watch).

Only typer is imported at module level (`truckctl --help` stays fast).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from truckctl.cli.options import TargetOpt
from truckctl.target import TargetKind

if TYPE_CHECKING:
    from rich.console import Group

    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.lifecycle.status_model import StatusReport, StreamView
    from truckctl.ops.model import Incident
    from truckctl.project import Project
    from truckctl.remote import KeptConnections

StageArg = Annotated[str, typer.Argument(help="Stage name, e.g. stage-1.", show_default=False)]
WatchOpt = Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C (not with --json).")]
IntervalOpt = Annotated[float, typer.Option("--interval", min=1.0, help="Seconds between refreshes with --watch.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]


def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("status")
    def status(stage: StageArg, target: TargetOpt = TargetKind.lab, watch: WatchOpt = False,
               interval: IntervalOpt = 5.0, json_output: JsonOpt = False) -> None:
        """One view of a stage: nodes, services, telemetry and heartbeats, cloud tier, lock, runs, drift."""
        from truckctl.cli.dispatch import run
        from truckctl.errors import ExitCode, TruckctlError

        env = env_factory(json_output)
        if watch and json_output:
            def refuse() -> Outcome:
                raise TruckctlError.single("usage", "--watch refreshes forever and --json prints exactly one "
                                           "document: use one or the other", "--watch/--json", ExitCode.USAGE)

            raise typer.Exit(run(env, "status", stage, refuse))
        if watch:
            from truckctl.remote import KeptConnections

            with KeptConnections() as kept:  # one SSH master per node for every refresh, ended on the way out
                code = watch_loop(env, lambda: measure(project_factory(), stage, target, kept), interval)
            raise typer.Exit(code)
        shown: list[StatusReport] = []  # the report behind the envelope's result: the human view reads it

        def action() -> Outcome:
            from truckctl.remote import KeptConnections

            project = project_factory()
            # the nodes' connections outlast this status for the next one (half a minute, as Ansible's do)
            shown.append(measure(project, stage, target, KeptConnections.lasting_for(project.state_dir)))
            return outcome(shown[-1])

        def show(env_: Env, _outcome: Outcome) -> None:
            if shown:
                render(env_, shown[-1])

        raise typer.Exit(run(env, "status", stage, action, show))


def measure(project: Project, stage: str, target: TargetKind, kept: KeptConnections | None = None) -> StatusReport:
    from truckctl.lifecycle.status import status
    from truckctl.targets import for_kind

    return status(for_kind(target, project), stage, kept=kept)


def outcome(report: StatusReport) -> Outcome:
    """The envelope's side: the document and the exit code (1 when anything is unhealthy)."""
    from truckctl.cli.dispatch import Outcome
    from truckctl.errors import ExitCode

    return Outcome(report.to_json(), ExitCode.OK if report.healthy else ExitCode.ERROR)


def watch_loop(env: Env, action: Callable[[], StatusReport], interval: float) -> int:
    """Refresh in place with rich Live on a terminal, plain repeated blocks otherwise; Ctrl-C ends it (130)."""
    from truckctl.cli.output import write_problems
    from truckctl.errors import ExitCode, TruckctlError

    live = None
    try:
        while True:
            try:
                report = action()
            except TruckctlError as exc:  # e.g. invalid configuration: no point refreshing
                write_problems(env, exc.problems)
                return int(exc.exit_code)
            view = renderable(env, report, footer=f"refreshing every {interval:g} s; Ctrl-C to stop")
            if env.rich:
                if live is None:
                    from rich.live import Live

                    live = Live(view, console=env.console(), auto_refresh=False, transient=False)
                    live.start()
                live.update(view, refresh=True)
            else:
                env.console().print(view)
                env.console().print("")
            time.sleep(interval)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    finally:
        if live is not None:
            live.stop()


# ---- rendering -------------------------------------------------------------------------------

def render(env: Env, report: StatusReport) -> None:
    env.console().print(renderable(env, report))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _ago(view: StreamView, rich: bool) -> str:
    if view.state == "unknown":
        return "n/a"
    if view.state == "none":
        return "[red]never seen[/]" if rich else "never seen"
    text = f"{view.age_s:.0f} s ago"
    if view.state == "stale":
        return f"[bold red]STALE {text}[/]" if rich else f"STALE {text}"
    return text


def _services(services: Mapping[str, str], rich: bool) -> str:
    from rich.markup import escape

    if not services:
        return "-"
    down = [f"{escape(unit)} {escape(state)}" for unit, state in services.items() if state != "active"]
    if not down:
        return f"all {len(services)} active"
    text = ", ".join(down)
    return f"[red]{text}[/]" if rich else text


def renderable(env: Env, report: StatusReport, footer: str | None = None) -> Group:
    """The whole view as one rich renderable (printed once, or refreshed by Live)."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    from truckctl.cli.output import markup, text

    rich = env.rich
    health = report.health
    verdict = escape(report.verdict)
    if rich:
        verdict = f"[bold green]{verdict}[/]" if report.healthy else f"[bold red]{verdict}[/]"
    header = (f"{escape(health.stage)} on {escape(health.target)}: {verdict}  "
              f"(checked {_when(report.checked_at)} in {report.took_s:.1f} s; "
              f"stale after {health.stale_after_s:.0f} s)")

    nodes = Table(title="nodes", box=None, pad_edge=False, title_justify="left")
    for column in ("truck", "node", "role", "address", "ssh", "services", "heartbeat at cloud"):
        nodes.add_column(column)
    cloud_side = Table(title="telemetry at the cloud side", box=None, pad_edge=False, title_justify="left")
    for column in ("truck", "last seen", "messages", "state"):
        cloud_side.add_column(column)
    for truck in health.trucks:
        for node in truck.nodes:
            ssh = "ok" if node.reachable else (
                "not probed" if node.detail == "not probed" else f"unreachable: {escape(node.detail)}")
            if rich:
                ssh = f"[green]{ssh}[/]" if node.reachable else f"[red]{ssh}[/]"
            nodes.add_row(escape(truck.name), escape(node.name), escape(node.role), node.address, ssh,
                          _services(node.services, rich), _ago(node.heartbeat, rich))
        telemetry = truck.telemetry
        count = "-" if telemetry.count is None else str(telemetry.count)
        alarm = " (alarm raised)" if telemetry.alarm else ""
        cloud_side.add_row(escape(truck.name), escape(telemetry.last_seen or "-"), count,
                           _ago(telemetry, rich) + alarm)

    parts: list[Any] = [markup(header) if rich else text(markup(header).plain), nodes]
    if health.cloud.last_seen_note:
        parts.append(text(f"cloud side: {health.cloud.last_seen_note}"))
    else:
        parts.append(cloud_side)
    parts += [text(line) for line in _summary_lines(report)]
    explained = {i.summary() for i in health.incidents}
    if health.incidents:
        parts.append(text(f"incidents ({len(health.incidents)}):", style="bold red" if rich else ""))
        for line in incident_lines(health.incidents):
            parts.append(text(line, style="" if line.startswith(" ") or not rich else "red"))
    rest = [item for item in report.unhealthy if item not in explained]
    if rest:
        parts.append(text("unhealthy:", style="bold red" if rich else ""))
        parts += [text(f"  - {item}") for item in rest]
    recent = health.incidents_recent
    if recent:
        parts.append(text(f"recently resolved at the cloud side: {len(recent)} (newest: {recent[0].kind.value} "
                          f"{recent[0].truck}, resolved {_when(recent[0].resolved)})"))
    if footer:
        parts.append(text(footer, style="dim" if rich else ""))
    return Group(*parts)


def incident_lines(incidents: Iterable[Incident]) -> list[str]:
    """Each incident on one line (kind, truck, node or address, hop, since when), its evidence and the
    symptoms it explains indented under it."""
    from truckctl.ops.model import Kind

    lines = []
    for incident in incidents:
        where = incident.address if incident.kind is Kind.ADDRESS_CONFLICT else incident.node
        since = f", open since {_when(incident.opened)}" if incident.opened else ""
        source = " (seen by the cloud side)" if incident.source == "cloud" else ""
        lines.append(f"  {incident.kind.value} {incident.truck}" + (f" {where}" if where else "")
                     + f" at {incident.hop}: {incident.title}{since}{source}")
        lines += [f"    evidence: {line}" for line in incident.evidence]
        lines += [f"    explains: {symptom.text}" for symptom in incident.symptoms]
    return lines


def _summary_lines(report: StatusReport) -> list[str]:
    stage = report.health.stage
    cloud = report.health.cloud
    tier = cloud.tier
    state = f"cloud tier: {tier.state}"
    if tier.standin:
        state += f" (stand-in {tier.standin}" + (f", {cloud.alerts} alert(s) received)"
                                                  if cloud.alerts is not None else ")")
    lines = [state]
    if tier.outputs is not None:
        shown = (("endpoint", tier.outputs.endpoint), ("alert receiver", tier.outputs.alert_receiver),
                 ("telemetry stream", tier.outputs.telemetry_stream),
                 ("datalake bucket", tier.outputs.datalake_bucket), ("vpn endpoint", tier.outputs.vpn_endpoint))
        outputs = [f"{label} {value}" for label, value in shown if value]
        if outputs:
            lines.append("  " + "; ".join(outputs))
    if tier.state == "unknown" and tier.note:
        lines.append(f"  {tier.note}")
    lock = report.lock
    lines.append("lock: free" if lock is None else
                 f"lock: {'STALE ' if lock['stale'] else ''}held by {lock['description']}"
                 + (f" (clear it with `truckctl unlock {stage}`)" if lock["stale"] else ""))
    last = report.last_run
    lines.append("last run: none recorded" if last is None else
                 f"last run: {last['command']} on {last['target'] or '-'} at {_when(last['started'])}: "
                 f"{last['status']} (exit {last['exit_code']}"
                 + (f", failed step {last['failed_step']}" if last.get("failed_step") else "")
                 + f"; truckctl runs show {last['run_id']})")
    drift = report.drift
    if drift is None:
        lines.append(f"drift: never measured (truckctl drift {stage})")
    else:
        found = {True: "drift found", False: "no drift", None: "result unknown"}[drift.drift]
        lines.append(f"drift: last measured {_when(drift.started)}: {found} ({drift.status}, "
                     f"run {drift.run_id})")
    return lines
