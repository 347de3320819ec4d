"""The portal's routes: the page and its local assets, the JSON API (the CLI's own documents), 404s,
and a stage that does not exist / a lab that is down / a status that breaks: said, never a 500."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from typing import Any

from typer.testing import CliRunner

from tests.unit.portal.support import FakeLab, portal
from truckctl.cli.app import app as cli
from truckctl.errors import ExitCode
from truckctl.lifecycle.journal import Journal
from truckctl.portal.app import STATIC
from truckctl.project import Project


class Refs(HTMLParser):
    """Every script and stylesheet a page loads, and any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in values
            self.refs += [values["src"] or ""] if "src" in values else []
        if tag == "link" and values.get("href"):
            self.refs.append(values["href"] or "")
        if any(name.startswith("on") for name in values):
            self.inline_scripts += 1

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script


def wait_polls(client: Any, count: int) -> None:
    deadline = time.monotonic() + 20
    while client.hub.polls < count:
        assert time.monotonic() < deadline, "the portal stopped polling"
        time.sleep(0.05)


def cli_json(project: Project, *args: str) -> dict[str, Any]:
    import json

    result = CliRunner().invoke(cli, ["-C", str(project.root), *args, "--json"])
    return dict(json.loads(result.stdout))


def test_page_and_every_asset_it_loads_are_served_by_the_portal_itself(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure) as client:
        for page in ("/", "/runs/20270508T080000Z-stage-1-up-0001"):
            response = client.get(page)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            refs = Refs()
            refs.feed(response.text)
            assert refs.inline_scripts == 0, "inline script: the CSP forbids it"
            assert refs.refs and all(r.startswith("/static/") or r == "data:," for r in refs.refs), refs.refs
            for ref in (r for r in refs.refs if r.startswith("/static/")):
                assert client.get(ref).status_code == 200, f"{page} loads {ref}, which is not served"
    # the charting library is vendored (scripts/setup.sh), with its licence, not fetched from a CDN
    assert (STATIC / "vendor" / "uPlot.iife.min.js").is_file() and (STATIC / "vendor" / "LICENSE").is_file()
    for source in STATIC.glob("*.*"):
        text = source.read_text()
        assert not re.search(r"""(src|href|fetch\(|EventSource\()\s*=?\s*["'`](https?:)?//""", text), source


def test_api_status_and_runs_are_the_cli_documents(lab: FakeLab, project: Project) -> None:
    journal = Journal(project, "stage-1", "up", "lab", run_id="20270508T080000Z-stage-1-up-0001")
    journal.step_start("truck")
    journal.step_end("truck", "ok", changed=3)
    journal.finish(ExitCode.OK, [], {"truck": {"hosts": {"truck-a-gw": {"ok": 12, "changed": 3, "failed": 0}}}})
    with portal(project, lab.measure) as client:
        status = client.get("/api/status").json()
        assert status["command"] == "status" and status["stage"] == "stage-1" and status["ok"] is True
        expected = lab.measure().to_json()
        assert set(status["result"]) == set(expected)  # the same document as `status --json`
        assert [t["name"] for t in status["result"]["trucks"]] == ["truck-a", "truck-b"]
        assert status["result"]["healthy"] is True
        runs = client.get("/api/runs").json()
        assert runs["result"] == cli_json(project, "runs")["result"]
        assert client.get("/api/runs?stage=stage-1").json()["result"]["runs"][0]["run_id"] == journal.run_id
        shown = client.get(f"/api/runs/{journal.run_id}").json()
        assert shown["result"] == cli_json(project, "runs", "show", journal.run_id)["result"]
        snapshot = client.get("/api/snapshot").json()
        assert snapshot["runs"][0]["run_id"] == journal.run_id and snapshot["problems"] == []
        assert snapshot["header"]["race"] == "Giro di Finzione 2027" and snapshot["header"]["name"] == "stage-1"
        assert client.get("/api/history").json()["samples"], "no sample kept for the plots"


def test_unknown_routes_and_bad_ids_are_404_or_400_never_500(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure) as client:
        for path in ("/nope", "/api/nope", "/static/nope.js", "/static/../settings.py", "/runs/not-a-run",
                     "/docs", "/redoc", "/api/runs/20270508T080000Z-stage-1-up-ffff", "/.env"):
            response = client.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert "Traceback" not in response.text
        bad = client.get("/api/runs/..%2F..%2Fetc")
        assert bad.status_code in (400, 404) and "Traceback" not in bad.text
        stage = client.get("/api/runs?stage=../../x")
        assert stage.status_code == 400 and stage.json()["errors"][0]["code"] == "bad-stage-name"
        assert client.post("/api/status").status_code == 405  # read-only: nothing takes a POST


def test_openapi_documents_the_api_and_no_cdn_docs_page(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure) as client:
        schema = client.get("/openapi.json").json()
    assert {"/api/status", "/api/runs", "/api/runs/{run_id}", "/api/snapshot", "/api/history",
            "/api/events", "/api/incidents"} <= set(schema["paths"])
    assert all(set(methods) == {"get"} for methods in schema["paths"].values())  # read-only


def test_security_headers_on_every_answer(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure) as client:
        for path in ("/", "/static/portal.js", "/api/status", "/openapi.json", "/nope"):
            headers = client.get(path).headers
            assert "default-src 'self'" in headers["content-security-policy"], path
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "unsafe-inline" not in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
            assert "server" not in headers or "uvicorn" not in headers["server"]


def test_a_stage_that_does_not_exist_is_said_and_the_portal_keeps_running(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure, stage="stage-99") as client:
        wait_polls(client, 2)
        snapshot = client.get("/api/snapshot").json()
        assert snapshot["status"] is None and snapshot["topology"] is None
        assert "no stage 'stage-99'" in snapshot["errors"][0]["message"]
        assert snapshot["problems"][0]["kind"] == "portal" and "stage-99" in snapshot["problems"][0]["text"]
        status = client.get("/api/status")
        assert status.status_code == 200
        assert status.json()["exit_code"] == ExitCode.INVALID_CONFIG and status.json()["ok"] is False
        assert client.get("/").status_code == 200
    assert lab.measures == 0  # nothing measured for a stage that does not exist


def test_a_lab_that_is_down_is_said(project: Project) -> None:
    """The real status function (no fakes) against a project whose lab is not up."""
    with portal(project) as client:
        snapshot = client.get("/api/snapshot").json()
    assert snapshot["status"]["healthy"] is False
    texts = [p["text"] for p in snapshot["problems"]]
    assert any("no lab is up" in text for text in texts), texts
    assert snapshot["topology"]["cloud"]["state"] == "down"


def test_a_standin_that_does_not_answer_is_said(lab: FakeLab) -> None:
    lab.standin_down = True
    with portal(lab.project, lab.measure) as client:
        snapshot = client.get("/api/snapshot").json()
    assert {"truck": None, "node": None, "kind": "cloud",
            "text": "cloud side: the stand-in does not answer"} in snapshot["problems"]
    assert snapshot["topology"]["cloud"]["state"] == "down"


def test_a_status_that_breaks_is_said_without_a_traceback(lab: FakeLab) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom at /secret/place")

    with portal(lab.project, broken) as client:
        wait_polls(client, 2)  # and keeps polling
        for path in ("/api/snapshot", "/api/status"):
            response = client.get(path)
            assert response.status_code == 200
            assert "boom" not in response.text and "Traceback" not in response.text
        assert client.get("/api/snapshot").json()["errors"][0]["code"] == "internal"


def test_incidents_are_in_the_api_and_the_event_stream_and_resolve(lab: FakeLab) -> None:
    """A silent truck is one incident in /api/incidents, /api/status and the snapshot the page is sent;
    when it talks again the incident is gone from the open list (the cloud side keeps the recent ones)."""
    with portal(lab.project, lab.measure, interval_s=0.2) as client:
        wait_polls(client, 1)
        assert client.get("/api/incidents").json() == {"open": [], "recent": []}
        lab.pulled.add("truck-a")
        wait_polls(client, client.hub.polls + 2)
        (incident,) = client.get("/api/incidents").json()["open"]
        assert (incident["kind"], incident["truck"], len(incident["symptoms"])) == ("uplink-down", "truck-a", 4)
        assert client.get("/api/status").json()["result"]["incidents"] == [incident]
        assert b'"kind":"uplink-down"' in client.hub.latest_event  # what every viewer's stream carries
        lab.pulled.clear()
        wait_polls(client, client.hub.polls + 2)
        assert client.get("/api/incidents").json()["open"] == []
    page = (STATIC / "index.html").read_text()
    assert 'id="incidents"' in page and 'id="incidents-recent"' in page
    assert "renderIncidents" in (STATIC / "portal.js").read_text()
