"""Telemetry under load: a burst of 10,000 QoS 1 messages on truck-a's broker while its uplink to the
cloud stand-in flaps; every message arrives at the stand-in.

What is verified, precisely:
- the burst: 10,000 messages, each with a sequence number, published at QoS 1 to the gateway's
  broker on the truck LAN (as transponders do), each acknowledged by that broker (PUBACK). The
  broker's queue limit (telemetry.queue_messages) is far above the burst.
- the flaps, while the burst is published (in 12 parts over ~18 s) and forwarded: the uplink cable
  pulled and plugged three times (3 s each); during the second pull the bridge's TCP connection is
  also cut inside the gateway (as a carrier NAT dropping the flow would), so the bridge has to
  reconnect and resend.
- arrival: a subscriber at the stand-in's broker (TLS, truck-a's certificate, its own client id so
  the truck's bridge session is untouched, QoS 1 on the burst's topic) counts sequence numbers.
  Every one of 0..9,999 must arrive: no loss.
- duplicates: MQTT QoS 1 promises at-least-once, not exactly-once, on both hops (transponder ->
  gateway, bridge -> stand-in), so nothing on this path promises "once". Duplicates are counted and
  reported, and must be no more than QoS 1 allows: what was in flight when a connection dropped,
  at most the bridge's in-flight window (20) per reconnect of the bridge, reconnects counted from
  the stand-in broker's own log.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.lab.harness import STAGE, Lab, wait_for
from tests.lab.runs import ensure_converged
from truckctl.config.loader import load_stage
from truckctl.lab import api
from truckctl.lab import state as lab_state
from truckctl.lab.system import run

pytestmark = pytest.mark.lab

BURST = 10_000
TRUCK = "truck-a"
INFLIGHT_WINDOW = 20  # mosquitto's max_inflight_messages default, which the bridge uses
FLAPS = 3
PULLED_S = 3.0
CHUNKS = 12  # the burst goes out in 12 parts over the ~18 s of flaps
ARRIVAL_TIMEOUT_S = 300  # the bridge's reconnect backs off up to 30 s; the machine is shared


class Counting:
    """The stand-in side: a TLS subscriber counting each sequence number it receives."""

    def __init__(self, lab: Lab, tmp: Path, topic: str) -> None:
        outputs = lab.cloud_outputs()
        access = outputs.trucks[TRUCK]
        ca, cert, key = tmp / "ca.pem", tmp / "truck.pem", tmp / "truck.key"
        ca.write_text(outputs.ca_pem)
        cert.write_text(access.certificate_pem)
        key.touch(mode=0o600)
        key.write_text(access.private_key_pem.get_secret_value())
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self.seen: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loadtest-{os.getpid()}")
        self.client.tls_set_context(context)
        self.client.on_connect = lambda c, u, f, reason, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(outputs.mqtt_host, outputs.mqtt_port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        seq = int(json.loads(message.payload)["seq"])
        with self.lock:
            self.seen[seq] += 1

    def missing(self) -> list[int]:
        with self.lock:
            return [seq for seq in range(BURST) if self.seen[seq] == 0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bridge_reconnects_since(lab: Lab, since: str) -> int:
    """How often truck-a's bridge connected to the stand-in's broker since `since` (its own log)."""
    client_id = lab.cloud_outputs().trucks[TRUCK].client_id
    code, out = lab.ssh(lab.standin_address, f"journalctl -u mosquitto --since '{since}' -o cat --no-pager | "
                                             f"grep -c 'New client connected.* as {client_id} ' || true")
    assert code == 0, out
    return int(out.strip() or 0)


def cut_bridge_connection(lab: Lab) -> None:
    """Drop the bridge's TCP connection inside the gateway (ss -K in its network namespace)."""
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    gateway = next(n for n in state.plan.truck_nodes if n.truck == TRUCK and n.uplink_veth)
    run(["ip", "netns", "exec", gateway.netns, "ss", "-K", "-t", "dport", "=", ":8883"], check=False,
        what="cut the bridge's connection")


def flap(lab: Lab, done: threading.Event, log: list[str]) -> None:
    try:
        for cycle in range(FLAPS):
            api.set_uplink(lab.project, TRUCK, False)
            log.append(f"{time.monotonic():.1f} pulled")
            if cycle == 1:
                cut_bridge_connection(lab)
                log.append(f"{time.monotonic():.1f} bridge connection cut")
            time.sleep(PULLED_S)
            api.set_uplink(lab.project, TRUCK, True)
            log.append(f"{time.monotonic():.1f} plugged")
            time.sleep(PULLED_S)
    finally:
        api.set_uplink(lab.project, TRUCK, True)
        done.set()


def test_a_burst_of_10000_messages_arrives_whole_while_the_uplink_flaps(lab: Lab, tmp_path: Path) -> None:
    ensure_converged(lab)
    assert load_stage(lab.project, STAGE).defaults.telemetry.queue_messages >= 10 * BURST
    gateway = next(n for n in lab.nodes if n.truck == TRUCK and n.role == "gateway")
    prefix = lab.cloud_outputs().trucks[TRUCK].topic_prefix
    marker = f"{os.getpid()}-{int(time.time())}"
    since = lab.ssh(lab.standin_address, "date '+%Y-%m-%d %H:%M:%S'")[1]
    counting = Counting(lab, tmp_path, f"{prefix}/telemetry/load/{marker}")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"transponders-{marker}")
    publisher.max_inflight_messages_set(100)
    flapped = threading.Event()
    flap_log: list[str] = []
    try:
        assert counting.subscribed.wait(30), "the stand-in did not confirm the subscription"
        publisher.connect(gateway.address, 1883, keepalive=30)
        publisher.loop_start()
        started = time.monotonic()
        flapper = threading.Thread(target=flap, args=(lab, flapped, flap_log), daemon=True)
        flapper.start()
        sent = []
        for chunk in range(CHUNKS):  # spread over the flaps: messages are in flight at every pull and cut
            sent += [publisher.publish(f"telemetry/load/{marker}", json.dumps({"seq": seq, "ts": time.time()}),
                                       qos=1) for seq in range(chunk * BURST // CHUNKS, (chunk + 1) * BURST // CHUNKS)]
            time.sleep(FLAPS * 2 * PULLED_S / CHUNKS)
        for info in sent:
            info.wait_for_publish(timeout=120)
        assert all(info.is_published() for info in sent), "the gateway's broker did not acknowledge them all"
        published_s = time.monotonic() - started
        assert flapped.wait(60), "the uplink flaps did not finish"
        wait_for(lambda: not counting.missing(), ARRIVAL_TIMEOUT_S, "every message at the stand-in")
        arrived_s = time.monotonic() - started
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        counting.close()
        api.set_uplink(lab.project, TRUCK, True)
    time.sleep(2)  # late duplicates would land now
    duplicates = sum(count - 1 for count in counting.seen.values() if count > 1)
    reconnects = bridge_reconnects_since(lab, since)
    figures = {"burst": BURST, "published_in_s": round(published_s, 1), "all_arrived_after_s": round(arrived_s, 1),
               "unique_received": len(counting.seen), "duplicates": duplicates, "bridge_reconnects": reconnects,
               "flaps": flap_log}
    print(f"\ntelemetry under load: {json.dumps(figures)}")
    assert counting.missing() == [] and len(counting.seen) == BURST
    assert reconnects >= 1, "the bridge never reconnected: the connection cut did not happen"
    assert duplicates <= INFLIGHT_WINDOW * reconnects, figures
