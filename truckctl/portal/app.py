"""The portal's web app (FastAPI): the page, its assets, the JSON API and the live event stream.

Imported only by `truckctl portal` (the web stack stays out of `truckctl --help`). Read-only: every
route is a GET; nothing here changes a stage (actions would need their own flag and a POST with the
credential: there are none yet).

The API gives the same documents as the CLI's `--json`, in the same envelope:
`/api/status` = `truckctl status STAGE --json` (from the latest poll, not a new probe per request),
`/api/runs` = `truckctl runs --json`, `/api/runs/{run_id}` = `truckctl runs show RUN_ID --json`.
`/api/incidents` the open and recent incidents (issue 14), also in `/api/status`;
`/api/snapshot` is everything the page shows; `/api/history` the plots' samples; `/api/events` the
live stream (server-sent events, one `snapshot` event per poll). Documented at /openapi.json.
There is no /docs page: FastAPI's loads Swagger UI from a CDN, and the portal serves nothing it
does not hold itself (the tech zone is offline).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from truckctl import __version__
from truckctl.envelope import envelope
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.portal.guard import Guard
from truckctl.portal.hub import Hub
from truckctl.portal.settings import PortalSettings
from truckctl.portal.view import History
from truckctl.project import Project

STATIC = Path(__file__).resolve().parent / "static"
FIRST_POLL_WAIT_S = 15.0
KEEPALIVE_S = 15.0


def _envelope(command: str, stage: str | None, code: ExitCode, result: JsonObject,
              problems: list[Problem]) -> JsonObject:
    return envelope(command, stage, code, result, problems)


def _error_response(exc: TruckctlError, command: str, stage: str | None) -> JSONResponse:
    status = 404 if any(p.code.startswith("unknown") for p in exc.problems) else 400
    return JSONResponse(_envelope(command, stage, exc.exit_code, dict(exc.result), exc.problems), status_code=status)


def create_app(project: Project, settings: PortalSettings, hub: Hub, history: History) -> Any:
    """The ASGI app: FastAPI behind the Guard (size limits, credential, security headers)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        poller = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    api = FastAPI(title="truckctl portal", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Read-only view of a stage: status, runs, drift, lock and the cloud tier, live. "
                              "Responses of /api/status and /api/runs are the CLI's --json envelopes.")

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail if exc.status_code != 500 else "internal error"},
                            status_code=exc.status_code)

    @api.exception_handler(Exception)
    async def internal_error(_request: Request, _exc: Exception) -> JSONResponse:  # never a traceback
        return JSONResponse({"detail": "internal error (see the portal's log)"}, status_code=500)

    async def latest() -> JsonObject | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.ready().wait(), FIRST_POLL_WAIT_S)
        return hub.latest

    def not_yet() -> JSONResponse:
        return JSONResponse({"detail": "the first measurement is still running; try again in a few seconds"},
                            status_code=503, headers={"retry-after": "2"})

    @api.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @api.get("/runs/{run_id}", include_in_schema=False)
    async def run_page(run_id: str) -> FileResponse:
        from truckctl.lifecycle.journal import RUN_ID

        if not RUN_ID.fullmatch(run_id):
            raise StarletteHTTPException(404, "no such run")
        return FileResponse(STATIC / "run.html", media_type="text/html")

    @api.get("/api/snapshot", summary="Everything the page shows, from the latest poll")
    async def snapshot() -> Any:
        document = await latest()
        return not_yet() if document is None else document

    @api.get("/api/status", summary="The stage's status: the envelope of `truckctl status STAGE --json`")
    async def status() -> Any:
        document = await latest()
        if document is None:
            return not_yet()
        problems = [Problem(e["code"], e["message"], e["location"]) for e in document["errors"]]
        return _envelope("status", settings.stage, ExitCode(document["exit_code"]), document["status"] or {},
                         problems)

    @api.get("/api/incidents", summary="Race-day incidents: open (one per root cause, with evidence and symptoms) "
                                        "and recently resolved, from the latest poll")
    async def incidents() -> Any:
        document = await latest()
        return not_yet() if document is None else document["incidents"]

    @api.get("/api/runs", summary="The run journal, newest first: the envelope of `truckctl runs --json`")
    async def runs(stage: Annotated[str | None, Query(max_length=40, description="Only this stage")] = None) -> Any:
        from truckctl.config.loader import check_stage_name
        from truckctl.lifecycle.history import all_runs
        from truckctl.targets import for_kind

        try:
            if stage is not None:
                check_stage_name(stage)
            listed = await asyncio.to_thread(all_runs, for_kind(settings.target, project), stage)
        except TruckctlError as exc:
            return _error_response(exc, "runs", stage)
        return _envelope("runs", stage, ExitCode.OK, listed.to_json(), [])

    @api.get("/api/runs/{run_id}", summary="One run: the envelope of `truckctl runs show RUN_ID --json`")
    async def run_detail(run_id: Annotated[str, PathParam(max_length=80)]) -> Any:
        from truckctl.lifecycle.journal import show_run

        try:
            shown = await asyncio.to_thread(show_run, project, run_id)
        except TruckctlError as exc:
            return _error_response(exc, "runs show", None)
        except (OSError, ValueError):
            return JSONResponse(_envelope("runs show", None, ExitCode.ERROR, {},
                                          [Problem("unreadable-run", "this run's record cannot be read")]),
                                status_code=500)
        return _envelope("runs show", None, ExitCode.OK, shown, [])

    @api.get("/api/history", summary="Telemetry and heartbeat rates per truck over the last hour (the plots)")
    async def rates() -> JsonObject:
        from truckctl.portal.view import HISTORY_S

        return {"interval_s": settings.interval_s, "window_s": HISTORY_S, "samples": history.as_list()}

    @api.get("/api/events", summary="Live: one server-sent `snapshot` event per poll (text/event-stream)",
             response_class=StreamingResponse)
    async def events() -> Response:
        queue = hub.subscribe()
        if queue is None:
            return JSONResponse({"detail": "too many viewers at once"}, status_code=503)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 3000\n\n"
                while True:
                    try:
                        yield await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    return Guard(api, settings.credential, secure_cookie=settings.tls, hsts=settings.tls,
                 listen=(settings.host, settings.port))
