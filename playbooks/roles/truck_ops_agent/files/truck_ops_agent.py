#!/usr/bin/python3
"""truck-ops-agent: the evidence only a truck's gateway can see, for race-day diagnosis.

Runs on every gateway (Debian's python3 and python3-paho-mqtt only; paho 1.6 and 2.x). Once a second,
and at once on every change it notices, it writes its evidence document (schema v1 of CONTRACT-14)
atomically to /run/truck-ops/evidence.json and publishes the same document, QoS 1, on
`<truck topic prefix>/evidence/<gateway>` over its OWN TLS connection to the cloud endpoint with the
truck's certificate (never through the broker's bridge, so it still reports when the bridge or the
broker is the problem). While the cloud cannot be reached the documents wait in a bounded queue
(oldest dropped first, counted) and go out in order when it is back.

What it watches:
- uplink: carrier and IPv4 address of the uplink interface (sysfs and an ioctl);
- cloud: its own connection, and why it is down (unreachable: no carrier, timeout, refused, no route;
  tls-refused: the handshake failed, e.g. a revoked or expired certificate or a wrong CA);
- broker: its own subscription to the local broker (telemetry/#, heartbeat/#, the store's size);
- bridge: an established TCP connection of the broker's user to the cloud port (/proc/net/tcp*),
  and the messages the broker holds (its $SYS store count);
- feed: telemetry messages in the last 10 s and the age of the last one;
- nodes: each node of the truck, reachable (it answered ARP lately) and the age of its heartbeat;
- clock: each node's offset, its heartbeat's timestamp against this gateway's clock on arrival;
- conflicts and neighbours: the continuous address-conflict watch on every truck LAN interface
  (raw ARP: every frame's sender heard, the stage's addresses probed every second): two MACs for one
  address, or a MAC other than the one learned for a stage address, is a conflict at once.

Every string from the configuration or the network is data: nothing here runs or templates it.
The private key is only ever a file path handed to the TLS library; the evidence never holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import pwd
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

SCHEMA = 1
WRITE_EVERY_S = 1.0
MIN_WRITE_GAP_S = 0.1  # changes in a burst are written at most this often
CLAIM_WINDOW_S = 5.0  # an ARP claim counts this long (a conflict resolves this long after it stops)
IN_SYNC_S = 1.5  # a heartbeat's offset at or above this is read as it is (whole-second stamps: -1..0 in sync)
OFFSET_WINDOW_S = 60.0  # one further behind: the best of this long (a late heartbeat is no clock reading)
REACHABLE_WITHIN_S = 3.0  # a node is reachable when it answered ARP this recently (probes every second)
PROBE_EVERY_S = 1.0
FEED_WINDOW_S = 10.0
MAX_NEIGHBOURS = 256
MAX_CONFLICTS = 64
MAX_ADDRESSES = 4096  # addresses the ARP book keeps claims for (a /20 of chatter at most)
MAX_DETAIL = 200
QUEUE_MAX = 600  # ten minutes of evidence at one document a second
INFLIGHT = 10
KEEPALIVE_S = 5
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SIOCGIFADDR = 0x8915
UNREACHABLE_ERRNOS = {errno.ETIMEDOUT, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                      errno.ENETDOWN, errno.EHOSTDOWN, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}
Clock = Callable[[], float]


def short(text: object) -> str:
    """A bounded, one-line excerpt of an error for the evidence."""
    return " ".join(str(text).split())[:MAX_DETAIL]


# ---- the feed, the heartbeats and the broker's store ----------------------------------------------

class FeedMeter:
    """Telemetry arrivals: how many in the last FEED_WINDOW_S and how long since the last one."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.last: float | None = None
        self.lock = threading.Lock()

    def hit(self, now: float) -> None:
        with self.lock:
            self.times.append(now)
            self.last = now
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self.times and now - self.times[0] > FEED_WINDOW_S:
            self.times.popleft()

    def view(self, now: float) -> dict[str, Any]:
        with self.lock:
            self._trim(now)
            age = None if self.last is None else round(max(0.0, now - self.last), 1)
            return {"messages_last_10s": len(self.times), "last_message_age_s": age}


def heartbeat_timestamp(payload: bytes) -> float | None:
    """The `ts` a heartbeat carries (unix seconds), or None if it has none."""
    try:
        data = json.loads(payload.decode("utf-8", "replace"))
    except ValueError:
        return None
    ts = data.get("ts") if isinstance(data, dict) else None
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    return float(ts)


class Heartbeats:
    """The last heartbeat of each of the truck's nodes: when it arrived, and the node's clock offset
    (its timestamp minus this gateway's clock at arrival; the heartbeat stamps whole seconds, so the
    offset of a node in sync is between -1 and 0 s).

    A heartbeat that arrives late (its TCP replies lost on a contested address, a flaky LAN) reads as a
    clock behind by its delay; a delay can never make a clock read ahead. So a reading at or above
    -IN_SYNC_S is taken as it is (a clock ahead, or back in sync, at once), and one further behind is
    taken as the best reading of the last OFFSET_WINDOW_S (a clock really behind shows in every one)."""

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes = list(nodes)
        self.arrived: dict[str, float] = {}
        self.offsets: dict[str, float] = {}
        self.readings: dict[str, deque[tuple[float, float]]] = {}  # node -> (arrival, raw offset)
        self.lock = threading.Lock()

    def hit(self, node: str, now: float, payload: bytes) -> bool:
        """Record a heartbeat of `node` (a node of another truck or of no truck is ignored)."""
        if node not in self.nodes:
            return False
        ts = heartbeat_timestamp(payload)
        with self.lock:
            self.arrived[node] = now
            if ts is not None:
                raw = ts - now
                readings = self.readings.setdefault(node, deque(maxlen=64))
                readings.append((now, raw))
                while readings[0][0] < now - OFFSET_WINDOW_S:  # (the newest stays: never empty)
                    readings.popleft()
                self.offsets[node] = round(raw if raw >= -IN_SYNC_S else max(r for _, r in readings), 1)
        return True

    def ages(self, now: float) -> dict[str, float | None]:
        with self.lock:
            return {n: (None if n not in self.arrived else round(max(0.0, now - self.arrived[n]), 1))
                    for n in self.nodes}

    def clock(self) -> dict[str, dict[str, float | None]]:
        with self.lock:
            return {n: {"offset_s": self.offsets.get(n)} for n in self.nodes}


# ---- the address-conflict watch -----------------------------------------------------------------

class ArpBook:
    """Who claims which address on the truck LANs, from every ARP frame's sender fields.

    watched: the stage's addresses (address -> node name), each claim of which is checked;
    own: this gateway's addresses and MACs (authoritative). A stage address's MAC is learned from
    the first single claimant; afterwards a second MAC, or another MAC alone, is a conflict.
    Every address of the LANs is checked for two MACs. A conflict resolves when the foreign claim
    has not been heard for CLAIM_WINDOW_S."""

    def __init__(self, watched: dict[str, str], own: dict[str, str], networks: Iterable[str]) -> None:
        self.watched = dict(watched)
        self.known: dict[str, str] = {addr: mac.lower() for addr, mac in own.items()}
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.claims: dict[str, dict[str, float]] = {}
        self.since: dict[str, float] = {}
        self.lock = threading.Lock()

    def relevant(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return not ip.is_unspecified and any(ip in net for net in self.networks)

    def observe(self, address: str, mac: str, now: float) -> bool:
        """Note that `mac` claims `address`; True when this opens a conflict (for an immediate write)."""
        if not self.relevant(address):
            return False
        mac = mac.lower()
        with self.lock:
            claims = self.claims.get(address)
            if claims is None:
                if len(self.claims) >= MAX_ADDRESSES:
                    return False
                claims = self.claims[address] = {}
            claims[mac] = now
            if address in self.watched and address not in self.known and len(self._current(address, now)) == 1:
                self.known[address] = mac
            opened = address not in self.since and self._conflicting(address, now)
            if opened:
                self.since[address] = now
            return opened

    def _current(self, address: str, now: float) -> set[str]:
        return {mac for mac, seen in self.claims.get(address, {}).items() if now - seen <= CLAIM_WINDOW_S}

    def _conflicting(self, address: str, now: float) -> bool:
        macs = self._current(address, now)
        known = self.known.get(address)
        return len(macs) >= 2 or (known is not None and bool(macs) and macs != {known})

    def owner(self, mac: str) -> str | None:
        """The node a MAC belongs to, where the watch knows it (a learned or own binding)."""
        for address, known in self.known.items():
            if known == mac and address in self.watched:
                return self.watched[address]
        return None

    def conflicts(self, now: float) -> list[dict[str, Any]]:
        with self.lock:
            for address in list(self.since):
                if not self._conflicting(address, now):
                    del self.since[address]
            for address in self.claims:
                if address not in self.since and self._conflicting(address, now):
                    self.since[address] = now
            found = []
            for address in sorted(self.since, key=lambda a: (self.since[a], a))[:MAX_CONFLICTS]:
                macs = sorted(self._current(address, now))
                owners = {mac: who for mac in macs if (who := self.owner(mac)) is not None}
                found.append({"address": address, "macs": macs, "since": round(self.since[address], 3),
                              "owners": owners})
            return found

    def neighbours(self, now: float) -> list[dict[str, str]]:
        with self.lock:
            rows = [{"address": address, "mac": mac} for address, claims in self.claims.items()
                    for mac, seen in claims.items() if now - seen <= CLAIM_WINDOW_S]
        rows.sort(key=lambda r: (ipaddress.ip_address(r["address"]), r["mac"]))
        return rows[:MAX_NEIGHBOURS]

    def answered(self, address: str, now: float) -> bool:
        with self.lock:
            return any(now - seen <= REACHABLE_WITHIN_S for seen in self.claims.get(address, {}).values())

    def forget_old(self, now: float) -> None:
        with self.lock:
            for address in list(self.claims):
                claims = self.claims[address]
                for mac in [m for m, seen in claims.items() if now - seen > CLAIM_WINDOW_S]:
                    del claims[mac]
                if not claims:
                    del self.claims[address]


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_arp(frame: bytes) -> tuple[int, str, str] | None:
    """(operation, sender address, sender MAC) of an Ethernet ARP frame for IPv4, else None."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, oper, sha, spa = struct.unpack("!HHBBH6s4s", frame[14:32])
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    return oper, socket.inet_ntoa(spa), mac_text(sha)


def arp_request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    header = b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_ARP)
    return header + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(src_ip),
                                b"\0" * 6, socket.inet_aton(target_ip))


# ---- the interfaces and the bridge --------------------------------------------------------------

def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, ValueError):
        return None


def carrier(iface: str) -> bool:
    return read_text(f"/sys/class/net/{iface}/carrier") == "1"  # unreadable while the link is down


def ipv4_address(iface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", iface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def interface_mac(iface: str) -> str | None:
    return read_text(f"/sys/class/net/{iface}/address")


def established_to_port(tables: Iterable[str], port: int, uid: int | None) -> bool:
    """An ESTABLISHED TCP connection (state 01) to remote `port`, owned by `uid`, in /proc/net/tcp* text."""
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8 or fields[3] != "01":
                continue
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and (uid is None or int(fields[7]) == uid):
                return True
    return False


def bridge_connected(port: int, user: str) -> bool:
    try:
        uid: int | None = pwd.getpwnam(user).pw_uid
    except KeyError:
        uid = None
    tables = [t for t in (read_text("/proc/net/tcp"), read_text("/proc/net/tcp6")) if t]
    return established_to_port(tables, port, uid)


# ---- the outgoing queue -------------------------------------------------------------------------

class Outbox:
    """Documents for the cloud, in order, bounded: the oldest goes first when full (counted).

    A document leaves the box only when the cloud acknowledged it (PUBACK); after a reconnect every
    unacknowledged one is sent again, in order (QoS 1: at least once; `seq` lets the reader dedupe)."""

    def __init__(self, limit: int = QUEUE_MAX) -> None:
        self.limit = limit
        self.items: deque[list[Any]] = deque()  # [payload, mid or None]
        self.dropped = 0
        self.lock = threading.Lock()

    def put(self, payload: bytes) -> None:
        with self.lock:
            self.items.append([payload, None])
            while len(self.items) > self.limit:
                self.items.popleft()
                self.dropped += 1

    def reset(self) -> None:
        """A new connection: nothing is in flight any more."""
        with self.lock:
            for item in self.items:
                item[1] = None

    def to_send(self, window: int = INFLIGHT) -> list[list[Any]]:
        """The next unsent documents, in order, keeping at most `window` in flight."""
        with self.lock:
            inflight = sum(1 for item in self.items if item[1] is not None)
            unsent = [item for item in self.items if item[1] is None]
            return unsent[:max(0, window - inflight)]

    def sent(self, item: list[Any], mid: int) -> None:
        with self.lock:
            item[1] = mid

    def acked(self, mid: int) -> None:
        with self.lock:
            for item in self.items:
                if item[1] == mid:
                    self.items.remove(item)
                    return

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


# ---- the connections ------------------------------------------------------------------------------

def classify(exc: BaseException) -> str:
    """unreachable | tls-refused | other, for an error while connecting to the cloud."""
    if isinstance(exc, ssl.SSLError):
        return "tls-refused"
    if isinstance(exc, (socket.timeout, TimeoutError, socket.gaierror)):
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno in UNREACHABLE_ERRNOS:
        return "unreachable"
    return "other"


def lost(socket_errors: list[str], accepted: bool, rc: int) -> tuple[str, str]:
    """(error, detail) for a connection paho reports lost: a TLS alert before the broker accepted
    the session is the certificate (or CA) refused; anything else is the path to the cloud."""
    cause = socket_errors[-1] if socket_errors else f"paho code {rc}"
    if not accepted and any(mark in cause for mark in ("SSL", "TLS", "alert")):
        return "tls-refused", f"the cloud refused the TLS session: {cause}"
    return "unreachable", f"connection lost ({cause})"


def new_client(client_id: str, clean_session: bool = True) -> Any:
    import paho.mqtt.client as mqtt

    try:  # paho 2.x wants the callback API version; VERSION1 keeps 1.x-style callbacks for both
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, clean_session=clean_session)
    except AttributeError:
        return mqtt.Client(client_id=client_id, clean_session=clean_session)


class State:
    """What the threads found, read by the writer; `changed` wakes it for an immediate write."""

    def __init__(self) -> None:
        self.cloud: dict[str, Any] = {"connected": False, "error": "unreachable", "detail": "not connected yet"}
        self.broker_active = False
        self.store_count: int | None = None
        self.changed = threading.Event()
        self.lock = threading.Lock()

    def set_cloud(self, connected: bool, error: str | None, detail: str) -> None:
        new = {"connected": connected, "error": error, "detail": short(detail)}
        with self.lock:
            before, self.cloud = self.cloud, new
        if (before["connected"], before["error"]) != (connected, error):
            log(f"cloud: {'connected' if connected else 'not connected'} ({error or 'ok'}: {new['detail']})")
            self.changed.set()

    def set_broker(self, active: bool) -> None:
        with self.lock:
            before, self.broker_active = self.broker_active, active
            if not active:
                self.store_count = None
        if before != active:
            log(f"local broker: {'connected' if active else 'not connected'}")
            self.changed.set()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class CloudLink:
    """The agent's own TLS MQTT connection to the cloud endpoint, publishing the outbox in order."""

    def __init__(self, config: dict[str, Any], outbox: Outbox, state: State, uplink_up: Callable[[], bool]) -> None:
        self.cloud = config["cloud"]
        self.outbox, self.state, self.uplink_up = outbox, state, uplink_up
        self.topic = f"{config['topic_prefix']}/evidence/{config['node']}"

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cloud["ca_file"])
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cloud["cert_file"], self.cloud["key_file"])
        return context

    def run(self) -> None:
        while True:
            if not self.uplink_up():
                self.state.set_cloud(False, "unreachable", "the uplink has no carrier")
                time.sleep(0.5)
                continue
            try:
                self.once()
            except Exception as exc:  # never let the thread die: the evidence says what happened
                self.state.set_cloud(False, "other", f"{type(exc).__name__}: {exc}")
            time.sleep(1.0)

    def once(self) -> None:
        client = new_client(self.cloud["client_id"])
        client.on_publish = lambda c, u, mid: self.outbox.acked(mid)
        refused: list[int] = []

        def on_connect(c: Any, u: Any, flags: Any, rc: int) -> None:
            if rc == 0:
                self.outbox.reset()
                self.state.set_cloud(True, None, f"connected to {self.cloud['host']}:{self.cloud['port']}")
            else:
                refused.append(rc)
                self.state.set_cloud(False, "other", f"the cloud refused the connection (MQTT code {rc})")

        client.on_connect = on_connect
        socket_errors: list[str] = []
        # paho turns an error on the socket into "connection lost" and only logs its cause: keep that
        # cause, it is how a certificate refused after a TLS 1.3 handshake (alert at the first read) shows.
        client.on_log = lambda c, u, level, text: socket_errors.append(str(text)[:200]) if "socket" in str(
            text) else None
        try:
            client.tls_set_context(self.context())
            client.connect(self.cloud["host"], int(self.cloud["port"]), keepalive=KEEPALIVE_S)
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket errors are OSErrors
            self.state.set_cloud(False, classify(exc), f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                client.disconnect()
            return
        try:
            self.serve(client, refused, socket_errors)
        except (OSError, ValueError) as exc:  # e.g. the server's TLS alert arrives at the first read
            self.state.set_cloud(False, classify(exc), f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()

    def serve(self, client: Any, refused: list[int], socket_errors: list[str]) -> None:
        while True:
            rc = client.loop(timeout=0.2)
            if refused:
                return
            if rc != 0:
                self.state.set_cloud(False, *lost(socket_errors, accepted=self.state.cloud["connected"], rc=rc))
                return
            if not self.uplink_up():
                self.state.set_cloud(False, "unreachable", "the uplink has no carrier")
                return
            if not self.state.cloud["connected"]:
                continue  # CONNACK not there yet
            for item in self.outbox.to_send():
                info = client.publish(self.topic, item[0], qos=1)
                if info.rc != 0:
                    return
                self.outbox.sent(item, info.mid)


class LocalBroker:
    """The agent's subscription to the truck broker on loopback: feed, heartbeats, the store count."""

    def __init__(self, config: dict[str, Any], state: State, feed: FeedMeter, beats: Heartbeats,
                 clock: Clock = time.time) -> None:
        self.config, self.state, self.feed, self.beats, self.clock = config, state, feed, beats, clock

    def on_message(self, topic: str, payload: bytes) -> None:
        now = self.clock()
        if topic.startswith("telemetry/"):
            self.feed.hit(now)
        elif topic.startswith("heartbeat/"):
            self.beats.hit(topic.removeprefix("heartbeat/"), now, payload)
        elif topic == "$SYS/broker/store/messages/count":
            with contextlib.suppress(ValueError):
                self.state.store_count = int(payload.decode("ascii", "replace").strip())

    def start(self) -> Any:
        client = new_client(f"{self.config['node']}-ops-agent")

        def on_connect(c: Any, u: Any, flags: Any, rc: int) -> None:
            self.state.set_broker(rc == 0)
            if rc == 0:
                c.subscribe([("telemetry/#", 0), ("heartbeat/#", 0), ("$SYS/broker/store/messages/count", 0)])

        client.on_connect = on_connect
        client.on_disconnect = lambda c, u, rc: self.state.set_broker(False)
        client.on_message = lambda c, u, msg: self.on_message(msg.topic, msg.payload)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        broker = self.config["broker"]
        client.connect_async(broker["host"], int(broker["port"]), keepalive=KEEPALIVE_S)
        client.loop_start()
        return client


class ArpWatch:
    """One raw ARP socket per truck LAN interface: hears every frame, probes the stage's addresses."""

    def __init__(self, book: ArpBook, ifaces: list[str], probe: dict[str, list[str]], state: State,
                 clock: Clock = time.time) -> None:
        self.book, self.ifaces, self.probe, self.state, self.clock = book, ifaces, probe, state, clock

    def run(self) -> None:
        sockets: dict[Any, str] = {}
        while True:
            for iface in self.ifaces:
                if iface not in sockets.values():
                    with contextlib.suppress(OSError):
                        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
                        sock.bind((iface, 0))
                        sockets[sock] = iface
            try:
                self.cycle(sockets)
            except Exception as exc:  # never let the watch die: start over with fresh sockets
                log(f"arp watch: {short(exc)}")
                for sock in sockets:
                    sock.close()
                sockets = {}
                time.sleep(1.0)

    def cycle(self, sockets: dict[Any, str]) -> None:
        for sock, iface in sockets.items():
            src_mac, src_ip = interface_mac(iface), ipv4_address(iface)
            if not src_mac or not src_ip:
                continue
            raw_mac = bytes.fromhex(src_mac.replace(":", ""))
            for target in self.probe.get(iface, []):
                with contextlib.suppress(OSError):  # a link that is down refuses: the next cycle retries
                    sock.send(arp_request(raw_mac, src_ip, target))
        deadline = time.monotonic() + PROBE_EVERY_S
        while (left := deadline - time.monotonic()) > 0:
            if not sockets:
                time.sleep(left)
                return
            ready, _, _ = select.select(list(sockets), [], [], left)
            for sock in ready:
                frame, address = sock.recvfrom(2048)
                if address[2] == PACKET_OUTGOING:
                    continue  # our own probes
                parsed = parse_arp(frame)
                if parsed and self.book.observe(parsed[1], parsed[2], self.clock()):
                    self.state.changed.set()
        self.book.forget_old(self.clock())


# ---- the document ---------------------------------------------------------------------------------

def assemble(config: dict[str, Any], now: float, seq: int, *, uplink: dict[str, Any], cloud: dict[str, Any],
             broker_active: bool, bridge: dict[str, Any], feed: dict[str, Any],
             reachable: dict[str, bool], beats: Heartbeats, book: ArpBook) -> dict[str, Any]:
    """The evidence document (schema v1), from what the watchers found at `now`."""
    ages = beats.ages(now)
    return {
        "v": SCHEMA, "truck": config["truck"], "node": config["node"], "ts": round(now, 3), "seq": seq,
        "uplink": uplink,
        "cloud": dict(cloud),
        "broker": {"active": broker_active},
        "bridge": bridge,
        "feed": feed,
        "nodes": {name: {"reachable": reachable.get(name, False), "heartbeat_age_s": ages.get(name)}
                  for name in beats.nodes},
        "clock": beats.clock(),
        "conflicts": book.conflicts(now),
        "neighbours": book.neighbours(now),
    }


def semantic(doc: dict[str, Any]) -> Any:
    """The parts of a document whose change is worth an immediate write (not counters or ages)."""
    return (doc["uplink"], doc["cloud"]["connected"], doc["cloud"]["error"], doc["broker"], doc["bridge"]["connected"],
            {n: v["reachable"] for n, v in doc["nodes"].items()},
            [(c["address"], c["macs"]) for c in doc["conflicts"]])


def write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Agent:
    def __init__(self, config: dict[str, Any], clock: Clock = time.time) -> None:
        self.config, self.clock = config, clock
        self.state = State()
        self.feed = FeedMeter()
        self.beats = Heartbeats(n["name"] for n in config["truck_nodes"])
        lans = config["lans"]
        own = {lan["address"]: mac for lan in lans if (mac := interface_mac(lan["iface"]))}
        self.book = ArpBook({n["address"]: n["name"] for n in config["stage_nodes"]}, own,
                            [lan["network"] for lan in lans])
        self.probe = {lan["iface"]: [n["address"] for n in config["stage_nodes"]
                                     if n["address"] != lan["address"] and
                                     ipaddress.ip_address(n["address"]) in ipaddress.ip_network(lan["network"])]
                      for lan in lans}
        self.outbox = Outbox(int(config.get("queue_max", QUEUE_MAX)))
        self.seq = 0

    def uplink(self) -> dict[str, Any]:
        iface = self.config["uplink_iface"]
        return {"iface": iface, "carrier": carrier(iface), "address": ipv4_address(iface)}

    def reachable(self, now: float) -> dict[str, bool]:
        addresses = {n["name"]: n["address"] for n in self.config["truck_nodes"]}
        return {name: name == self.config["node"] or self.book.answered(address, now)
                for name, address in addresses.items()}

    def bridge(self) -> dict[str, Any]:
        active = self.state.broker_active
        # no carrier, no bridge: the TCP connection only notices at its next keepalive
        connected = active and carrier(self.config["uplink_iface"]) and bridge_connected(
            int(self.config["cloud"]["port"]), self.config.get("broker_user", "mosquitto"))
        return {"connected": connected,
                "queued": self.state.store_count if active else None}

    def document(self, now: float) -> dict[str, Any]:
        self.seq += 1
        return assemble(self.config, now, self.seq, uplink=self.uplink(), cloud=self.state.cloud,
                        broker_active=self.state.broker_active, bridge=self.bridge(), feed=self.feed.view(now),
                        reachable=self.reachable(now), beats=self.beats, book=self.book)

    def start(self) -> None:
        LocalBroker(self.config, self.state, self.feed, self.beats, self.clock).start()
        link = CloudLink(self.config, self.outbox, self.state, lambda: carrier(self.config["uplink_iface"]))
        threading.Thread(target=link.run, name="cloud", daemon=True).start()
        watch = ArpWatch(self.book, [lan["iface"] for lan in self.config["lans"]], self.probe, self.state, self.clock)
        threading.Thread(target=watch.run, name="arp", daemon=True).start()

    def run(self) -> None:
        path = self.config["evidence_path"]
        last_write, last_semantic = 0.0, None
        while True:
            self.state.changed.wait(max(0.0, WRITE_EVERY_S - (time.monotonic() - last_write)))
            self.state.changed.clear()
            doc = self.document(self.clock())
            now_semantic = semantic(doc)
            if now_semantic == last_semantic and time.monotonic() - last_write < WRITE_EVERY_S:
                self.seq -= 1  # nothing new: keep the sequence dense
                continue
            data = json.dumps(doc, separators=(",", ":")).encode()
            write_atomically(path, data)
            self.outbox.put(data)
            last_write, last_semantic = time.monotonic(), now_semantic
            time.sleep(MIN_WRITE_GAP_S)


def main(argv: list[str]) -> int:
    with open(argv[1] if len(argv) > 1 else "/etc/truck-ops/agent.json", encoding="utf-8") as handle:
        config = json.load(handle)
    agent = Agent(config)
    agent.start()
    log(f"truck-ops-agent: {config['truck']}/{config['node']} writing {config['evidence_path']}")
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
