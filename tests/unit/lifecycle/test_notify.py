"""Notifications reach a real HTTP receiver on loopback; failures are reported, never raised."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from truckctl.config.model import Stage
from truckctl.lifecycle.notify import Channel, channels, notify


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
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts?token=s3cr3t-token"
    server.shutdown()
    server.server_close()


def test_notification_delivered(receiver: str, stage: Stage) -> None:
    results = notify([Channel("webhook", receiver)], stage, "run-failed", "up stage-1 failed at truck",
                     run_id="r1")
    assert results[0]["ok"] is True
    assert "s3cr3t-token" not in json.dumps(results)  # URLs may carry tokens: never shown
    body = _Receiver.received[0]
    assert body["kind"] == "run-failed" and body["stage"] == "stage-1" and body["race"] == "gdf27"
    assert body["run_id"] == "r1"


def test_unreachable_channel_is_reported_not_raised(stage: Stage) -> None:
    results = notify([Channel("webhook", "http://127.0.0.1:9/alerts")], stage, "drift", "drift found")
    assert results[0]["ok"] is False and results[0]["error"]


def test_only_http_urls_are_used(stage: Stage) -> None:
    results = notify([Channel("webhook", "file:///etc/passwd")], stage, "drift", "drift found")
    assert results == [{"channel": "webhook (file://None)", "ok": False, "error": "only http(s) URLs are used"}]


def test_channels_from_secret_reference(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUCKCTL_ALERT_WEBHOOK", raising=False)
    assert channels(stage) == []
    monkeypatch.setenv("TRUCKCTL_ALERT_WEBHOOK", "http://127.0.0.1:1/hook")
    assert [c.name for c in channels(stage, "http://100.64.10.10:8080/alerts")] == ["webhook", "lab-alert-receiver"]
