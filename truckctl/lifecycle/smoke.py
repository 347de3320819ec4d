"""The smoke check that ends `up`: a message published on each truck's broker, as a transponder
would, must arrive at the cloud side. It proves the whole path: LAN, broker, TLS bridge, ingest."""

from __future__ import annotations

import json
import shlex
import time

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import cloudside
from truckctl.remote import Connection

TIMEOUT_S = 20.0
SMOKE_TOPIC = "telemetry/smoke"


def publish(address: str, port: int, topic: str, payload: str, timeout_s: float = 5.0) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"truckctl-smoke-{time.time_ns()}")
    try:
        client.connect(address, port, keepalive=10)
        client.loop_start()
        client.publish(topic, payload, qos=1).wait_for_publish(timeout_s)
    except (OSError, ValueError, RuntimeError) as exc:
        raise TruckctlError.single("smoke-publish", f"cannot publish to the broker at {address}:{port}: {exc}",
                                   address) from None
    finally:
        client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait up to 1 s for
        client.loop_stop()


def publish_over_ssh(connection: Connection, address: str, port: int, topic: str, payload: str) -> None:
    """From outside the truck (the management path) the feed port is out of reach: the gateway's own
    mosquitto_pub (every node has it) publishes to its LAN address instead, as a transponder would."""
    from truckctl.remote import explain_ssh_failure, ssh_run

    command = shlex.join(["mosquitto_pub", "-h", address, "-p", str(port), "-q", "1", "-t", topic, "-m", payload])
    code, out = ssh_run(connection, address, command)
    if code != 0:
        reason = explain_ssh_failure(out) if code == 255 else f"mosquitto_pub exited {code}"
        raise TruckctlError.single("smoke-publish", f"cannot publish to the broker at {address}:{port} through the "
                                   f"management path: {reason}", address)


def check(stage: Stage, cloud: CloudOutputs, run_id: str, timeout_s: float = TIMEOUT_S,
          connection: Connection | None = None) -> dict[str, float]:
    """Publish a marked message on each truck's broker and wait for it at the lab's stand-in: the seconds
    each truck's took to arrive. Through the management path (`connection` with hops) the gateway
    publishes it itself."""
    marker = {"smoke": run_id, "ts": time.time()}
    started = time.monotonic()
    for truck in stage.trucks:
        args = (str(stage.gateway(truck).address), stage.defaults.telemetry.feed_port, SMOKE_TOPIC,
                json.dumps({**marker, "truck": truck.name}))
        if connection is not None and connection.hops:
            publish_over_ssh(connection, *args)
        else:
            publish(*args)
    waiting = {t.name for t in stage.trucks}
    arrived: dict[str, float] = {}
    while waiting and time.monotonic() - started < timeout_s:
        status = cloudside.fetch(cloud, "/status")
        for name in list(waiting):
            seen = status.get("trucks", {}).get(name, {}).get("telemetry") or {}
            if any(run_id in payload for payload in seen.get("recent_payloads") or [seen.get("last_payload") or ""]):
                arrived[name] = round(time.monotonic() - started, 2)
                waiting.discard(name)
        if waiting:
            time.sleep(0.3)
    if waiting:
        raise TruckctlError([Problem("smoke-failed", f"telemetry published on truck {name}'s broker did not reach "
                                     f"the cloud side within {timeout_s:.0f} s", name) for name in sorted(waiting)],
                            ExitCode.ERROR, {"smoke": {"arrived_s": arrived}})
    return arrived
