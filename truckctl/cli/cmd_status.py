"""`truckctl status STAGE [--target lab|aws] [--watch [--interval S]] [--json]`.

Exit codes: 0 all healthy, 1 something unhealthy (an incident: one per root cause, with the symptoms
it explains under it; or a symptom no incident explains: a node unreachable, a key service not
active, a telemetry or heartbeat stream stale or never seen at the cloud side), 2 usage (--watch with --json),
5 invalid configuration, 130 Ctrl-C (the normal end of --watch).

Only typer is imported at module level (`truckctl --help` stays fast).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from truckctl.cli.options import TargetOpt
from truckctl.target import TargetKind

if TYPE_CHECKING:
    from rich.console import Group

    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.project import Project

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
            raise typer.Exit(watch_loop(env, lambda: measure(project_factory(), stage, target), interval))
        raise typer.Exit(run(env, "status", stage, lambda: measure(project_factory(), stage, target), render))


def measure(project: Project, stage: str, target: TargetKind) -> Outcome:
    from truckctl.cli.dispatch import Outcome
    from truckctl.errors import ExitCode
    from truckctl.lifecycle.status import status
    from truckctl.targets import for_kind

    document = status(for_kind(target, project), stage)
    return Outcome(document, ExitCode.OK if document["healthy"] else ExitCode.ERROR)


def watch_loop(env: Env, action: Callable[[], Outcome], interval: float) -> int:
    """Refresh in place with rich Live on a terminal, plain repeated blocks otherwise; Ctrl-C ends it (130)."""
    from truckctl.cli.output import write_problems
    from truckctl.errors import ExitCode, TruckctlError

    live = None
    try:
        while True:
            try:
                outcome = action()
            except TruckctlError as exc:  # e.g. invalid configuration: no point refreshing
                write_problems(env, exc.problems)
                return int(exc.exit_code)
            view = renderable(env, outcome.result, footer=f"refreshing every {interval:g} s; Ctrl-C to stop")
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

def render(env: Env, outcome: Outcome) -> None:
    env.console().print(renderable(env, outcome.result))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _ago(view: dict[str, Any], rich: bool) -> str:
    state = view["state"]
    if state == "unknown":
        return "n/a"
    if state == "none":
        return "[red]never seen[/]" if rich else "never seen"
    text = f"{view['age_s']:.0f} s ago"
    if state == "stale":
        return f"[bold red]STALE {text}[/]" if rich else f"STALE {text}"
    return text


def _services(services: dict[str, str], rich: bool) -> str:
    from rich.markup import escape

    if not services:
        return "-"
    down = [f"{escape(unit)} {escape(state)}" for unit, state in services.items() if state != "active"]
    if not down:
        return f"all {len(services)} active"
    text = ", ".join(down)
    return f"[red]{text}[/]" if rich else text


def renderable(env: Env, result: dict[str, Any], footer: str | None = None) -> Group:
    """The whole view as one rich renderable (printed once, or refreshed by Live)."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    from truckctl.cli.output import markup, text

    rich = env.rich
    verdict = escape(result.get("verdict") or ("HEALTHY" if result["healthy"] else "UNHEALTHY"))
    if rich:
        verdict = f"[bold green]{verdict}[/]" if result["healthy"] else f"[bold red]{verdict}[/]"
    header = (f"{escape(result['stage'])} on {escape(result['target'])}: {verdict}  "
              f"(checked {_when(result.get('checked_at'))} in {result.get('took_s', 0):.1f} s; "
              f"stale after {result['stale_after_s']:.0f} s)")

    nodes = Table(title="nodes", box=None, pad_edge=False, title_justify="left")
    for column in ("truck", "node", "role", "address", "ssh", "services", "heartbeat at cloud"):
        nodes.add_column(column)
    cloud_side = Table(title="telemetry at the cloud side", box=None, pad_edge=False, title_justify="left")
    for column in ("truck", "last seen", "messages", "state"):
        cloud_side.add_column(column)
    for truck in result["trucks"]:
        for node in truck["nodes"]:
            ssh = "ok" if node["reachable"] else (
                "not probed" if node["detail"] == "not probed" else f"unreachable: {escape(node['detail'])}")
            if rich:
                ssh = f"[green]{ssh}[/]" if node["reachable"] else f"[red]{ssh}[/]"
            nodes.add_row(escape(truck["name"]), escape(node["name"]), escape(node["role"]), node["address"], ssh,
                          _services(node["services"], rich), _ago(node["heartbeat"], rich))
        telemetry = truck["telemetry"]
        count = "-" if telemetry["count"] is None else str(telemetry["count"])
        alarm = " (alarm raised)" if telemetry.get("alarm") else ""
        cloud_side.add_row(escape(truck["name"]), escape(telemetry["last_seen"] or "-"), count,
                           _ago(telemetry, rich) + alarm)

    parts: list[Any] = [markup(header) if rich else text(markup(header).plain), nodes]
    cloud = result["cloud"]
    if cloud.get("last_seen_note"):
        parts.append(text(f"cloud side: {cloud['last_seen_note']}"))
    else:
        parts.append(cloud_side)
    parts += [text(line) for line in _summary_lines(result)]
    incidents = result.get("incidents") or []
    explained = {i["summary"] for i in incidents}
    if incidents:
        parts.append(text(f"incidents ({len(incidents)}):", style="bold red" if rich else ""))
        for line in incident_lines(incidents):
            parts.append(text(line, style="" if line.startswith(" ") or not rich else "red"))
    rest = [item for item in result["unhealthy"] if item not in explained]
    if rest:
        parts.append(text("unhealthy:", style="bold red" if rich else ""))
        parts += [text(f"  - {item}") for item in rest]
    recent = result.get("incidents_recent") or []
    if recent:
        parts.append(text(f"recently resolved at the cloud side: {len(recent)} (newest: {recent[0]['kind']} "
                          f"{recent[0]['truck']}, resolved {_when(recent[0].get('resolved'))})"))
    if footer:
        parts.append(text(footer, style="dim" if rich else ""))
    return Group(*parts)


def incident_lines(incidents: list[dict[str, Any]]) -> list[str]:
    """Each incident on one line (kind, truck, node or address, hop, since when), its evidence and the
    symptoms it explains indented under it."""
    lines = []
    for incident in incidents:
        where = incident.get("address") if incident["kind"] == "address-conflict" else incident.get("node")
        since = f", open since {_when(incident['opened'])}" if incident.get("opened") else ""
        source = " (seen by the cloud side)" if incident.get("source") == "cloud" else ""
        lines.append(f"  {incident['kind']} {incident['truck']}" + (f" {where}" if where else "")
                     + f" at {incident['hop']}: {incident['title']}{since}{source}")
        lines += [f"    evidence: {line}" for line in incident["evidence"]]
        lines += [f"    explains: {symptom['text']}" for symptom in incident["symptoms"]]
    return lines


def _summary_lines(result: dict[str, Any]) -> list[str]:
    cloud = result["cloud"]
    state = f"cloud tier: {cloud.get('state', 'unknown')}"
    if cloud.get("standin"):
        state += f" (stand-in {cloud['standin']}" + (f", {cloud['alerts']} alert(s) received)"
                                                      if cloud.get("alerts") is not None else ")")
    lines = [state]
    outputs = [f"{key.replace('_', ' ')} {cloud[key]}" for key in
               ("endpoint", "alert_receiver", "telemetry_stream", "datalake_bucket", "vpn_endpoint") if cloud.get(key)]
    if outputs:
        lines.append("  " + "; ".join(outputs))
    if cloud.get("state") == "unknown" and cloud.get("note"):
        lines.append(f"  {cloud['note']}")
    lock = result.get("lock")
    lines.append("lock: free" if lock is None else
                 f"lock: {'STALE ' if lock['stale'] else ''}held by {lock['description']}"
                 + (f" (clear it with `truckctl unlock {result['stage']}`)" if lock["stale"] else ""))
    last = result.get("last_run")
    lines.append("last run: none recorded" if last is None else
                 f"last run: {last['command']} on {last['target'] or '-'} at {_when(last['started'])}: "
                 f"{last['status']} (exit {last['exit_code']}"
                 + (f", failed step {last['failed_step']}" if last.get("failed_step") else "")
                 + f"; truckctl runs show {last['run_id']})")
    drift = result.get("drift")
    if drift is None:
        lines.append(f"drift: never measured (truckctl drift {result['stage']})")
    else:
        found = {True: "drift found", False: "no drift", None: "result unknown"}[drift["drift"]]
        lines.append(f"drift: last measured {_when(drift['started'])}: {found} ({drift['status']}, "
                     f"run {drift['run_id']})")
    return lines
