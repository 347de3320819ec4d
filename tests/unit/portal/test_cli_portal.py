"""`truckctl portal` from the command line and under the real server (uvicorn on loopback): the
credential rule's refusals, the loud warning, the web stack kept out of `--help`, the live event
stream, the server's header limit, and a clean stop on SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO
from tests.unit.portal.support import TOKEN, FakeLab, free_port, live_server
from truckctl.cli import cmd_portal
from truckctl.cli.app import app
from truckctl.portal import server
from truckctl.portal.guard import MAX_HEADER_BYTES
from truckctl.project import Project


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["-C", str(REPO), "portal", *args, "--json"], env=env)
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize(("args", "env", "code", "says"), [
    (["stage-1", "--listen", "0.0.0.0:8765"], {}, 2, "TRUCKCTL_PORTAL_TOKEN"),
    (["stage-1", "--listen", "0.0.0.0:8765"], {"TRUCKCTL_PORTAL_TOKEN": TOKEN}, 2, "needs TLS"),
    (["stage-1", "--listen", "nowhere"], {}, 2, "expected ADDR:PORT"),
    (["../etc", "--listen", "127.0.0.1:8765"], {}, 5, "expected a stage name like stage-1"),
])
def test_refusals_are_one_line_errors_before_anything_listens(project: Project, args: list[str],
                                                              env: dict[str, str], code: int, says: str) -> None:
    exit_code, document = invoke(*args, env=env)
    assert exit_code == code and document["ok"] is False
    assert says in document["errors"][0]["message"]
    assert TOKEN not in json.dumps(document)


def test_an_unknown_target_is_one_usage_error(project: Project, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--target is an enum: Click refuses `moon`, and the console entry point prints one JSON document."""
    from truckctl.cli.app import main

    monkeypatch.setattr("sys.argv", ["truckctl", "-C", str(REPO), "portal", "stage-1", "--target", "moon", "--json"])
    with pytest.raises(SystemExit) as exited:
        main()
    document = json.loads(capsys.readouterr().out)
    assert exited.value.code == 2 and document["ok"] is False and "moon" in document["errors"][0]["message"]


def test_a_busy_port_is_one_clear_error(project: Project) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        exit_code, document = invoke("stage-1", "--listen", f"127.0.0.1:{port}")
    assert exit_code == 1 and "cannot listen on 127.0.0.1" in document["errors"][0]["message"]


def test_insecure_http_off_loopback_warns_loudly(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []
    monkeypatch.setattr(server, "bind", lambda settings: socket.socket())  # nothing really listens
    monkeypatch.setattr(cmd_portal, "_serve", lambda project_, settings, sock: served.append(settings) or 0)
    result = CliRunner().invoke(app, ["-C", str(REPO), "--no-color", "portal", "stage-1", "--listen",
                                      "192.0.2.10:8765", "--insecure-http"], env={"TRUCKCTL_PORTAL_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.stderr and "IN CLEAR" in result.stderr
    assert served and served[0].credential is not None and TOKEN not in result.output


def test_help_does_not_import_the_web_stack() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "truckctl", "--help"], capture_output=True,
                          text=True, check=True, env={**os.environ, "NO_COLOR": "1"})
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"fastapi", "starlette", "uvicorn", "h11", "anyio"}, imported
    assert "portal" in proc.stdout


def read_event(host: str, port: int, timeout: float = 20) -> dict[str, Any]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.request("GET", "/api/events")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("content-type", "").startswith("text/event-stream")
    event = ""
    while not event.endswith("\n\n") or "data:" not in event:
        event += response.readline().decode()
    connection.close()
    data = next(line for line in event.splitlines() if line.startswith("data: "))
    return dict(json.loads(data.removeprefix("data: ")))


def test_live_events_over_the_real_server(lab: FakeLab) -> None:
    with live_server(lab.project, lab.measure) as (host, port):
        first = read_event(host, port)
        assert first["stage"] == "stage-1" and first["status"]["healthy"] is True
        lab.pulled.add("truck-a")
        deadline = time.monotonic() + 20
        while True:  # a later event carries the change, without any new request for it
            event = read_event(host, port)
            if event["problems"]:
                break
            assert time.monotonic() < deadline, "the change never reached the event stream"
        assert {p["truck"] for p in event["problems"]} == {"truck-a"}


def test_oversized_headers_are_refused_by_the_server(lab: FakeLab) -> None:
    with live_server(lab.project, lab.measure) as (host, port):
        for size in (MAX_HEADER_BYTES + 1024, server.MAX_HEADER_BYTES * 8):  # the app's limit, the server's
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.putrequest("GET", "/api/status")
            connection.putheader("X-Big", "a" * size)
            connection.endheaders()
            try:
                status = connection.getresponse().status
            except (ConnectionError, http.client.RemoteDisconnected):
                status = 0  # dropped: refused too
            assert status in (0, 400, 431), size
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", "/api/status")
        assert connection.getresponse().status == 200  # and the server is still there


def test_the_command_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TRUCKCTL_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}
    env.pop("TRUCKCTL_PORTAL_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "truckctl", "-C", str(REPO), "portal", "stage-1", "--listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/api/status")
                response = connection.getresponse()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the portal did not start"
                time.sleep(0.2)
        assert response.status == 200 and json.loads(response.read())["command"] == "status"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"at http://127.0.0.1:{port}/ (read-only; Ctrl-C to stop)" in out
    assert "Traceback" not in err
