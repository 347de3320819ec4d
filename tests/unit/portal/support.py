"""What the portal's tests share: the example race, a fake lab behind the real status function, the
real app under TestClient or uvicorn (import it from here; conftest.py holds only fixtures).

`FakeLab.measure` is `lifecycle.status.status` itself, given a prober and a cloud reader that answer
from this object (so the portal shows exactly what `truckctl status` would assemble), with SSH access
faked. `portal()` builds the real app (server.build) and drives it with FastAPI's TestClient.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers import FakeLabTarget, make_cloud
from truckctl.config.loader import load_stage
from truckctl.lifecycle import status as st
from truckctl.lifecycle.status_model import StatusReport
from truckctl.portal import server
from truckctl.portal.settings import PortalSettings, settings
from truckctl.project import Project
from truckctl.target import CloudTier, PublicOutputs

NODES = ["truck-a-gw", "truck-a-hv1", "truck-a-hv2", "truck-b-gw", "truck-b-hv1", "truck-b-hv2"]
TOKEN = "portal-token-0123456789abcdef"


@dataclass
class FakeLab:
    """What the nodes and the stand-in answer; `pulled` trucks have gone silent at the cloud side."""

    project: Project
    pulled: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {"truck-a": 0, "truck-b": 0})
    standin_down: bool = False
    measures: int = 0

    def seen(self) -> dict[str, Any]:
        def view(truck: str, base: int) -> dict[str, Any]:
            age = 45.0 if truck in self.pulled else 1.0
            return {"last_seen": "2027-05-08T10:00:00Z", "age_s": age, "count": base, "alarm": age > 20}

        trucks = {}
        for truck in ("truck-a", "truck-b"):
            if truck not in self.pulled:
                self.counts[truck] += 10
            trucks[truck] = {"telemetry": view(truck, self.counts[truck]),
                             "heartbeats": {n: view(truck, self.counts[truck] // 5) for n in NODES
                                            if n.startswith(truck)}}
        return {"stale_after_s": 20, "mqtt_connected": True, "alerts": len(self.pulled), "trucks": trucks}

    def cloud(self, stage: Any) -> st.CloudSide:
        tier = CloudTier("offline plan + cloud stand-in", outputs=PublicOutputs.of(make_cloud(stage), receiver=None))
        if self.standin_down:
            return st.CloudSide(replace(tier, standin="not answering"), None, "the stand-in does not answer")
        return st.CloudSide(replace(tier, standin="answering"), self.seen())

    def measure(self) -> StatusReport:
        self.measures += 1
        return st.status(FakeLabTarget(self.project), "stage-1", prober=healthy_probes, cloud_reader=self.cloud)


def healthy_probes(nodes: list[st.NodeTarget], access: Any) -> list[st.NodeProbe]:
    return [st.NodeProbe(n.name, True, "ok", dict.fromkeys(n.services, "active")) for n in nodes]


def portal_settings(stage: str = "stage-1", listen: str = "127.0.0.1:8765", token: str | None = None,
                    insecure_http: bool = False, interval_s: float = 1.0) -> PortalSettings:
    env = {"TRUCKCTL_PORTAL_TOKEN": token} if token else {}
    return settings(stage, "lab", listen, insecure_http=insecure_http, interval_s=interval_s, environ=env)


@contextlib.contextmanager
def portal(project: Project, measure: Any = None, **options: Any) -> Iterator[TestClient]:
    """The real app (lifespan included: its poller runs) under TestClient."""
    app, hub = server.build(project, portal_settings(**options), measure)
    with TestClient(app, base_url="http://127.0.0.1:8765", follow_redirects=False) as client:
        client.hub = hub  # type: ignore[attr-defined]
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def live_server(project: Project, measure: Any = None, **options: Any) -> Iterator[tuple[str, int]]:
    """The app under real uvicorn (server.uvicorn_config: its limits) on loopback, in a thread."""
    import uvicorn

    port = free_port()
    config_settings = portal_settings(listen=f"127.0.0.1:{port}", **options)
    app, _hub = server.build(project, config_settings, measure)
    instance = uvicorn.Server(server.uvicorn_config(app, config_settings))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        instance.should_exit = True
        thread.join(10)


def stage1(project: Project) -> Any:
    return load_stage(project, "stage-1")
