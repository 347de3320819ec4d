"""The dependency model, derived from the configuration (never written by hand).

Per truck: transponder feed -> gateway broker -> bridge -> gateway uplink -> cloud ingest; each
other node -> truck LAN -> gateway (its heartbeat travels through the gateway's broker and bridge);
the cloud endpoint, the truck's certificate and every node's clock. A failure of a hop explains the
silence of everything that depends on it (the alert-dependency idea of Nagios parents, derived from
the inventory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the stand-in runs this module without truckctl's configuration package
    from truckctl.config.model import Stage

# beyond this, timestamps mislead; the gateway measures offsets from whole-second heartbeat stamps (-1..0 s in sync)
CLOCK_LIMIT_S = 2.0
MAX_TRUCKS = 64
MAX_NODES = 256


@dataclass(frozen=True)
class NodeRef:
    name: str
    address: str
    role: str
    gateway: bool


@dataclass(frozen=True)
class TruckTopo:
    name: str
    lan: str
    gateway: NodeRef
    nodes: tuple[NodeRef, ...]  # the gateway included, configuration order

    def hop_uplink(self) -> str:
        return f"{self.gateway.name}→uplink"

    def hop_cloud(self) -> str:
        return f"{self.gateway.name}→uplink→cloud ingest"

    def hop_tls(self) -> str:
        return f"{self.gateway.name}→cloud ingest (TLS)"

    def hop_broker(self) -> str:
        return f"{self.gateway.name} broker"

    def hop_bridge(self) -> str:
        return f"{self.gateway.name} broker→bridge→cloud"

    def hop_feed(self) -> str:
        return f"transponder feed→{self.gateway.name} broker"

    def hop_node(self, node: str) -> str:
        return f"{node}→{self.name} LAN→{self.gateway.name}"

    def hop_heartbeat(self, node: str) -> str:
        return f"{node} heartbeat→{self.gateway.name} broker"

    def hop_clock(self, node: str) -> str:
        return f"{node} clock"

    def hop_lan(self) -> str:
        return f"{self.name} LAN {self.lan}"


@dataclass(frozen=True)
class Topology:
    trucks: tuple[TruckTopo, ...]
    stale_after_s: float
    clock_limit_s: float = CLOCK_LIMIT_S

    def truck(self, name: str) -> TruckTopo | None:
        return next((t for t in self.trucks if t.name == name), None)

    def owner(self, address: str) -> tuple[str, str] | None:
        """(truck, node) that the configuration gives this address, if any."""
        for truck in self.trucks:
            for node in truck.nodes:
                if node.address == address:
                    return truck.name, node.name
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"stale_after_s": self.stale_after_s, "clock_limit_s": self.clock_limit_s,
                "trucks": [{"name": t.name, "lan": t.lan,
                            "nodes": [{"name": n.name, "address": n.address, "role": n.role, "gateway": n.gateway}
                                      for n in t.nodes]} for t in self.trucks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        """From `to_dict`'s document (truckctl wrote it: a malformed one is a bug, it raises)."""
        trucks = []
        for truck in data["trucks"][:MAX_TRUCKS]:
            nodes = tuple(NodeRef(str(n["name"]), str(n["address"]), str(n["role"]), bool(n["gateway"]))
                          for n in truck["nodes"][:MAX_NODES])
            trucks.append(TruckTopo(str(truck["name"]), str(truck["lan"]), next(n for n in nodes if n.gateway), nodes))
        return cls(tuple(trucks), float(data["stale_after_s"]), float(data.get("clock_limit_s", CLOCK_LIMIT_S)))


def from_stage(stage: Stage) -> Topology:
    trucks = []
    for truck in stage.trucks:
        nodes = tuple(NodeRef(n.name, str(n.address), n.role, stage.roles[n.role].gateway) for n in truck.nodes)
        gateway = next(n for n in nodes if n.gateway)
        trucks.append(TruckTopo(truck.name, str(truck.lan), gateway, nodes))
    return Topology(tuple(trucks), float(stage.defaults.telemetry.stale_after_s))
