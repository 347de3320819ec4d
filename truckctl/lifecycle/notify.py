"""Notifications: a failed run, drift found, telemetry or heartbeat stopped -> the configured channels.

Channels: the race's webhook (URL from its secret reference; on the lab, the cloud stand-in's alert
receiver). Delivery is best effort with a short timeout: a notification must never hang or fail
the run it reports on. URLs may carry tokens, so results name only the channel and host.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from truckctl.config.model import Stage

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Channel:
    name: str
    url: str

    @property
    def shown(self) -> str:
        parts = urlsplit(self.url)
        return f"{self.name} ({parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''})"


def channels(stage: Stage, lab_receiver: str | None = None) -> list[Channel]:
    found = []
    webhook = stage.alerts.webhook
    if webhook is not None and os.environ.get(webhook.env):
        found.append(Channel("webhook", os.environ[webhook.env]))
    if lab_receiver:
        found.append(Channel("lab-alert-receiver", lab_receiver))
    return found


def notify(targets: list[Channel], stage: Stage, kind: str, message: str, **details: Any) -> list[dict[str, Any]]:
    """Send one notification to every channel; return per-channel delivery results."""
    body = json.dumps({
        "source": "truckctl", "host": socket.gethostname(), "race": stage.race.id, "stage": stage.name,
        "kind": kind, "message": message, "ts": time.time(), **details,
    }).encode()
    results = []
    for channel in targets:
        if urlsplit(channel.url).scheme not in ("http", "https"):
            results.append({"channel": channel.shown, "ok": False, "error": "only http(s) URLs are used"})
            continue
        request = urllib.request.Request(channel.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "truckctl"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                results.append({"channel": channel.shown, "ok": 200 <= response.status < 300,
                                "status": response.status})
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            results.append({"channel": channel.shown, "ok": False, "error": str(reason)[:120]})
    return results
