"""Build the portal for a project and serve it with uvicorn (imported only by `truckctl portal`).

The server's own limits bound what a request may cost before the app sees it: h11 (pure Python,
whose limits are the ones set here) with headers capped at MAX_HEADER_BYTES, at most
MAX_CONCURRENCY connections at once (beyond: 503), short keep-alive, no server banner.
"""

from __future__ import annotations

import functools
import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from truckctl.errors import TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.portal.hub import MAX_VIEWERS, Hub
from truckctl.portal.settings import PortalSettings
from truckctl.portal.view import History, StatusSource, snapshot
from truckctl.project import Project
from truckctl.remote import KeptConnections

MAX_HEADER_BYTES = 16 * 1024
MAX_CONCURRENCY = MAX_VIEWERS + 50  # the event streams plus room for page loads and API calls

log = logging.getLogger("truckctl.portal")


def build(project: Project, settings: PortalSettings, measure: StatusSource | None = None,
          kept: KeptConnections | None = None) -> tuple[Any, Hub]:
    """The ASGI app and its hub; `measure` replaces the real status probe (tests: a fake prober); `kept`:
    the nodes' SSH masters its polls ride on (serve's, ended when it stops)."""
    from truckctl.lifecycle.status import status
    from truckctl.portal.app import create_app
    from truckctl.targets import for_kind

    measure = measure or functools.partial(status, for_kind(settings.target, project), settings.stage, kept=kept)
    history = History(settings.interval_s)
    poll: Callable[[], JsonObject] = functools.partial(
        snapshot, project, settings.stage, settings.target, measure, history, log.warning)
    hub = Hub(poll, settings.interval_s)
    return create_app(project, settings, hub, history), hub


def uvicorn_config(app: Any, settings: PortalSettings) -> Any:
    import uvicorn

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, http="h11", ws="none", lifespan="on",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES, limit_concurrency=MAX_CONCURRENCY,
        timeout_keep_alive=5, server_header=False, date_header=True, proxy_headers=False, access_log=False,
        log_level="warning", log_config=None,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )


def bind(settings: PortalSettings) -> socket.socket:
    """The listening socket, bound before anything is served: a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise TruckctlError.single("listen", f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
                                   "--listen") from None
    sock.set_inheritable(True)
    return sock


def serve(project: Project, settings: PortalSettings, sock: socket.socket) -> None:
    """Serve on `sock` until interrupted. uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises
    the signal again for the handler it found: SIGINT becomes KeyboardInterrupt (the command's 130),
    SIGTERM (a service manager's normal stop) ends here quietly (exit 0)."""
    import uvicorn

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="portal: %(message)s")
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    with KeptConnections() as kept:  # every poll probes the nodes over one SSH master each
        app, _hub = build(project, settings, kept=kept)
        uvicorn.Server(uvicorn_config(app, settings)).run(sockets=[sock])
