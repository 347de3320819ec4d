"""Notifications reach a real HTTP receiver on loopback; failures are reported, never raised.

Every malformed webhook URL shape goes through a real run (`truckctl drift` with the lab and
Ansible faked): the run keeps its exit code and JSON envelope, its journal closes, and the URL's
token appears nowhere (output, journal, notification results). A slow-drip server on 127.0.0.1
shows the delivery's deadline covers the whole exchange, not each socket operation.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from typer.testing import CliRunner

from tests.helpers import REPO, FakeLabTarget
from tests.unit.lifecycle.fakes import truck_result
from truckctl.cli.app import app
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle.journal import REDACTED, Redactor, list_runs, runs_dir
from truckctl.lifecycle.notify import Channel, Delivery, channels, deliver, notify
from truckctl.lifecycle.run import locked_run
from truckctl.lifecycle.webhttp import BadUrl, parse_url, secret_parts
from truckctl.project import Project
from truckctl.targets.lab import LabTarget
from truckctl.truck.events import Change, TruckRunResult

TOKEN = "T0KEN-s3cr3t-9f8e7d6c5b4a"
SECRET = "hunter2-passphrase-value"


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Receiver.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts?token={TOKEN}"
    server.shutdown()
    server.server_close()


def test_notification_delivered(receiver: str, stage: Stage) -> None:
    results = notify([Channel("webhook", receiver)], stage, "run-failed", "up stage-1 failed at truck",
                     run_id="r1")
    assert results[0].ok is True and list(results[0].to_json()) == ["channel", "ok", "status"]
    assert TOKEN not in json.dumps([r.to_json() for r in results])  # URLs may carry tokens: never shown
    body = _Receiver.received[0]
    assert body["kind"] == "run-failed" and body["stage"] == "stage-1" and body["race"] == "gdf27"
    assert body["run_id"] == "r1"


def test_unreachable_channel_is_reported_not_raised(stage: Stage) -> None:
    results = notify([Channel("webhook", "http://127.0.0.1:9/alerts")], stage, "drift", "drift found")
    assert results[0].ok is False and results[0].error == "connection refused"


def test_only_http_urls_are_used(stage: Stage) -> None:
    results = notify([Channel("webhook", "file:///etc/passwd")], stage, "drift", "drift found")
    assert [r.to_json() for r in results] == [{"channel": "webhook", "ok": False,
                                               "error": "the channel's URL is not used: only http(s) URLs are used"}]


def test_a_delivery_is_scrubbed_in_what_it_says_and_shown_as_the_result_shows_it() -> None:
    failed = Delivery("webhook (http://hooks.example)", False, error=f"refused {TOKEN}")
    scrubbed = failed.scrubbed(lambda text: text.replace(TOKEN, "***"))
    assert scrubbed.to_json() == {"channel": "webhook (http://hooks.example)", "ok": False, "error": "refused ***"}
    assert Delivery("webhook", False, 503).to_json() == {"channel": "webhook", "ok": False, "status": 503}


def test_channels_from_secret_reference(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUCKCTL_ALERT_WEBHOOK", raising=False)
    assert channels(stage) == []
    monkeypatch.setenv("TRUCKCTL_ALERT_WEBHOOK", "http://127.0.0.1:1/hook")
    assert [c.name for c in channels(stage, "https://100.64.10.10:8080/alerts")] == ["webhook", "lab-alert-receiver"]
    assert TOKEN not in repr(Channel("webhook", f"https://h.example/{TOKEN}"))


# ---- malformed URLs --------------------------------------------------------------------------

MALFORMED = {
    "space in path": f"https://hooks.example/services/{TOKEN} x",
    "tab": f"https://hooks.example/\t{TOKEN}",
    "newline": f"https://hooks.example/{TOKEN}\r\nX-Injected: 1",
    "NUL": f"https://hooks.example/{TOKEN}\x00",
    "DEL": f"https://hooks.example/{TOKEN}\x7f",
    "escape": f"https://hooks.example/\x1b[31m{TOKEN}",
    "line separator": f"https://hooks.example/{TOKEN}\u2028",
    "non-ASCII": f"https://hooks.exämple/{TOKEN}",
    "space in host": f"https://hooks .example/{TOKEN}",
    "port too big": f"https://hooks.example:99999/{TOKEN}",
    "port letters": f"https://hooks.example:abc/{TOKEN}",
    "port negative": f"https://hooks.example:-1/{TOKEN}",
    "port zero": f"https://hooks.example:0/{TOKEN}",
    "port empty": f"https://hooks.example:/{TOKEN}",
    "port unicode digits": f"https://hooks.example:\u0664\u0664\u0663/{TOKEN}",
    "two ports": f"https://hooks.example:443:443/{TOKEN}",
    "no host": f"https:///{TOKEN}",
    "port only": f"https://:443/{TOKEN}",
    "IPv6 unclosed": f"https://[::1/{TOKEN}",
    "IPv6 unopened": f"https://::1]/{TOKEN}",
    "IPv6 invalid": f"https://[zz::1]/{TOKEN}",
    "IPv6 empty": f"https://[]/{TOKEN}",
    "userinfo": f"https://user:{TOKEN}@hooks.example/x",
    "userinfo only user": f"https://{TOKEN}@hooks.example/x",
    "fragment": f"https://hooks.example/x#{TOKEN}",
    "plain http off loopback": f"http://hooks.example/{TOKEN}",
    "other scheme": f"ftp://hooks.example/{TOKEN}",
    "file": f"file:///{TOKEN}",
    "no scheme": f"hooks.example/{TOKEN}",
    "scheme-relative": f"//hooks.example/{TOKEN}",
    "bare token": TOKEN,
    "underscore host": f"https://a_b.example/{TOKEN}",
    "empty label": f"https://hooks..example/{TOKEN}",
    "hyphen label": f"https://-hooks.example/{TOKEN}",
    "too long": f"https://hooks.example/{TOKEN}/" + "a" * 3000,
    "empty": "",
}


@pytest.mark.parametrize("url", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_url_is_one_failed_delivery_naming_only_the_channel(url: str) -> None:
    result = deliver(Channel("webhook", url), b"{}")
    assert result.channel == "webhook" and result.ok is False and result.error is not None
    assert result.error.startswith("the channel's URL is not used: ")
    assert TOKEN not in json.dumps(result.to_json()) and "exämple" not in result.error


def test_well_formed_urls_parse() -> None:
    assert parse_url("https://hooks.example/a?b=c").shown == "https://hooks.example:443"
    assert parse_url("HTTPS://[2001:db8::1]:8443/x").shown == "https://[2001:db8::1]:8443"
    assert parse_url("http://127.0.0.1:8080/x").path == "/x"
    assert parse_url("http://[::1]/").host == "::1"
    assert parse_url("http://localhost:1?q").path == "/?q"


@given(hs.text(max_size=200))
def test_any_text_is_parsed_or_refused_with_a_fixed_reason(text: str) -> None:
    try:
        parse_url(text)
    except BadUrl as exc:
        assert len(text) < 8 or text not in str(exc)
        assert str(exc) in REASONS


REASONS = {
    "the URL is empty", "the URL is longer than 2048 characters",
    "the URL contains whitespace, control or non-ASCII characters", "not an absolute URL (scheme://host/path)",
    "only http(s) URLs are used", "a #fragment is not allowed", "credentials in the URL (user@host) are not allowed",
    "the host or port is malformed", "the IPv6 address in brackets is not valid", "the URL names no host",
    "the host is not a valid DNS name or IP address", "the port is not a number from 1 to 65535",
    "plain http is used only to loopback; use https"}


def test_secret_parts_cover_userinfo_path_query_and_fragment() -> None:
    parts = secret_parts(f"https://u:{TOKEN}@h.example:99999/p/{TOKEN}?k={TOKEN}#{TOKEN}")
    assert f"u:{TOKEN}" in parts and f"/p/{TOKEN}?k={TOKEN}" in parts and f"k={TOKEN}" in parts and TOKEN in parts


SLACK_LIKE = "https://hooks.example/services/T0A1B2C3D/B0Z9Y8X7W/aBcDeFgHiJkLmNoPqRsTuVwX"


def test_the_secret_parts_of_a_webhook_are_scrubbed_wherever_they_appear() -> None:
    """Each token-looking segment and query value is a needle of its own (a log line may quote one
    without the rest of the URL), the whole path and query too."""
    redactor = Redactor(secret_parts(f"{SLACK_LIKE}?sig={TOKEN}&v=1"))
    for text in ("T0A1B2C3D", "B0Z9Y8X7W", "aBcDeFgHiJkLmNoPqRsTuVwX", TOKEN, f"sig={TOKEN}",
                 f"/services/T0A1B2C3D/B0Z9Y8X7W/aBcDeFgHiJkLmNoPqRsTuVwX?sig={TOKEN}&v=1"):
        scrubbed = redactor.scrub(f"the receiver said: {text}.")
        assert scrubbed == f"the receiver said: {REDACTED}.", text
    assert REDACTED in Redactor(secret_parts("https://h.example/hooks/k7Qz")).scrub("/hooks/k7Qz")


def test_common_path_words_of_a_webhook_are_not_scrubbed_elsewhere() -> None:
    """Plain words of the URL's path ("/services", "/alerts", "webhooks") stay readable in every
    other line; only the secret units are needles."""
    redactor = Redactor([*secret_parts(f"{SLACK_LIKE}?v=1"), *secret_parts(f"https://h.example/alerts?token={TOKEN}"),
                         *secret_parts(f"https://h.example/api/webhooks/incoming?k={TOKEN}")])
    line = "restarted /services and /alerts; webhooks/incoming is up (hooks.example)"
    assert redactor.scrub(line) == line


def test_a_target_and_a_channel_show_no_path_query_or_userinfo() -> None:
    target = parse_url(f"https://hooks.example:8443/p/{TOKEN}?k=q7Zsecret")
    channel = Channel("webhook", f"https://user:pw{TOKEN}@hooks.example/p/{TOKEN}?k=q7Zsecret")
    for shown in (repr(target), str(target), repr(channel), str(channel), channel.shown, target.shown):
        assert TOKEN not in shown and "/p/" not in shown and "q7Zsecret" not in shown and "user" not in shown
    assert "hooks.example" in repr(target) and "8443" in repr(target)


# ---- through a real run ----------------------------------------------------------------------



@pytest.fixture
def fake_trucks(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The lab and Ansible faked; the notification path is the real one (no lab receiver: aws-like)."""
    state: dict[str, Any] = {"unreachable": False, "diff": "-PasswordAuthentication yes\n+PasswordAuthentication no\n"}

    def run_plan(plan: Any, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        return truck_result(plan.check, [Change("truck-a-gw", "Configure sshd", state["diff"])],
                             state["unreachable"])

    monkeypatch.setattr("truckctl.truck.runner.run_plan", run_plan)
    monkeypatch.setattr("truckctl.targets.for_kind", lambda kind, project: FakeLabTarget(project))
    return state


def _everything_written(project: Project) -> str:
    texts = []
    for path in sorted(runs_dir(project).rglob("*")):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


# The environment cannot hold a NUL; an empty variable is no channel at all.
IN_ENV = {name: url for name, url in MALFORMED.items() if url and "\x00" not in url}


@pytest.mark.parametrize("unreachable", [False, True], ids=["drift-found", "run-failed"])
@pytest.mark.parametrize("url", IN_ENV.values(), ids=IN_ENV.keys())
def test_a_malformed_webhook_never_breaks_the_run(url: str, unreachable: bool, project: Project,
                                                  fake_trucks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    fake_trucks["unreachable"] = unreachable
    monkeypatch.setenv("TRUCKCTL_ALERT_WEBHOOK", url)
    monkeypatch.chdir(REPO)
    out = CliRunner().invoke(app, ["drift", "stage-1", "--json"])
    expected = ExitCode.ERROR if unreachable else ExitCode.CHANGES
    assert out.exit_code == expected, out.output
    envelope = json.loads(out.stdout)
    assert envelope["exit_code"] == expected
    runs = list_runs(project, "stage-1")
    assert len(runs) == 1 and runs[0]["status"] == ("failed" if unreachable else "changes")
    deliveries = envelope["result"]["notifications"]
    assert [(d["channel"], d["ok"]) for d in deliveries] == [("webhook", False)]
    for text in (out.output, _everything_written(project), json.dumps(deliveries)):
        assert TOKEN not in text


def test_the_notification_body_is_scrubbed_like_the_journal(receiver: str, project: Project,
                                                            fake_trucks: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A drift diff that shows a secret (the passphrase in a file on a node) reaches the webhook redacted."""
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", SECRET)
    monkeypatch.setenv("TRUCKCTL_ALERT_WEBHOOK", receiver)
    fake_trucks["diff"] = f"-passphrase = {SECRET}\n+passphrase = [kept on the host]\n"
    monkeypatch.chdir(REPO)
    out = CliRunner().invoke(app, ["drift", "stage-1", "--json"])
    assert out.exit_code == ExitCode.CHANGES
    body = _Receiver.received[0]
    assert body["kind"] == "drift-found" and body["items"][0]["diff"].startswith("-passphrase = [redacted]")
    assert SECRET not in json.dumps(_Receiver.received) and TOKEN not in out.output


def test_a_short_webhook_path_is_never_printed(project: Project, fake_trucks: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A path too short to be scrubbed ("/q7": the redactor's needles are 6 characters or more)
    reaches no output, journal or delivery result: they name the channel by scheme, host and port."""
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received = []
    try:
        monkeypatch.setenv("TRUCKCTL_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_address[1]}/q7")
        monkeypatch.chdir(REPO)
        out = CliRunner().invoke(app, ["drift", "stage-1", "--json"])
    finally:
        server.shutdown()
        server.server_close()
    assert out.exit_code == ExitCode.CHANGES, out.output
    deliveries = json.loads(out.stdout)["result"]["notifications"]
    assert [(d["channel"], d["ok"]) for d in deliveries] == [
        (f"webhook (http://127.0.0.1:{server.server_address[1]})", True)]
    assert len(_Receiver.received) == 1
    for text in (out.output, _everything_written(project)):
        assert "/q7" not in text


def test_a_bug_in_a_step_still_closes_the_journal_without_its_text(project: Project, stage: Stage) -> None:
    with pytest.raises(TruckctlError) as caught, locked_run(project, stage, "up", LabTarget(project)) as run:
        run.step("cloud", lambda: {"x": 1 / 0})
    assert caught.value.problems[0].code == "internal-error" and "ZeroDivisionError" in str(caught.value)
    assert list_runs(project, "stage-1")[0]["status"] == "failed"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=hs.text(hs.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=120))
def test_any_text_as_webhook_keeps_the_run_whole(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arbitrary text as the webhook URL through the run wrapper's error path: the run ends with its own
    problem, its journal closes, the text is in no record. The transport is replaced for the rare text
    that is a valid URL (no traffic leaves the test)."""
    sent: list[str] = []

    def refuse(target: Any, *args: Any, **kwargs: Any) -> Any:
        from truckctl.lifecycle.webhttp import ExchangeFailed

        sent.append(target.host)
        raise ExchangeFailed("timed out")

    monkeypatch.setattr("truckctl.lifecycle.notify.exchange", refuse)
    url = f"{text}{TOKEN}"
    with tempfile.TemporaryDirectory() as state_dir:
        monkeypatch.setenv("TRUCKCTL_STATE_DIR", state_dir)
        monkeypatch.setenv("TRUCKCTL_ALERT_WEBHOOK", url)
        project = Project(REPO)
        stage = load_stage(project, "stage-1")
        with pytest.raises(TruckctlError) as caught, locked_run(project, stage, "up", LabTarget(project)):
            raise TruckctlError.single("step-failed", "the step failed")
        assert caught.value.problems[0].code == "step-failed" and caught.value.exit_code == ExitCode.ERROR
        notifications = caught.value.result["notifications"]
        assert isinstance(notifications, list) and len(notifications) == 1
        assert list_runs(project, "stage-1")[0]["status"] == "failed"
        assert TOKEN not in _everything_written(project) and TOKEN not in json.dumps(notifications)


# ---- the whole delivery has one deadline -----------------------------------------------------

@pytest.fixture(params=["status line", "headers", "body"])
def slow_drip(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server on 127.0.0.1 that answers one byte every 0.1 s, for ever: no socket operation ever
    waits long enough for a per-operation timeout to fire."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()
    prefix = {"status line": b"", "headers": b"HTTP/1.1 200 OK\r\n",
              "body": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"}[request.param]

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(prefix + (b"X-Drip: " if request.param == "headers" else b""))
                while not stop.is_set():  # then one byte at a time, never a line's end
                    try:
                        conn.sendall(b"a")
                    except OSError:
                        break
                    time.sleep(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook/{TOKEN}"
    stop.set()
    thread.join(5)
    listener.close()


def test_a_slow_drip_reply_is_cut_by_the_total_deadline(slow_drip: str) -> None:
    """The server never stops sending: only a deadline on the whole exchange ends this call."""
    result = deliver(Channel("webhook", slow_drip), b"{}", timeout_s=1.0)
    port = parse_url(slow_drip).port
    assert result.to_json() == {"channel": f"webhook (http://127.0.0.1:{port})", "ok": False,
                                "error": "no complete answer within 1 s"}

