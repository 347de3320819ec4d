"""`truckctl portal [STAGE] [--listen ADDR:PORT] [--tls-cert F --tls-key F | --insecure-http] [--json]`.

Serves the read-only web view of a stage (DESIGN section 13) until Ctrl-C (exit 130) or SIGTERM (0).
STAGE defaults to the stage dated today. Loopback by default; any other address needs the token in
TRUCKCTL_PORTAL_TOKEN and TLS, or --insecure-http (warned about loudly). With --json, one document is
printed once the settings are checked: where the portal serves (or why it does not).

Only typer is imported at module level; the web stack (FastAPI, uvicorn) is imported when serving.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from truckctl.cli.options import TargetOpt
from truckctl.target import TargetKind

if TYPE_CHECKING:
    import socket

    from truckctl.cli.output import Env
    from truckctl.portal.settings import PortalSettings
    from truckctl.project import Project

StageArg = Annotated[str | None, typer.Argument(help="Stage name, e.g. stage-1 (default: the stage dated today).",
                                                show_default=False)]
ListenOpt = Annotated[str, typer.Option("--listen", metavar="ADDR:PORT",
                                        help="Where to listen. Not loopback: needs TRUCKCTL_PORTAL_TOKEN and TLS.")]
CertOpt = Annotated[Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM) to serve HTTPS.")]
KeyOpt = Annotated[Path | None, typer.Option("--tls-key", help="Its private key (PEM).")]
InsecureOpt = Annotated[bool, typer.Option("--insecure-http",
                                           help="Serve plain HTTP off loopback (the token crosses in clear).")]
IntervalOpt = Annotated[float, typer.Option("--interval", min=1.0, max=60.0, help="Seconds between status polls.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (where it serves), then serve.")]

INSECURE_WARNING = ("WARNING: serving plain HTTP on {host}, which is not loopback: the portal token and every page "
                    "cross the network IN CLEAR; anyone on that network can read them. Use --tls-cert/--tls-key.")


def register(app: typer.Typer, env_factory: Callable[[bool], Env], project_factory: Callable[[], Project]) -> None:
    @app.command("portal")
    def portal(stage: StageArg = None, listen: ListenOpt = "127.0.0.1:8765", target: TargetOpt = TargetKind.lab,
               tls_cert: CertOpt = None, tls_key: KeyOpt = None, insecure_http: InsecureOpt = False,
               interval: IntervalOpt = 2.0, json_output: JsonOpt = False) -> None:
        """Serve the live web view of a stage (read-only): topology, problems, plots, runs, drift, lock."""
        from truckctl.cli.dispatch import Outcome, run

        env = env_factory(json_output)
        chosen: dict[str, PortalSettings] = {}
        bound: list[socket.socket] = []

        def check() -> Outcome:
            from truckctl.config.loader import check_stage_name, load_stage
            from truckctl.errors import ExitCode, TruckctlError
            from truckctl.portal.server import bind
            from truckctl.portal.settings import settings
            from truckctl.portal.view import stage_of_the_day

            project = project_factory()
            name = stage
            if name is None:
                name = stage_of_the_day(project)
                if name is None:
                    raise TruckctlError.single("usage", "no stage of the race is dated today: name one, e.g. "
                                               "`truckctl portal stage-1`", "STAGE", ExitCode.USAGE)
            check_stage_name(name)
            chosen["s"] = settings(name, target.value, listen, tls_cert, tls_key, insecure_http, interval)
            warnings = []
            try:
                load_stage(project, name)
            except TruckctlError as exc:  # shown on the page too, which keeps polling (the file may be fixed)
                warnings = [p.as_dict() for p in exc.problems]
            s = chosen["s"]
            bound.append(bind(s))
            return Outcome({"url": s.url, "stage": name, "target": target.value, "read_only": True,
                            "credential": s.credential is not None, "tls": s.tls, "interval_s": s.interval_s,
                            "warnings": warnings})

        def say(env: Env, outcome: Outcome) -> None:
            result = outcome.result
            for warning in result["warnings"]:
                env.err_console().print(f"warning: {warning['location']}: {warning['message']} (the page says so "
                                        "and keeps polling)", markup=False)
            env.console().print(f"portal: {result['stage']} on {result['target']} at {result['url']} "
                                f"(read-only{', token required' if result['credential'] else ''}; Ctrl-C to stop)",
                                markup=False)

        code = run(env, "portal", stage, check, say)
        if code != 0:
            raise typer.Exit(code)
        from truckctl.netaddr import is_loopback

        settings_ = chosen["s"]
        if settings_.insecure_http and not is_loopback(settings_.host):
            env.err_console().print(INSECURE_WARNING.format(host=settings_.host),
                                    style="bold red" if env.rich else None, markup=False)
        raise typer.Exit(_serve(project_factory(), settings_, bound[0]))


def _serve(project: Project, settings: PortalSettings, sock: socket.socket) -> int:
    from truckctl.errors import ExitCode
    from truckctl.portal.server import serve

    try:
        serve(project, settings, sock)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.OK)
