"""Notifications: a failed run, drift found, telemetry or heartbeat stopped -> the configured channels.

Channels: the race's webhook (URL from its secret reference; on the lab, the cloud stand-in's alert
receiver, reached over TLS with truckctl's own client certificate). Delivery is best effort and
bounded as a whole (name lookup, connect, a reply dribbled byte by byte: one deadline): a
notification never hangs, never raises and never fails the run it reports on. A URL that is not
usable (see webhttp.parse_url) is one failed delivery. URLs may carry tokens: results name only the
channel (and, for a well-formed URL, its scheme, host and port); the body is scrubbed by the run's
redactor, the journal's, before it leaves.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from truckctl.config.model import Stage
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.webhttp import BadUrl, ClientTls, ExchangeFailed, exchange, parse_url

TIMEOUT_S = 3.0  # the whole delivery to one channel
MAX_REPLY = 64 * 1024


@dataclass(frozen=True)
class Channel:
    name: str
    url: str
    tls: ClientTls | None = None  # a pinned CA and client certificate (the lab's stand-in)

    def __repr__(self) -> str:  # the URL may carry a token
        return f"Channel({self.name!r})"

    @property
    def shown(self) -> str:
        try:
            return f"{self.name} ({parse_url(self.url).shown})"
        except BadUrl:
            return self.name


@dataclass(frozen=True)
class Delivery:
    """One channel's delivery of a notification, named by the channel (never its URL's path or query)."""

    channel: str
    ok: bool
    status: int | None = None  # the receiver's HTTP status, when it answered
    error: str | None = None  # why it was not delivered, when it did not answer

    def scrubbed(self, scrub: Callable[[str], str]) -> Delivery:
        return replace(self, channel=scrub(self.channel), error=None if self.error is None else scrub(self.error))

    def to_json(self) -> JsonObject:
        """As the run's result and journal show it."""
        told = {"status": self.status} if self.status is not None else {"error": self.error}
        return {"channel": self.channel, "ok": self.ok, **told}


def channels(stage: Stage, lab_receiver: str | None = None, lab_tls: ClientTls | None = None) -> list[Channel]:
    found = []
    webhook = stage.alerts.webhook
    if webhook is not None and os.environ.get(webhook.env):
        found.append(Channel("webhook", os.environ[webhook.env]))
    if lab_receiver:
        found.append(Channel("lab-alert-receiver", lab_receiver, lab_tls))
    return found


def _identity(data: Any) -> Any:
    return data


def notify(targets: list[Channel], stage: Stage, kind: str, message: str, *,
           scrub: Callable[[Any], Any] = _identity, **details: Any) -> list[Delivery]:
    """Send one notification to every channel; return per-channel delivery results (never raises)."""
    body = json.dumps(scrub({
        "source": "truckctl", "host": socket.gethostname(), "race": stage.race.id, "stage": stage.name,
        "kind": kind, "message": message, "ts": time.time(), **details,
    }), default=str).encode()
    return [deliver(channel, body) for channel in targets]


def deliver(channel: Channel, body: bytes, timeout_s: float = TIMEOUT_S) -> Delivery:
    """POST the body to one channel: a result naming the channel, never its URL's path or query."""
    try:
        target = parse_url(channel.url)
    except BadUrl as exc:
        return Delivery(channel.name, False, error=f"the channel's URL is not used: {exc}")
    except Exception as exc:  # a delivery never breaks the run it reports on
        return Delivery(channel.name, False, error=f"the channel's URL is not used ({type(exc).__name__})")
    shown = f"{channel.name} ({target.shown})"
    if channel.tls is None and channel.name == "lab-alert-receiver":
        return Delivery(shown, False, error="no credential for the lab's stand-in")
    try:
        reply = exchange(target, "POST", body, headers={"Content-Type": "application/json"},
                         deadline_s=timeout_s, max_bytes=MAX_REPLY, tls=channel.tls)
    except ExchangeFailed as exc:
        return Delivery(shown, False, error=str(exc))
    except Exception as exc:  # e.g. an unreadable client certificate
        return Delivery(shown, False, error=f"not delivered ({type(exc).__name__})")
    return Delivery(shown, 200 <= reply.status < 300, reply.status)
