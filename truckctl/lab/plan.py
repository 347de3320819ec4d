"""The lab's address plan for a stage, and the checks that refuse a plan this host cannot carry.

Pure: built from the Stage and the host's routes, so it is unit-tested without root.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lab import naming

STANDIN = "cloud-standin"
STANDIN_ROLE = "cloud-standin"
LAN_IF = "eth0"  # inside the node: its truck LAN (the stand-in: the uplink network)
UPLINK_IF = "uplink0"  # inside a gateway node: its second interface, on the lab uplink
STANDIN_HTTP_PORT = 8080
STANDIN_MQTT_PORT = 8883
GATEWAY_UPLINK_OFFSET = 11  # gateways take .11, .12, ... on the uplink network


@dataclass(frozen=True)
class NodePlan:
    name: str
    truck: str | None  # None for the cloud stand-in
    role: str
    address: str
    prefixlen: int
    bridge: str
    netns: str
    machine: str
    veth: str  # host side of the node's first interface
    cgroup: str
    host_address: str  # the host's address on the node's first network (apt proxy, SSH source)
    uplink_address: str | None = None  # gateways only
    uplink_prefixlen: int | None = None
    uplink_veth: str | None = None

    @property
    def is_standin(self) -> bool:
        return self.truck is None


@dataclass(frozen=True)
class TruckNet:
    name: str
    cidr: str
    bridge: str
    host_address: str


@dataclass(frozen=True)
class UplinkNet:
    cidr: str
    bridge: str
    host_address: str
    standin_address: str


@dataclass(frozen=True)
class LabPlan:
    lab_id: str
    stage: str
    race_id: str
    stale_after_s: int
    vpn_port: int
    trucks: list[TruckNet]
    uplink: UplinkNet
    nodes: list[NodePlan] = field(default_factory=list)

    @property
    def truck_nodes(self) -> list[NodePlan]:
        return [n for n in self.nodes if not n.is_standin]

    @property
    def standin(self) -> NodePlan:
        return next(n for n in self.nodes if n.is_standin)

    def bridges(self) -> list[str]:
        return [t.bridge for t in self.trucks] + [self.uplink.bridge]

    def host_addresses(self) -> list[str]:
        return [t.host_address for t in self.trucks] + [self.uplink.host_address]

    def networks(self) -> list[tuple[str, IPv4Network]]:
        """Every network the lab puts on the host, with what it is for (used in messages)."""
        nets = [(f"truck {t.name} LAN", IPv4Network(t.cidr)) for t in self.trucks]
        return [*nets, ("lab uplink (lab.uplink_cidr)", IPv4Network(self.uplink.cidr))]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabPlan:
        return cls(
            lab_id=data["lab_id"], stage=data["stage"], race_id=data["race_id"],
            stale_after_s=int(data["stale_after_s"]), vpn_port=int(data["vpn_port"]),
            trucks=[TruckNet(**t) for t in data["trucks"]],
            uplink=UplinkNet(**data["uplink"]),
            nodes=[NodePlan(**n) for n in data["nodes"]],
        )

    def fingerprint(self) -> str:
        """Changes whenever anything the running lab was built from changes (the stand-in's service
        included: a lab built with another version of it is rebuilt, not reused)."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode())
        digest.update(Path(__file__).with_name("standin_service.py").read_bytes())
        for source in sorted((Path(__file__).resolve().parent.parent / "ops").glob("*.py")):  # its diagnosis
            digest.update(source.read_bytes())
        return digest.hexdigest()[:16]


def _refuse(message: str, location: str | None = None) -> TruckctlError:
    return TruckctlError([Problem("lab-network", message, location)], ExitCode.INVALID_CONFIG)


def plan_lab(stage: Stage, lab_id: str) -> LabPlan:
    """Names and addresses for every node, bridge and host address; refuses what cannot work."""
    uplink = stage.lab.uplink_cidr
    uplink_hosts = uplink.num_addresses - 2
    gateways = [(t, n) for t, n in stage.nodes() if stage.roles[n.role].gateway]
    if uplink.prefixlen > 30 or uplink_hosts < GATEWAY_UPLINK_OFFSET + len(gateways):
        raise _refuse(f"lab.uplink_cidr {uplink} is too small for the host, the stand-in and "
                      f"{len(gateways)} gateway(s): use a /24", "lab.uplink_cidr")
    for truck in stage.trucks:
        if truck.lan.overlaps(uplink):
            raise _refuse(f"lab.uplink_cidr {uplink} overlaps truck {truck.name}'s LAN {truck.lan}",
                          "lab.uplink_cidr")
    if any(n.name == STANDIN for _, n in stage.nodes()):
        raise _refuse(f"node name {STANDIN!r} is reserved for the lab's cloud stand-in")

    uplink_host = uplink.network_address + 1
    standin_address = uplink.network_address + 2
    trucks: list[TruckNet] = []
    nodes: list[NodePlan] = []
    gateway_index = 0
    for truck in stage.trucks:
        if truck.lan.prefixlen > 30:
            raise _refuse(f"truck {truck.name}'s LAN {truck.lan} is too small for the lab (needs a host "
                          f"address besides the nodes)")
        host = truck.lan.broadcast_address - 1  # the last usable address: the host's, on this LAN
        for node in truck.nodes:
            if node.address == host:
                raise _refuse(f"node {node.name} uses {host}, the last usable address of {truck.lan}, which "
                              f"the lab keeps for the host on truck {truck.name}'s LAN: pick another address")
        bridge = naming.truck_bridge(lab_id, truck.name)
        trucks.append(TruckNet(truck.name, str(truck.lan), bridge, str(host)))
        for node in truck.nodes:
            gateway = stage.roles[node.role].gateway
            up_addr: IPv4Address | None = None
            if gateway:
                up_addr = uplink.network_address + GATEWAY_UPLINK_OFFSET + gateway_index
                gateway_index += 1
            nodes.append(NodePlan(
                name=node.name, truck=truck.name, role=node.role, address=str(node.address),
                prefixlen=truck.lan.prefixlen, bridge=bridge, netns=naming.netns(lab_id, node.name),
                machine=naming.machine(lab_id, node.name), veth=naming.lan_veth(lab_id, node.name),
                cgroup=naming.cgroup(lab_id, node.name), host_address=str(host),
                uplink_address=str(up_addr) if up_addr else None,
                uplink_prefixlen=uplink.prefixlen if up_addr else None,
                uplink_veth=naming.uplink_veth(lab_id, node.name) if up_addr else None,
            ))
    up_bridge = naming.uplink_bridge(lab_id)
    nodes.append(NodePlan(
        name=STANDIN, truck=None, role=STANDIN_ROLE, address=str(standin_address), prefixlen=uplink.prefixlen,
        bridge=up_bridge, netns=naming.netns(lab_id, STANDIN), machine=naming.machine(lab_id, STANDIN),
        veth=naming.lan_veth(lab_id, STANDIN), cgroup=naming.cgroup(lab_id, STANDIN),
        host_address=str(uplink_host),
    ))
    return LabPlan(
        lab_id=lab_id, stage=stage.name, race_id=stage.race.id,
        stale_after_s=stage.defaults.telemetry.stale_after_s, vpn_port=stage.cloud.vpn_port, trucks=trucks,
        uplink=UplinkNet(str(uplink), up_bridge, str(uplink_host), str(standin_address)), nodes=nodes,
    )


@dataclass(frozen=True)
class HostRoute:
    dst: IPv4Network
    text: str  # as `ip route` shows it, for messages
    dev: str | None


def parse_routes(ip_json: list[dict[str, Any]]) -> list[HostRoute]:
    """Routes from `ip -j -4 route show`; the default route says nothing about overlap, so it is skipped."""
    routes = []
    for entry in ip_json:
        dst = entry.get("dst")
        if not isinstance(dst, str) or dst == "default":
            continue
        try:
            network = IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        dev = entry.get("dev")
        text = dst + (f" via {entry['gateway']}" if entry.get("gateway") else "") + (f" dev {dev}" if dev else "")
        routes.append(HostRoute(network, text, dev if isinstance(dev, str) else None))
    return routes


def check_host_routes(plan: LabPlan, routes: list[HostRoute], own_devices: set[str],
                      other_labs: dict[str, Path] | None = None) -> None:
    """Refuse a lab whose networks would shadow or be shadowed by this host's own routes.

    Routes on devices this lab already made (a re-run of `up`) are the lab's, not the host's. A route
    on another truckctl lab's device (another project, or a copy of this one) names how to clear it.
    """
    for purpose, network in plan.networks():
        for route in routes:
            if route.dev in own_devices:
                continue
            if not network.overlaps(route.dst):
                continue
            if naming.is_lab_link(route.dev):
                raise _refuse(f"{purpose} {network} is taken by another truckctl lab on this host (route "
                              f"'{route.text}'): {_clear_other_labs(other_labs or {})}")
            raise _refuse(f"{purpose} {network} overlaps this host's route '{route.text}': "
                          f"change the stage's networks or remove that route")


def _clear_other_labs(other_labs: dict[str, Path]) -> str:
    commands = [f"`truckctl -C {project} lab down`" for project in other_labs.values()]
    if not commands:
        return "take it down with `truckctl lab down` in the project that brought it up"
    return "take it down first: " + " or ".join(commands)
