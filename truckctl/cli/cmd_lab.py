"""`truckctl lab up|down|status`: the lab of simulated trucks (DESIGN section 6).

Only typer is imported at module level so `truckctl --help` stays fast; the lab itself loads
inside each command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env
    from truckctl.project import Project

app = typer.Typer(name="lab", help="Build, inspect and remove the lab: a stage's trucks as local nodes (root).",
                  no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]


def _progress(env: Env) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not env.json:
            env.err_console().print(f"lab: {message}", markup=False, highlight=False)

    return say


def register(parent: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("up")
    def lab_up(
        stage: Annotated[str | None, typer.Argument(
            help="Stage whose trucks to build (default: the stage the lab is on, else stage-1).")] = None,
        json_output: JsonOpt = False,
    ) -> None:
        """Bring up every node of the stage's trucks and the cloud stand-in (reuses a healthy lab).

        A lab of another stage is moved to this one: absent trucks switched off, moved trucks re-addressed,
        returning ones switched on; the stand-in keeps what it received. `lab down` is for the end.
        """
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.lab import api

        env = env_factory(json_output)
        # A bare `lab up` never moves the lab; a given name, even an empty one, is checked like any other.
        wanted = stage if stage is not None else (result_stage(project_factory) or "stage-1")
        raise typer.Exit(run(env, "lab up", wanted,
                             lambda: Outcome(api.up(project_factory(), wanted, _progress(env))), _render_up))

    @app.command("down")
    def lab_down(json_output: JsonOpt = False) -> None:
        """Remove everything the lab made (keeps the rootfs and apt caches for the next run)."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.lab import api

        env = env_factory(json_output)
        raise typer.Exit(run(env, "lab down", None,
                             lambda: Outcome(api.down(project_factory(), _progress(env))), _render_down))

    @app.command("status")
    def lab_status(json_output: JsonOpt = False) -> None:
        """Each node with its truck, address, systemd state and whether SSH answers; and the stand-in."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.errors import ExitCode, Problem
        from truckctl.lab import api

        def action() -> Outcome:
            result = api.status(project_factory())
            if not result["up"] or result["healthy"]:
                return Outcome(result)
            bad = [n["name"] for n in [*result["nodes"], result["standin"]]
                   if not (n["supervisor"] and n["systemd_running"] and n["ssh"])]
            what = f"failing (supervisor, systemd or SSH): {', '.join(bad)}" if bad else "its stand-in is not serving"
            hint = "" if result["complete"] else " (half-built: `truckctl lab down`, then `lab up`)"
            return Outcome(result, ExitCode.ERROR, [Problem("lab-unhealthy", f"the lab is unhealthy, {what}{hint}")])

        raise typer.Exit(run(env_factory(json_output), "lab status", result_stage(project_factory), action,
                             _render_status))

    operator_app = typer.Typer(name="operator", no_args_is_help=True,
                               help="The lab's outside operator: a second machine that reaches the trucks only "
                               "through the management path (root).")

    @operator_app.command("add")
    def operator_add(
        name: Annotated[str, typer.Argument(help="Operator name (1-15 of a-z, 0-9, -), e.g. ci.")],
        state_dir: Annotated[Path | None, typer.Option(
            "--state-dir", help="The operator's state directory (default: .truckctl-operator-NAME beside the "
            "lab's).")] = None,
        json_output: JsonOpt = False,
    ) -> None:
        """Make an outside operator: its own network namespace, reaching the trucks only through the cloud
        stand-in as jump host, and its own state directory holding only what it is given (ops key,
        pinned host keys, the stand-in's certificates). Run its commands with the printed `ip netns exec`."""
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.lab import operator

        env = env_factory(json_output)
        raise typer.Exit(run(env, "lab operator add", None,
                             lambda: Outcome(operator.add(project_factory(), name, state_dir)), _render_operator))

    app.add_typer(operator_app, name="operator")

    @app.command("fault")
    def lab_fault(
        kind: Annotated[str, typer.Argument(help="A drill (cable, cloud-block, revoke-cert, broker-stop, bridge-stop, "
                                                 "feed-silence, node-off, node-cut, heartbeat-stop, clock-skew, "
                                                 "impostor), or `clear` or `list`.")],
        target: Annotated[str | None,
                          typer.Argument(help="Its truck, node or address (clear: the drill's kind).")] = None,
        clear_target: Annotated[str | None, typer.Argument(help="clear only: the drill's target.")] = None,
        json_output: JsonOpt = False,
    ) -> None:
        """Start a race-day drill for real on the lab, clear drills, or list the active ones.

        `lab fault cable truck-a`, `lab fault clear` (all), `lab fault clear cable truck-a`, `lab fault list`.
        """
        from truckctl.cli.dispatch import Outcome, run
        from truckctl.errors import ExitCode, TruckctlError
        from truckctl.lab import faults

        def action() -> Outcome:
            if kind == "clear":
                result = faults.clear(project_factory(), target, clear_target)
            elif clear_target is not None:
                raise TruckctlError.single("usage", f"`lab fault {kind}` takes one target", exit_code=ExitCode.USAGE)
            elif kind == "list":
                if target is not None:
                    raise TruckctlError.single("usage", "`lab fault list` takes no target", exit_code=ExitCode.USAGE)
                result = faults.list_drills(project_factory())
            else:
                result = faults.start(project_factory(), kind, target)
            return Outcome(result.to_dict())

        raise typer.Exit(run(env_factory(json_output), f"lab fault {kind}", result_stage(project_factory), action,
                             _render_fault))

    parent.add_typer(app, name="lab")


def _render_operator(env: Env, outcome: Outcome) -> None:
    result = outcome.result
    console = env.console()
    console.print(f"operator {result['operator']}: namespace {result['netns']} ({result['operator_address']}), "
                  f"jump host {result['jump_host']}, state directory {result['state_dir']}", markup=False)
    console.print(f"run as this operator: {result['run_as']}", markup=False)


def result_stage(project_factory: Callable[[], Project]) -> str | None:
    """The stage of the running lab, for the envelope's `stage` field (None when no lab is up)."""
    from truckctl.errors import TruckctlError
    from truckctl.lab import state

    try:
        current = state.load(project_factory().state_dir)
    except TruckctlError:
        return None
    return current.stage if current else None


def _render_up(env: Env, outcome: Outcome) -> None:
    from truckctl.cli.render import table

    r = outcome.result
    how = "reused (already up and healthy)" if r["reused"] else f"up in {r['seconds']}s"
    moved = r.get("moved")
    if moved:
        how = f"moved from {moved['from_stage']} in {moved['seconds']}s"
        for label, key in (("switched off (not in today's tech zone)", "stop"), ("switched on again", "start"),
                           ("built", "build"), ("re-addressed", "readdress")):
            if moved[key]:
                env.console().print(f"{label}: {', '.join(moved[key])}", markup=False)
    rows = [[n["truck"] or "-", n["name"], n["address"], n["role"], n["uplink_address"] or ""] for n in r["nodes"]]
    table(env, f"lab {r['stage']}: {how}", ["truck", "node", "address", "role", "uplink"], rows)
    ssh = r["ssh"]
    env.console().print(f"ssh: {ssh['user']} with {ssh['private_key']}, known_hosts {ssh['known_hosts']}", markup=False)


def _render_down(env: Env, outcome: Outcome) -> None:
    r = outcome.result
    if not r["was_up"]:
        env.console().print("no lab was up: nothing to remove", markup=False)
        return
    what = ", ".join(f"{count} {kind}" for kind, count in r["removed"].items())
    env.console().print(f"lab of {r['stage']} removed in {r['seconds']}s ({what}); caches kept", markup=False)


def _render_status(env: Env, outcome: Outcome) -> None:
    from truckctl.cli.render import table

    r = outcome.result
    if not r["up"]:
        env.console().print("no lab is up", markup=False)
        return
    rows = [[n["truck"] or "-", n["name"], n["address"], n["role"], "alive" if n["supervisor"] else "DEAD",
             n["systemd"], "yes" if n["ssh"] else "NO", n.get("uplink", "")] for n in [*r["nodes"], r["standin"]]]
    rows += [[n["truck"], n["name"], n["address"], n["role"], "parked", "-", "-", ""] for n in r.get("parked", [])]
    state = "healthy" if r["healthy"] else "NOT healthy"
    table(env, f"lab on {r['stage']}: {state}",
          ["truck", "node", "address", "role", "supervisor", "systemd", "ssh", "uplink"], rows)
    days = r["standin"].get("stages")
    if days:
        table(env, "received by the stand-in, per stage", ["stage", "truck", "telemetry", "heartbeats"],
              [[stage, truck, str(c["telemetry"]), str(c["heartbeat"])]
               for stage, trucks in days.items() for truck, c in trucks.items()])


def _render_fault(env: Env, outcome: Outcome) -> None:
    from truckctl.cli.render import table

    r = outcome.result
    for drill in r["changed"]:
        env.console().print(f"{r['action']} {drill['kind']} {drill['target']}: {drill['effect']}", markup=False)
    if r["note"]:
        env.console().print(r["note"], markup=False)
    rows = [[d["kind"], d["target"], d["incident"], d["effect"]] for d in r["active"]]
    if rows:
        table(env, "active drills", ["drill", "target", "incident expected", "what it did"], rows)
    else:
        env.console().print("no drill is active", markup=False)
