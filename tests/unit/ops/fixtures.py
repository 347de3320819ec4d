"""Evidence fixtures: the example race's stage-1 shape, a healthy gateway document per truck, and a
cloud side that hears everything; each test changes what its fault changes."""

from __future__ import annotations

import copy
import json
from typing import Any

from truckctl.ops import evidence as ev
from truckctl.ops.diagnose import CloudView, NodeCheck, Observations, Stream
from truckctl.ops.topology import Topology

NOW = 1_800_000_000.0
TRUCKS = {"truck-a": ("10.31.1", "10.31.1.0/24"), "truck-b": ("10.32.1", "10.32.1.0/24")}
ROLES = (("gw", "gateway", 11), ("hv1", "compute", 12), ("hv2", "storage", 13))
MACS = {f"{t}-{n}": f"02:00:00:00:{i:02x}:{j:02x}" for i, t in enumerate(TRUCKS) for j, (n, _, _) in enumerate(ROLES)}

TOPOLOGY = Topology.from_dict({"stale_after_s": 20, "trucks": [
    {"name": truck, "lan": lan, "nodes": [{"name": f"{truck}-{n}", "address": f"{net}.{host}", "role": role,
                                           "gateway": role == "gateway"} for n, role, host in ROLES]}
    for truck, (net, lan) in TRUCKS.items()]})


def nodes(truck: str) -> list[str]:
    return [f"{truck}-{n}" for n, _, _ in ROLES]


def document(truck: str = "truck-a", at: float = NOW) -> dict[str, Any]:
    """A healthy gateway's evidence (CONTRACT-14, v1)."""
    net = TRUCKS[truck][0]
    return {"v": 1, "truck": truck, "node": f"{truck}-gw", "ts": at, "seq": 1000,
            "uplink": {"iface": "uplink0", "carrier": True, "address": "100.64.43.11"},
            "cloud": {"connected": True, "error": None, "detail": ""},
            "broker": {"active": True}, "bridge": {"connected": True, "queued": 0},
            "feed": {"messages_last_10s": 100, "last_message_age_s": 0.1},
            "nodes": {n: {"reachable": True, "heartbeat_age_s": 2.0} for n in nodes(truck)},
            "clock": {n: {"offset_s": 0.001} for n in nodes(truck)},
            "conflicts": [],
            "neighbours": [{"address": f"{net}.{host}", "mac": MACS[f"{truck}-{n}"]} for n, _, host in ROLES[1:]]}


def changed(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    here = out
    for key in parents:
        here = here[key]
    here[last] = value
    return out


def parsed(doc: dict[str, Any]) -> ev.GatewayEvidence:
    result = ev.parse(json.dumps(doc))
    assert isinstance(result, ev.GatewayEvidence), result
    return result


def cloud(telemetry: dict[str, float | None] | None = None, heartbeats: dict[str, float | None] | None = None,
          evidence: dict[str, float | None] | None = None) -> CloudView:
    """Everything seen 1 s ago, except what is given (an age, or None for never)."""
    telemetry = {t: 1.0 for t in TRUCKS} | (telemetry or {})
    beats = {n: 1.0 for t in TRUCKS for n in nodes(t)} | (heartbeats or {})
    seen = {t: 0.5 for t in TRUCKS} | (evidence or {})
    return CloudView({k: Stream(v) for k, v in telemetry.items()}, {k: Stream(v) for k, v in beats.items()},
                     {k: Stream(v) for k, v in seen.items()})


def silent(truck: str, age: float = 40.0) -> dict[str, float | None]:
    """Heartbeat ages of every node of a truck silent for `age` s."""
    return dict.fromkeys(nodes(truck), age)


SERVICES = ("ssh", "nftables", "chrony", "prometheus-node-exporter", "truck-heartbeat")


def checks(**overrides: NodeCheck) -> dict[str, NodeCheck]:
    """Every node reachable with every unit active, except the overrides (node name with _ for -)."""
    found = {n: NodeCheck(True, "ok", dict.fromkeys(SERVICES + (("mosquitto", "dnsmasq") if n.endswith("-gw") else ()),
                                                    "active"))
             for t in TRUCKS for n in nodes(t)}
    found.update({name.replace("_", "-"): check for name, check in overrides.items()})
    return found


def observe(docs: dict[str, dict[str, Any]] | None = None, view: CloudView | None = None,
            direct: dict[str, NodeCheck] | None = None, at: float = NOW) -> Observations:
    docs = {t: document(t) for t in TRUCKS} if docs is None else docs
    return Observations(at, {t: parsed(d) for t, d in docs.items()}, direct, view)
