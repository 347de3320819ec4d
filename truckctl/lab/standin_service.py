"""The cloud stand-in's service, run inside the stand-in node (Debian's python3 + python3-paho-mqtt).

Stdlib plus paho only, and compatible with paho 1.6 (Debian 12) and 2.x. It plays, for the lab:
- the ingest's view: subscribes on the local broker to every truck's telemetry and heartbeat
  topics, recording last-seen per truck and per configured node and message counts (GET /status);
- the alert receiver that stands in for the webhook / SNS subscription (POST /alerts, GET /alerts);
- the CloudWatch alarms: an alert of its own when a truck's telemetry or a node's heartbeat has not
  been seen for stale_after_s after having been seen, and another when it comes back;
- the race-long cloud's stage of the day (DESIGN section 15): every message is counted under the stage
  the lab is on when it arrives (GET /status: `stages`), and only the trucks in today's tech zone
  alarm. `truckctl lab up STAGE` moves the lab by rewriting the config file, which the service reloads
  (it polls the file's mtime) without losing anything it received;
- race-day incidents (issue 14): the gateways' evidence topics, judged with its own silence tracking
  by the very diagnosis `truckctl status` runs (truckctl/ops, copied beside this file as the package
  `truckctl.ops`); one notification per incident opened and one per incident resolved, whatever
  the symptoms and repeats, into the alert list (source "incident", apart from the alarms: on the
  lab this receiver is the race's channel, as it is for truckctl's own notifications).

Access model, as the cloud's: the HTTP API is HTTPS with client certificates from the lab CA (its
CRL checked), on the stand-in's uplink address only. A truck's certificate (the one its bridge uses)
sees and writes only that truck's data; truckctl's own certificate (a CN no truck has) sees all.
Everything a client can make it hold is bounded: one request per connection, a deadline on the whole
connection (a slow sender is cut), a cap on connections, header bytes and body bytes (Content-Length
required, digits only), alerts kept per poster, heartbeats only from the truck's configured nodes
(others dropped and counted), and the stand-in's own alarms in a list no poster can push them out of.

Why the stdlib server: the node has only Debian packages from the cached stand-in layer, and the
stdlib's parser is bounded here (request line and header bytes, body, time) rather than trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from truckctl.ops.book import Event
from truckctl.ops.diagnose import CloudView, Stream
from truckctl.ops.topology import Topology
from truckctl.ops.watch import Watch

MAX_BODY = 64 * 1024
MAX_HEAD = 16 * 1024  # request line and headers together
MAX_CONNECTIONS = 32
CONNECTION_DEADLINE_S = 10.0  # the whole connection: handshake, request, reply
SOCKET_TIMEOUT_S = 5.0
MAX_ALARMS = 1000  # the stand-in's own alarms: only stream transitions fill this
MAX_POSTED = 200  # per poster (each truck, truckctl)
PAYLOAD_EXCERPT = 512
RECENT = 20
MAX_SEQUENCES = 256  # per stream: the feed's sources (riders) whose sequence numbers are followed
OPERATOR = "truckctl"  # the principal of truckctl's own certificate


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Seen:
    """Last-seen bookkeeping for one stream (a truck's telemetry, or one node's heartbeat)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.count = 0
        self.topic = ""
        self.payload = ""
        self.recent: deque[str] = deque(maxlen=RECENT)  # so a marker is found despite a busy feed
        self.recent_topics: deque[str] = deque(maxlen=RECENT)  # their topics, in the same order
        self.alarming = False
        self.armed = False  # seen since the stage began: only then can its silence alarm
        # Messages lost on the way, by the feed's own sequence numbers: {"rider": r, "seq": n, ...} per source
        # (the lab's transponder simulator numbers its readings); a gap is a lost message, a repeat a re-delivery.
        self.seq: dict[str, int] = {}
        self.missing = 0
        self.repeated = 0

    def hit(self, now: float, topic: str, payload: str) -> None:
        self.armed = True
        self.last, self.topic, self.payload = now, topic, payload[:PAYLOAD_EXCERPT]
        self.recent.append(self.payload)
        self.recent_topics.append(topic)
        self.count += 1
        self._follow(payload)

    def _follow(self, payload: str) -> None:
        try:
            reading = json.loads(payload) if len(payload) <= PAYLOAD_EXCERPT else None
        except ValueError:
            return
        seq = reading.get("seq") if isinstance(reading, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(reading, dict):
            return
        source = str(reading.get("rider", ""))[:32]
        last = self.seq.get(source)
        if last is None and len(self.seq) >= MAX_SEQUENCES:
            return
        if last is not None and seq > last + 1:
            self.missing += seq - last - 1
        if last is not None and seq <= last:
            self.repeated += 1  # re-delivered (QoS 1), or the source restarted (its numbering starts at 1 again)
            if seq != 1:
                return
        self.seq[source] = seq

    def view(self, now: float) -> dict[str, Any]:
        return {"last_seen": _iso(self.last), "age_s": None if self.last is None else round(now - self.last, 1),
                "count": self.count, "last_topic": self.topic or None, "last_payload": self.payload or None,
                "recent_payloads": list(self.recent), "recent_topics": list(self.recent_topics),
                "sequence": {"sources": len(self.seq), "missing": self.missing, "repeated": self.repeated},
                "alarm": self.alarming}


class Refused(Exception):
    """A request refused: its HTTP status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Tracker:
    """What the stand-in knows; every method is thread-safe (MQTT, HTTP and the checker share it).

    prefixes: truck -> topic prefix; nodes: truck -> the node names its heartbeats may come from."""

    def __init__(self, prefixes: dict[str, str], stale_after_s: float,
                 clock: Callable[[], float] = time.time, nodes: dict[str, list[str]] | None = None,
                 topology: dict[str, Any] | None = None) -> None:
        self.prefixes = prefixes
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.lock = threading.Lock()
        self.telemetry = {truck: Seen() for truck in prefixes}
        self.heartbeats: dict[str, dict[str, Seen]] = {
            truck: {node: Seen() for node in (nodes or {}).get(truck, [])} for truck in prefixes}
        self.dropped = dict.fromkeys(prefixes, 0)  # heartbeats from nodes the truck does not have
        self.alarms: deque[dict[str, Any]] = deque(maxlen=MAX_ALARMS)
        self.posted: dict[str, deque[dict[str, Any]]] = {}
        self.sequence = 0
        self.mqtt_connected = False
        self.days = StageDays(list(prefixes))
        self.watch = Watch(Topology.from_dict(topology)) if topology is not None else None
        self.notices: deque[dict[str, Any]] = deque(maxlen=MAX_ALARMS)  # incident notifications sent
        self.refused: dict[str, str] = {}  # truck -> why this cloud refuses its certificate (refused_file)

    def topics(self) -> list[str]:
        return [f"{p}/{kind}{suffix}" for p in self.prefixes.values() for kind in ("telemetry", "heartbeat")
                for suffix in ("", "/#")] + [f"{p}/evidence/#" for p in self.prefixes.values()]

    def on_message(self, topic: str, payload: bytes) -> None:
        now = self.clock()
        text = payload.decode("utf-8", "replace")
        for truck, prefix in self.prefixes.items():
            if not topic.startswith(prefix + "/"):
                continue
            kind, _, rest = topic.removeprefix(prefix + "/").partition("/")
            with self.lock:
                if kind == "telemetry":
                    self._resume(self.telemetry[truck], now, "telemetry-resumed", truck, None)
                    self.telemetry[truck].hit(now, topic, text)
                    self.days.count(truck, kind, now, text)
                elif kind == "heartbeat":
                    node = rest or _node_from(text)
                    seen = self.heartbeats[truck].get(node)
                    if seen is None:  # not one of the truck's nodes: never a new stream
                        self.dropped[truck] += 1
                        return
                    self._resume(seen, now, "heartbeat-resumed", truck, node)
                    seen.hit(now, topic, text)
                    self.days.count(truck, kind, now, text)
                elif kind == "evidence" and self.watch is not None and rest and "/" not in rest:
                    self._notify(self.watch.evidence(truck, rest, payload, now, self._streams(now)), now)
            return

    def _streams(self, now: float) -> CloudView:
        def age(seen: Seen) -> Stream:
            return Stream(None if seen.last is None else now - seen.last)

        return CloudView({truck: age(seen) for truck, seen in self.telemetry.items()},
                         {node: age(seen) for nodes in self.heartbeats.values() for node, seen in nodes.items()},
                         refused=dict(self.refused))

    def set_refused(self, refused: Any) -> None:
        """The trucks whose certificate this cloud refuses (its CRL): truck -> why, only the known trucks."""
        found = {str(truck): str(why)[:200] for truck, why in refused.items()
                 if truck in self.prefixes} if isinstance(refused, dict) else {}
        with self.lock:
            self.refused = found

    def _notify(self, events: list[Event], now: float) -> None:
        """One entry per event in the alert list (the lock is held); printed to the journal too."""
        for event in events:
            self.notices.append(self._entry(event.as_dict(), "incident", now))
            print(f"{event.event}: {event.incident.summary()}", flush=True)

    def _resume(self, seen: Seen, now: float, alarm: str, truck: str, node: str | None) -> None:
        if seen.alarming:
            seen.alarming = False
            self._alarm({"alarm": alarm, "state": "OK", "truck": truck, "node": node,
                         "silent_for_s": round(now - (seen.last or now), 1)}, now)

    def check(self) -> list[dict[str, Any]]:
        """Raise the stand-in's own alarms for streams silent longer than stale_after_s."""
        now = self.clock()
        raised = []
        with self.lock:
            streams: list[tuple[str, str | None, str, Seen]] = [
                (truck, None, "telemetry-stopped", seen) for truck, seen in self.telemetry.items()]
            streams += [(truck, node, "heartbeat-missing", seen) for truck, nodes in self.heartbeats.items()
                        for node, seen in nodes.items()]
            for truck, node, alarm, seen in streams:
                if not self.days.expected(truck) or not seen.armed:
                    continue  # a truck absent from today's tech zone, or a stream not seen since the move
                if seen.last is None or seen.alarming or now - seen.last < self.stale_after_s:
                    continue
                seen.alarming = True
                raised.append(self._alarm({"alarm": alarm, "state": "ALARM", "truck": truck, "node": node,
                                           "last_seen": _iso(seen.last), "silent_for_s": round(now - seen.last, 1),
                                           "stale_after_s": self.stale_after_s}, now))
            if self.watch is not None:
                self._notify(self.watch.tick(now, self._streams(now)), now)
        return raised

    def _entry(self, body: Any, source: str, now: float, poster: str | None = None) -> dict[str, Any]:
        entry = {"index": self.sequence, "received_at": _iso(now), "source": source, "body": body}
        if poster is not None:
            entry["poster"] = poster
        self.sequence += 1
        return entry

    def _alarm(self, body: dict[str, Any], now: float) -> dict[str, Any]:
        entry = self._entry(body, "standin", now)
        self.alarms.append(entry)
        return entry

    def receive(self, body: Any, poster: str = OPERATOR) -> dict[str, Any]:
        """An alert posted by truckctl (anything) or by a truck (a JSON object about itself only)."""
        if poster != OPERATOR:
            if not isinstance(body, dict):
                raise Refused(400, "a truck posts a JSON object")
            if body.get("truck", poster) != poster:
                raise Refused(403, "a truck posts alerts about itself only")
            body = {**body, "truck": poster}
        with self.lock:
            entry = self._entry(body, "post", self.clock(), poster)
            self.posted.setdefault(poster, deque(maxlen=MAX_POSTED)).append(entry)
            return entry

    def _visible(self, principal: str) -> list[dict[str, Any]]:
        alarms = [a for a in self.alarms if principal == OPERATOR or a["body"].get("truck") == principal]
        alarms += [n for n in self.notices if principal == OPERATOR or n["body"]["incident"]["truck"] == principal]
        posted = [e for poster, entries in self.posted.items() if principal in (OPERATOR, poster) for e in entries]
        return sorted(alarms + posted, key=lambda e: int(e["index"]))

    def status(self, principal: str = OPERATOR) -> dict[str, Any]:
        now = self.clock()
        with self.lock:
            trucks = {
                truck: {
                    "topic_prefix": self.prefixes[truck],
                    "telemetry": self.telemetry[truck].view(now),
                    "heartbeats": {node: seen.view(now) for node, seen in sorted(self.heartbeats[truck].items())},
                    "counts": {"telemetry": self.telemetry[truck].count,
                               "heartbeat": sum(s.count for s in self.heartbeats[truck].values()),
                               "heartbeat_dropped": self.dropped[truck]},
                    **({"evidence": self.watch.view(truck, now)} if self.watch is not None else {}),
                }
                for truck in self.prefixes if principal in (OPERATOR, truck)
            }
            document: dict[str, Any] = {"time": _iso(now), "stale_after_s": self.stale_after_s,
                                        "mqtt_connected": self.mqtt_connected, "trucks": trucks,
                                        "alerts": len(self._visible(principal)),
                                        **self.days.view(None if principal == OPERATOR else principal)}
            if self.watch is not None:
                held = self.watch.book.held()
                document["incidents"] = {key: [i for i in held[key] if principal in (OPERATOR, i["truck"])]
                                         for key in ("open", "recent")}
                document["notifications"] = sum(1 for n in self.notices if principal in (
                    OPERATOR, n["body"]["incident"]["truck"]))
            return document

    def alert_list(self, principal: str = OPERATOR) -> list[dict[str, Any]]:
        with self.lock:
            return self._visible(principal)


# ---- the stage of the day: moves of the lab, per-stage counts -----------------------------------

MAX_STAGES = 64  # a race has about 21; a stage visited twice keeps one record
STAGE_RECENT = 50  # per stage and truck: the last telemetry payloads, and the last smoke-check markers


class StageDays:
    """Which stage the lab is on, which trucks it expects, and what each stage received, per truck.
    Called under the Tracker's lock."""

    def __init__(self, trucks: list[str], stage: str | None = None) -> None:
        self.stage = stage
        self.active = set(trucks)
        self.stages: dict[str, dict[str, dict[str, Any]]] = {}

    def expected(self, truck: str) -> bool:
        return truck in self.active

    def count(self, truck: str, kind: str, now: float, payload: str) -> None:
        stage = self.stage or "unstaged"
        if stage not in self.stages and len(self.stages) >= MAX_STAGES:
            del self.stages[next(iter(self.stages))]
        row = self.stages.setdefault(stage, {}).setdefault(truck, {
            "telemetry": 0, "heartbeat": 0, "first_at": _iso(now), "recent_telemetry": deque(maxlen=STAGE_RECENT),
            "markers": deque(maxlen=STAGE_RECENT)})
        row[kind] += 1
        row["last_at"] = _iso(now)
        if kind == "telemetry":
            row["recent_telemetry"].append(payload[:PAYLOAD_EXCERPT])
            if '"smoke"' in payload:  # a run's smoke check: kept apart, so a busy feed never pushes it out
                row["markers"].append(payload[:PAYLOAD_EXCERPT])

    def view(self, truck: str | None) -> dict[str, Any]:
        """The current stage, today's trucks and each stage's counts (a truck's certificate: its own)."""
        stages = {stage: {t: {**row, "recent_telemetry": list(row["recent_telemetry"]), "markers": list(row["markers"])}
                          for t, row in rows.items() if truck in (None, t)}
                  for stage, rows in self.stages.items()}
        return {"stage": self.stage, "expected_trucks": sorted(self.active if truck is None else self.active & {truck}),
                "stages": stages}


def move(tracker: Tracker, config: dict[str, Any]) -> list[str]:
    """Move the stand-in to the config's stage: trucks it has not met are added (their topics returned,
    to subscribe), today's trucks are expected, and every stream must be seen again before its silence
    alarms (the day starts; a truck absent today, or re-addressed during the move, raises nothing).
    What was received is kept."""
    with tracker.lock:
        new = [truck for truck in config["prefixes"] if truck not in tracker.prefixes]
        for truck, prefix in config["prefixes"].items():
            tracker.prefixes.setdefault(truck, prefix)
            tracker.telemetry.setdefault(truck, Seen())
            tracker.dropped.setdefault(truck, 0)
            nodes = tracker.heartbeats.setdefault(truck, {})
            for node in config["nodes"].get(truck, []):
                nodes.setdefault(node, Seen())
        if config.get("stage") != tracker.days.stage:
            for seen in [*tracker.telemetry.values(), *(s for n in tracker.heartbeats.values() for s in n.values())]:
                seen.armed = False
            for truck in set(tracker.prefixes) - set(config["prefixes"]):
                tracker.telemetry[truck].alarming = False
                for seen in tracker.heartbeats[truck].values():
                    seen.alarming = False
        tracker.days.stage = config.get("stage")
        tracker.days.active = set(config["prefixes"])
        if tracker.watch is not None and config.get("topology") is not None:  # today's trucks, LANs, addresses
            tracker.watch.topology = Topology.from_dict(config["topology"])
    return [f"{tracker.prefixes[t]}/{kind}{suffix}" for t in new for kind in ("telemetry", "heartbeat")
            for suffix in ("", "/#")] + [f"{tracker.prefixes[t]}/evidence/#" for t in new if tracker.watch is not None]


def _node_from(payload: str) -> str:
    try:
        data = json.loads(payload)
    except ValueError:
        return "unknown"
    if isinstance(data, dict):
        for key in ("node", "host", "hostname"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])[:64]
    return "unknown"


# ---- HTTP ------------------------------------------------------------------------------------

@dataclass
class Access:
    """Who may call: certificate CN -> principal (a truck's name, or OPERATOR), and the TLS files."""

    principals: dict[str, str]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    crl_file: str | None = None
    _context: ssl.SSLContext | None = None
    _crl_mtime: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def context(self) -> ssl.SSLContext | None:
        """The server's TLS context, rebuilt when the CRL changes (a revocation takes effect at once)."""
        if self.ca_file is None:
            return None
        mtime = os.stat(self.crl_file).st_mtime if self.crl_file else None
        with self._lock:
            if self._context is None or mtime != self._crl_mtime:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
                context.load_verify_locations(cafile=self.ca_file)
                if self.crl_file:
                    context.load_verify_locations(cafile=self.crl_file)
                    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
                self._context, self._crl_mtime = context, mtime
            return self._context

    def principal(self, peer: dict[str, Any] | None) -> str | None:
        for rdn in (peer or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return self.principals.get(value)
        return None


class Budget:
    """A reader that refuses to read past a byte budget (request line + headers, then the body)."""

    def __init__(self, raw: Any, limit: int) -> None:
        self.raw, self.left = raw, limit

    def _allow(self, size: int | None) -> int:
        if self.left <= 0:
            raise Refused(431, "request too large")
        return self.left if size is None or size < 0 else min(size, self.left)

    def readline(self, size: int | None = -1) -> bytes:
        line: bytes = self.raw.readline(self._allow(size))
        self.left -= len(line)
        if self.left <= 0 and not line.endswith(b"\n"):
            raise Refused(431, "request line or headers too large")
        return line

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self.raw.read(self._allow(size))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.raw.close()


class StandinServer(ThreadingHTTPServer):
    """At most MAX_CONNECTIONS at once (more are closed at accept); TLS handshakes in the worker
    thread, under the connection's deadline, so a silent client never holds the accept loop."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], tracker: Tracker, access: Access,
                 max_connections: int = MAX_CONNECTIONS, deadline_s: float = CONNECTION_DEADLINE_S) -> None:
        self.tracker, self.access, self.deadline_s = tracker, access, deadline_s
        self.slots = threading.BoundedSemaphore(max_connections)
        # busy: over the connection cap; tls: no or a bad certificate; forbidden: a caller reaching for
        # what is not its own; bad_request: refused by a bound; cut: the deadline passed; broken: other.
        self.refused = {"busy": 0, "tls": 0, "forbidden": 0, "bad_request": 0, "cut": 0, "broken": 0}
        super().__init__(address, make_handler(tracker))

    def count(self, what: str) -> None:
        with self.tracker.lock:
            self.refused[what] += 1

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.slots.acquire(blocking=False):
            return True
        self.count("busy")
        return False

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind = sys.exc_info()[0]
        self.count("tls" if kind is not None and issubclass(kind, ssl.SSLError) else "broken")


def make_handler(tracker: Tracker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "truckctl-standin/2"
        protocol_version = "HTTP/1.0"  # one request per connection
        server: StandinServer
        principal: str | None = None

        def setup(self) -> None:
            self.request_version, self.requestline = "HTTP/1.0", ""  # for a reply refused before parsing
            self.request.settimeout(SOCKET_TIMEOUT_S)
            # The deadline shuts the connection down through a duplicate of its descriptor: TLS wrapping
            # detaches the plain socket object, and a handshake can be what the client drags out.
            self._cutter = self.request.dup()
            self._timer = threading.Timer(self.server.deadline_s, self._cut)
            self._timer.daemon = True
            self._timer.start()
            try:
                context = self.server.access.context()
                if context is not None:
                    self.request = context.wrap_socket(self.request, server_side=True)  # under the deadline
                    self.principal = self.server.access.principal(self.request.getpeercert())
                else:
                    self.principal = OPERATOR  # unit tests of the logic only: the service always has TLS
            except BaseException:
                self._timer.cancel()
                self._cutter.close()
                self.request.close()
                raise
            super().setup()
            self.rfile = Budget(self.rfile, MAX_HEAD)  # type: ignore[assignment]

        def finish(self) -> None:
            self._timer.cancel()
            with contextlib.suppress(OSError):
                super().finish()
            self.request.close()
            self._cutter.close()

        def _cut(self) -> None:
            """The connection's deadline passed: shut it down (the handler's blocked read returns)."""
            self.server.count("cut")
            with contextlib.suppress(OSError):
                self._cutter.shutdown(socket.SHUT_RDWR)

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except Refused as exc:  # by a bound on the request line or headers
                self.close_connection = True
                self._refuse(exc)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            self.server.count("bad_request")  # refused by the stdlib's own parser (more than 100 headers, ...)
            super().send_error(code, message, explain)

        def _refuse(self, exc: Refused) -> None:
            self.server.count("forbidden" if exc.status == 403 else "bad_request")
            self._send(exc.status, {"error": str(exc)})
            self._drain()

        def _drain(self) -> None:
            """Read (and drop) what the client is still sending, a bounded amount for a short while: closing
            on unread data makes the kernel reset the connection, and the client would lose the answer."""
            with contextlib.suppress(OSError, ValueError):
                self.wfile.flush()
                self.connection.settimeout(0.5)
                left = MAX_BODY + MAX_HEAD
                while left > 0 and (chunk := self.connection.recv(min(left, 16384))):
                    left -= len(chunk)

        def _send(self, code: int, document: Any) -> None:
            body = (json.dumps(document, indent=1) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _who(self) -> str:
            if self.principal is None:
                raise Refused(403, "this certificate is not a truck's nor truckctl's")
            return self.principal

        def do_GET(self) -> None:
            try:
                who = self._who()
                path = self.path.split("?", 1)[0]
                if path == "/status":
                    document: Any = tracker.status(who)
                    if who == OPERATOR:
                        document["refused"] = dict(self.server.refused)
                    self._send(200, document)
                elif path == "/alerts":
                    self._send(200, {"alerts": tracker.alert_list(who)})
                elif path == "/healthz":
                    self._send(200, {"ok": True, "mqtt_connected": tracker.mqtt_connected})
                else:
                    self._send(404, {"error": "not found"})
            except Refused as exc:
                self._refuse(exc)

        def do_POST(self) -> None:
            try:
                who = self._who()
                if self.path.split("?", 1)[0] != "/alerts":
                    raise Refused(404, "not found")
                raw = self._body().decode("utf-8", "replace")
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                self._send(202, {"ok": True, "index": tracker.receive(body, who)["index"]})
            except Refused as exc:
                self._refuse(exc)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding") is not None:
                raise Refused(501, "send a Content-Length, not a Transfer-Encoding")
            lengths = self.headers.get_all("Content-Length") or []
            if len(lengths) != 1:
                raise Refused(411, "exactly one Content-Length is required")
            text = lengths[0].strip()
            if not (text.isascii() and text.isdigit()):
                raise Refused(400, "Content-Length must be a non-negative integer")
            length = int(text)
            if length > MAX_BODY:
                raise Refused(413, f"body larger than {MAX_BODY} bytes")
            self.rfile.left = length  # type: ignore[attr-defined]
            data: bytes = self.rfile.read(length) if length else b""
            if len(data) != length:
                raise Refused(400, "body shorter than its Content-Length")
            return data

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep the journal for alerts, not for every poll

    return Handler


def start_mqtt(tracker: Tracker, host: str, port: int) -> Any:
    import paho.mqtt.client as mqtt

    try:  # paho 2.x wants the callback API version; VERSION1 keeps 1.x-style callbacks for both
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id="truckctl-standin")
    except AttributeError:
        client = mqtt.Client(client_id="truckctl-standin")

    def on_connect(client: Any, userdata: Any, flags: Any, rc: int) -> None:
        tracker.mqtt_connected = rc == 0
        for topic in tracker.topics():
            client.subscribe(topic, qos=1)

    def on_disconnect(client: Any, userdata: Any, rc: int) -> None:
        tracker.mqtt_connected = False

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        tracker.on_message(message.topic, message.payload)

    client.on_connect, client.on_disconnect, client.on_message = on_connect, on_disconnect, on_message
    # Back first after a broker restart (a drill's CRL reload restarts it): the gateways reconnect about a
    # second later and deliver their queued evidence at once; a subscriber not back yet would miss it
    # (a persistent session cannot keep it: mosquitto 2.0 with per_listener_settings, eclipse-mosquitto #2618).
    first_retry_s: Any = 0.1  # paho sleeps floats; its signature says int
    client.reconnect_delay_set(min_delay=first_retry_s, max_delay=5)
    client.connect_async(host, port, keepalive=30)  # the broker may still be starting: paho retries
    client.loop_start()
    return client


def main(argv: list[str]) -> int:
    with open(argv[1] if len(argv) > 1 else "/etc/truckctl-standin/config.json") as handle:
        config = json.load(handle)
    tracker = Tracker(config["prefixes"], float(config["stale_after_s"]), nodes=config["nodes"],
                      topology=config.get("topology"))
    tracker.days.stage = config.get("stage")
    client = start_mqtt(tracker, config["mqtt_host"], int(config["mqtt_port"]))
    tls = config["tls"]
    access = Access(config["principals"], tls["ca"], tls["cert"], tls["key"], tls["crl"])
    path = argv[1] if len(argv) > 1 else "/etc/truckctl-standin/config.json"
    loaded = os.stat(path).st_mtime
    refused_file = config.get("refused_file")
    refused_seen: float | None = None

    def reread_refused() -> None:
        """The trucks whose certificate the broker refuses, reread when the file changes (a drill, a revoke)."""
        nonlocal refused_seen
        if not refused_file:
            return
        try:
            mtime = os.stat(refused_file).st_mtime
            if mtime != refused_seen:
                with open(refused_file) as handle:
                    tracker.set_refused(json.load(handle))
                refused_seen = mtime
                print(f"truckctl stand-in: refusing the certificate of {sorted(tracker.refused) or 'no truck'}",
                      flush=True)
        except FileNotFoundError:
            tracker.set_refused({})
            refused_seen = None
        except (OSError, ValueError):
            pass  # half-written: the next round reads it

    def checker() -> None:
        nonlocal loaded
        while True:
            reread_refused()
            for alert in tracker.check():
                print("alarm:", json.dumps(alert["body"]), flush=True)
            with contextlib.suppress(OSError, ValueError, KeyError):
                if os.stat(path).st_mtime != loaded:  # `lab up` moved the lab to another stage
                    loaded = os.stat(path).st_mtime
                    with open(path) as handle:
                        moved = json.load(handle)
                    for topic in move(tracker, moved):
                        client.subscribe(topic, qos=1)
                    access.principals = {**access.principals, **moved["principals"]}
                    print(f"truckctl stand-in: on {moved.get('stage')}", flush=True)
            time.sleep(float(config.get("check_interval_s", 1)))

    threading.Thread(target=checker, daemon=True, name="checker").start()
    server = StandinServer((config["http_host"], int(config["http_port"])), tracker, access)
    print(f"truckctl stand-in: https on {config['http_host']}:{config['http_port']}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
