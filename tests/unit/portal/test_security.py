"""The portal's safety: the credential rule off loopback, the token compared in constant time, the
one-time login that strips the token from the URL, oversized requests refused, no secret anywhere."""

from __future__ import annotations

import hmac
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import KEY_BODY
from tests.unit.portal.support import TOKEN, FakeLab, portal
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle.journal import Journal, Redactor
from truckctl.lifecycle.status_model import StatusReport
from truckctl.portal import settings as portal_settings
from truckctl.portal.guard import MAX_BODY_BYTES
from truckctl.portal.settings import COOKIE, settings
from truckctl.project import Project

OFF_LOOPBACK = "192.0.2.10:8765"  # TEST-NET-1: nothing is bound in these tests (TestClient)


# ---- the rule ----------------------------------------------------------------------------------

def test_loopback_needs_nothing() -> None:
    for listen in ("127.0.0.1:8765", "[::1]:8765", "localhost:8765", "127.0.0.5:9000"):
        assert settings("stage-1", "lab", listen, environ={}).credential is None


@pytest.mark.parametrize(("environ", "extra", "needed"), [
    ({}, {}, "needs a credential: set TRUCKCTL_PORTAL_TOKEN"),
    ({}, {"insecure_http": True}, "needs a credential"),
    ({"TRUCKCTL_PORTAL_TOKEN": TOKEN}, {}, "needs TLS (--tls-cert and --tls-key), or --insecure-http"),
    ({"TRUCKCTL_PORTAL_TOKEN": "short"}, {"insecure_http": True}, "too short"),
])
def test_off_loopback_needs_a_token_and_tls_or_an_explicit_insecure_http(environ: dict[str, str],
                                                                        extra: dict[str, Any], needed: str) -> None:
    with pytest.raises(TruckctlError) as caught:
        settings("stage-1", "lab", OFF_LOOPBACK, environ=environ, **extra)
    assert needed in str(caught.value) and caught.value.exit_code == ExitCode.USAGE
    assert TOKEN not in str(caught.value)


def test_off_loopback_with_token_and_tls_or_insecure_http_is_accepted(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    env = {"TRUCKCTL_PORTAL_TOKEN": TOKEN}
    tls = settings("stage-1", "lab", OFF_LOOPBACK, cert, key, environ=env)
    assert tls.tls and tls.url == "https://192.0.2.10:8765/" and tls.credential is not None
    assert TOKEN not in repr(tls)  # never printed by accident
    assert settings("stage-1", "lab", OFF_LOOPBACK, insecure_http=True, environ=env).credential is not None
    with pytest.raises(TruckctlError, match="both --tls-cert and --tls-key"):
        settings("stage-1", "lab", OFF_LOOPBACK, cert, None, environ=env)


@pytest.mark.parametrize("listen", ["8765", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "example.com:80",
                                    "127.0.0.1:80x", ":8765"])
def test_bad_listen_values_are_one_line_usage_errors(listen: str) -> None:
    with pytest.raises(TruckctlError) as caught:
        settings("stage-1", "lab", listen, environ={})
    assert caught.value.exit_code == ExitCode.USAGE and "\n" not in str(caught.value)


# ---- the credential at work --------------------------------------------------------------------

ROUTES = ["/", "/static/portal.js", "/api/status", "/api/runs", "/api/snapshot", "/api/history", "/openapi.json",
          "/nope"]


def test_off_loopback_every_route_needs_the_credential(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure, listen=OFF_LOOPBACK, token=TOKEN, insecure_http=True) as client:
        for path in ROUTES:
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert TOKEN not in refused.text
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code in (200, 404)
            assert client.get(path, cookies={COOKIE: TOKEN}).status_code == 401  # the cookie is not the token


def test_one_time_login_sets_a_session_cookie_and_strips_the_token_from_the_url(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure, listen=OFF_LOOPBACK, token=TOKEN, insecure_http=True) as client:
        wrong = client.get("/?token=nope")
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        login = client.get(f"/runs/20270508T080000Z-stage-1-up-0001?token={TOKEN}&x=1")
        assert login.status_code == 303
        assert login.headers["location"] == "/runs/20270508T080000Z-stage-1-up-0001?x=1"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        assert client.get("/api/status").status_code == 200  # the cookie now opens every route


def test_the_token_is_compared_in_constant_time(lab: FakeLab, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(portal_settings.hmac, "compare_digest", spy)
    with portal(lab.project, lab.measure, listen=OFF_LOOPBACK, token=TOKEN, insecure_http=True) as client:
        assert client.get("/api/status", headers={"Authorization": "Bearer guess-guess-guess"}).status_code == 401
        assert calls and calls[-1][1] == TOKEN.encode()
        calls.clear()
        client.get("/api/status", cookies={COOKIE: "0" * 64})
        assert calls, "the session cookie must be compared with compare_digest too"


def test_a_token_set_on_loopback_is_required_too(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure, token=TOKEN) as client:
        assert client.get("/api/status").status_code == 401


# ---- sizes ---------------------------------------------------------------------------------------

def test_oversized_or_chunked_request_bodies_and_long_urls_are_refused(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure) as client:
        big = client.post("/api/status", content=b"x" * (MAX_BODY_BYTES + 1))
        assert big.status_code == 413
        assert client.post("/", content=b"x" * (4 * 2**20)).status_code == 413

        def chunks() -> Any:
            yield b"x" * 1024

        assert client.post("/api/status", content=chunks()).status_code == 411
        assert client.get("/api/runs?stage=" + "a" * 5000).status_code == 414
        assert client.get("/" + "a" * 5000).status_code == 414


# ---- no secret anywhere --------------------------------------------------------------------------

SECRETS = {"PULUMI_CONFIG_PASSPHRASE": "passphrase-planted-7f3a9c", "TRUCKCTL_ALERT_WEBHOOK":
           "https://hooks.example/planted-9d2b1e", "TRUCKCTL_SSH_KEY_PASSPHRASE": "ssh-planted-4c8e2a"}


def crawl(client: Any, run_id: str) -> dict[str, str]:
    """Every GET route the OpenAPI schema lists (path parameters filled), the pages, the static files
    and one live event: what a viewer can ever read."""
    pages = {path.replace("{run_id}", run_id) for path in client.get("/openapi.json").json()["paths"]}
    pages |= {"/", f"/runs/{run_id}", "/openapi.json", "/api/runs?stage=stage-1"}
    pages |= {f"/static/{p.name}" for p in (Path(__file__).parents[3] / "truckctl/portal/static").glob("*.*")}
    seen: dict[str, str] = {}
    for path in sorted(pages - {"/api/events"}):
        response = client.get(path)
        assert response.status_code == 200, path
        seen[path] = response.text
    seen["/api/events"] = client.hub.latest_event.decode()
    return seen


def test_no_secret_in_any_page_or_api_response(lab: FakeLab, project: Project, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    lab.pulled.add("truck-a")  # problems and alarms shown too
    journal = Journal(project, "stage-1", "up", "lab", run_id="20270508T080000Z-stage-1-up-0001",
                      redactor=Redactor([*SECRETS.values(), *KEY_BODY.values()]))
    journal.event("note", "truck", message=f"key {KEY_BODY['truck-a']} and {SECRETS['PULUMI_CONFIG_PASSPHRASE']}")
    journal.finish(ExitCode.ERROR, [], {"cloud": {"mode": "offline plan", "resources": 40},
                                        "truck": {"hosts": {"truck-a-gw": {"failed": 1}}}})
    monkeypatch.setenv("TRUCKCTL_PORTAL_TOKEN", TOKEN)
    with portal(project, lab.measure, token=TOKEN) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        seen = crawl(client, journal.run_id)
    assert len(seen) >= 12
    assert "truck-a: telemetry STALE" in seen["/api/snapshot"]  # the crawl saw real content
    for path, text in seen.items():
        for secret in [*SECRETS.values(), *KEY_BODY.values(), TOKEN]:
            assert secret not in text, f"{path} shows a secret"
        assert "PRIVATE KEY" not in text, path
    assert json.loads(seen["/api/snapshot"])["cloud"]["plan"]["resources"] == 40


def test_secrets_in_the_status_data_itself_reach_no_viewer(lab: FakeLab, project: Project,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """What the nodes and the stand-in answer is not trusted: a stand-in (or a node) quoting the planted
    webhook URL or passphrase back is scrubbed before any page, API answer or event shows it."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    webhook, passphrase = SECRETS["TRUCKCTL_ALERT_WEBHOOK"], SECRETS["PULUMI_CONFIG_PASSPHRASE"]
    webhook_path = webhook.rpartition("/")[2]  # the secret part of the URL, alone

    def leaky() -> StatusReport:
        report = lab.measure()
        measured = report.health
        tier = replace(measured.cloud.tier, note=f"stand-in posted to {webhook} with passphrase {passphrase}",
                       standin=f"answering (receiver /{webhook_path})")
        first = measured.trucks[0]
        node = replace(first.nodes[0], detail=f"ok; env PULUMI_CONFIG_PASSPHRASE={passphrase}")
        measured = replace(measured, cloud=replace(measured.cloud, tier=tier),
                           trucks=(replace(first, nodes=(node, *first.nodes[1:])), *measured.trucks[1:]),
                           unhealthy=(*measured.unhealthy, f"truck-a-gw: said {passphrase}"))
        return replace(report, health=measured)

    with portal(project, leaky) as client:
        seen = {path: client.get(path).text for path in ("/api/snapshot", "/api/status")}
        seen["/api/events"] = client.hub.latest_event.decode()
    assert "[redacted]" in seen["/api/snapshot"] and "stand-in posted to" in seen["/api/status"]
    for path, text in seen.items():
        for secret in (webhook, webhook_path, passphrase):
            assert secret not in text, f"{path} shows a secret"


# ---- who the portal answers to (DNS rebinding) -----------------------------------------------------

EVERY_ROUTE = [*ROUTES, "/api/events", "/api/runs/20270508T080000Z-stage-1-up-0001",
               "/runs/20270508T080000Z-stage-1-up-0001"]


@pytest.mark.parametrize("token", [None, TOKEN])
def test_a_foreign_host_name_is_refused_on_every_route(lab: FakeLab, token: str | None) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    with portal(lab.project, lab.measure, token=token) as client:
        for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", "localhost.:8765",
                     "127.0.0.1:9999", "192.0.2.10:8765", ""):
            for path in EVERY_ROUTE:
                refused = client.get(path, headers={"Host": host, **auth})
                assert refused.status_code == 421, (host, path)
                assert "content-security-policy" in refused.headers and "host name" in refused.json()["detail"]
        assert client.get(f"/?token={TOKEN}", headers={"Host": "evil.example"}).status_code == 421


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "127.0.0.1", "localhost:8765", "LOCALHOST", "[::1]:8765",
                                  "[::1]"])
def test_the_loopback_host_names_pass(lab: FakeLab, host: str) -> None:
    with portal(lab.project, lab.measure) as client:
        for path in ("/", "/api/status", "/api/snapshot", "/static/portal.js"):
            assert client.get(path, headers={"Host": host}).status_code == 200, path
        with client.stream("GET", "/api/events", headers={"Host": host}) as events:
            assert events.status_code == 200
            assert next(events.iter_lines()) == "retry: 3000"


def test_the_listen_address_passes_and_an_unspecified_one_admits_ip_literals_only(lab: FakeLab) -> None:
    options: dict[str, Any] = {"token": TOKEN, "insecure_http": True}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with portal(lab.project, lab.measure, listen=OFF_LOOPBACK, **options) as client:
        for host in ("192.0.2.10:8765", "192.0.2.10", "localhost"):
            assert client.get("/api/status", headers={"Host": host, **auth}).status_code == 200, host
        assert client.get("/api/status", headers={"Host": "192.0.2.11:8765", **auth}).status_code == 421
    with portal(lab.project, lab.measure, listen="0.0.0.0:8443", **options) as client:
        for host in ("192.0.2.7:8443", "192.0.2.7", "[2001:db8::7]:8443", "0.0.0.0:8443"):
            assert client.get("/api/status", headers={"Host": host, **auth}).status_code == 200, host
        for host in ("portal.evil.example:8443", "192.0.2.7:8765", "[2001:db8::7]:1", "[nope]:8443"):
            assert client.get("/api/status", headers={"Host": host, **auth}).status_code == 421, host


def test_a_foreign_origin_is_refused(lab: FakeLab) -> None:
    with portal(lab.project, lab.measure) as client:
        for path in ("/api/snapshot", "/api/events", "/api/runs", "/"):
            for origin in ("http://evil.example", "http://evil.example:8765", "null", "https://127.0.0.1:8765",
                           "http://localhost:8765"):  # same host, other name: another origin
                assert client.get(path, headers={"Origin": origin}).status_code == 403, (path, origin)
        assert client.get("/api/snapshot", headers={"Origin": "http://127.0.0.1:8765"}).status_code == 200
        own = {"Host": "localhost:8765", "Origin": "http://localhost:8765"}
        assert client.get("/api/snapshot", headers=own).status_code == 200


@pytest.mark.parametrize(("path", "location"), [
    ("//evil.com", "/evil.com"), ("///evil.com/x", "/evil.com/x"), ("/%5Cevil.com", "/evil.com"),
    ("/%2F%2Fevil.com", "/evil.com"), ("/runs/a%20b", "/runs/a%20b"),
])
def test_the_login_redirect_stays_on_the_portal(lab: FakeLab, path: str, location: str) -> None:
    with portal(lab.project, lab.measure, listen=OFF_LOOPBACK, token=TOKEN, insecure_http=True) as client:
        login = client.get(f"http://127.0.0.1:8765{path}?token={TOKEN}")
        assert login.status_code == 303 and login.headers["location"] == location
