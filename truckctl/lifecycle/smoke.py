"""The smoke check that ends `up`: a message published on each truck's broker, as a transponder
would, must arrive at the cloud side. It proves the whole path: LAN, broker, TLS bridge, ingest."""

from __future__ import annotations

import json
import time

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import cloudside

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


def check(stage: Stage, cloud: CloudOutputs, run_id: str, timeout_s: float = TIMEOUT_S) -> dict[str, float]:
    """Publish a marked message on each truck's broker and wait for it at the lab's stand-in: the seconds
    each truck's took to arrive."""
    marker = {"smoke": run_id, "ts": time.time()}
    started = time.monotonic()
    for truck in stage.trucks:
        publish(str(stage.gateway(truck).address), stage.defaults.telemetry.feed_port, SMOKE_TOPIC,
                json.dumps({**marker, "truck": truck.name}))
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
