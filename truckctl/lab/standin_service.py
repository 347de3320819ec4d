"""The cloud stand-in's service, run inside the stand-in node (Debian's python3 + python3-paho-mqtt).

Stdlib plus paho only, and compatible with paho 1.6 (Debian 12) and 2.x. It plays, for the lab:
- the ingest's view: subscribes on the local broker to every truck's telemetry and heartbeat
  topics, recording last-seen per truck and per node and message counts (GET /status);
- the alert receiver that stands in for the webhook / SNS subscription (POST /alerts, GET /alerts);
- the CloudWatch alarms: an alert of its own when a truck's telemetry or a node's heartbeat has not
  been seen for stale_after_s after having been seen, and another when it comes back.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 64 * 1024
MAX_ALERTS = 1000
PAYLOAD_EXCERPT = 512
RECENT = 20


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
        self.alarming = False

    def hit(self, now: float, topic: str, payload: str) -> None:
        self.last, self.topic, self.payload = now, topic, payload[:PAYLOAD_EXCERPT]
        self.recent.append(self.payload)
        self.count += 1

    def view(self, now: float) -> dict[str, Any]:
        return {"last_seen": _iso(self.last), "age_s": None if self.last is None else round(now - self.last, 1),
                "count": self.count, "last_topic": self.topic or None, "last_payload": self.payload or None,
                "recent_payloads": list(self.recent),
                "alarm": self.alarming}


class Tracker:
    """What the stand-in knows; every method is thread-safe (MQTT, HTTP and the checker share it)."""

    def __init__(self, prefixes: dict[str, str], stale_after_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.prefixes = prefixes  # truck -> topic prefix
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.lock = threading.Lock()
        self.telemetry = {truck: Seen() for truck in prefixes}
        self.heartbeats: dict[str, dict[str, Seen]] = {truck: {} for truck in prefixes}
        self.alerts: list[dict[str, Any]] = []
        self.mqtt_connected = False

    def topics(self) -> list[str]:
        return [f"{p}/{kind}{suffix}" for p in self.prefixes.values() for kind in ("telemetry", "heartbeat")
                for suffix in ("", "/#")]

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
                elif kind == "heartbeat":
                    node = rest or _node_from(text)
                    seen = self.heartbeats[truck].setdefault(node, Seen())
                    self._resume(seen, now, "heartbeat-resumed", truck, node)
                    seen.hit(now, topic, text)
            return

    def _resume(self, seen: Seen, now: float, alarm: str, truck: str, node: str | None) -> None:
        if seen.alarming:
            seen.alarming = False
            self._alert({"alarm": alarm, "state": "OK", "truck": truck, "node": node,
                         "silent_for_s": round(now - (seen.last or now), 1)}, "standin", now)

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
                if seen.last is None or seen.alarming or now - seen.last < self.stale_after_s:
                    continue
                seen.alarming = True
                raised.append(self._alert({"alarm": alarm, "state": "ALARM", "truck": truck, "node": node,
                                           "last_seen": _iso(seen.last), "silent_for_s": round(now - seen.last, 1),
                                           "stale_after_s": self.stale_after_s}, "standin", now))
        return raised

    def receive(self, body: Any) -> dict[str, Any]:
        with self.lock:
            return self._alert(body, "post", self.clock())

    def _alert(self, body: Any, source: str, now: float) -> dict[str, Any]:
        entry = {"index": len(self.alerts), "received_at": _iso(now), "source": source, "body": body}
        self.alerts.append(entry)
        del self.alerts[:-MAX_ALERTS]
        return entry

    def status(self) -> dict[str, Any]:
        now = self.clock()
        with self.lock:
            trucks = {
                truck: {
                    "topic_prefix": self.prefixes[truck],
                    "telemetry": self.telemetry[truck].view(now),
                    "heartbeats": {node: seen.view(now) for node, seen in sorted(self.heartbeats[truck].items())},
                    "counts": {"telemetry": self.telemetry[truck].count,
                               "heartbeat": sum(s.count for s in self.heartbeats[truck].values())},
                }
                for truck in self.prefixes
            }
            return {"time": _iso(now), "stale_after_s": self.stale_after_s, "mqtt_connected": self.mqtt_connected,
                    "trucks": trucks, "alerts": len(self.alerts)}

    def alert_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.alerts)


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


def make_handler(tracker: Tracker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "truckctl-standin/1"

        def _send(self, code: int, document: Any) -> None:
            body = (json.dumps(document, indent=1) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/status":
                self._send(200, tracker.status())
            elif path == "/alerts":
                self._send(200, {"alerts": tracker.alert_list()})
            elif path == "/healthz":
                self._send(200, {"ok": True, "mqtt_connected": tracker.mqtt_connected})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/alerts":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, {"error": "body too large"})
                return
            raw = self.rfile.read(length).decode("utf-8", "replace")
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw
            self._send(202, {"ok": True, "index": tracker.receive(body)["index"]})

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
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    client.connect_async(host, port, keepalive=30)  # the broker may still be starting: paho retries
    client.loop_start()
    return client


def main(argv: list[str]) -> int:
    with open(argv[1] if len(argv) > 1 else "/etc/truckctl-standin/config.json") as handle:
        config = json.load(handle)
    tracker = Tracker(config["prefixes"], float(config["stale_after_s"]))
    start_mqtt(tracker, config["mqtt_host"], int(config["mqtt_port"]))

    def checker() -> None:
        while True:
            for alert in tracker.check():
                print("alarm:", json.dumps(alert["body"]), flush=True)
            time.sleep(float(config.get("check_interval_s", 1)))

    threading.Thread(target=checker, daemon=True, name="checker").start()
    server = ThreadingHTTPServer((config["http_host"], int(config["http_port"])), make_handler(tracker))
    print(f"truckctl stand-in: http on {config['http_host']}:{config['http_port']}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
