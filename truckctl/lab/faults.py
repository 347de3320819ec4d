"""Drills on the lab (`truckctl lab fault KIND [TARGET]`): each incident kind of race day, made for real.

Every drill is recorded in the lab state (kind `drill`, before it is made, like every lab resource) with
what it changed, so `clear` undoes exactly that and `lab down` removes it with the lab. What each does
(CONTRACT-14's table), and where:

| drill          | target  | on the lab                                                           |
|----------------|---------|----------------------------------------------------------------------|
| cable          | truck   | the host side of the gateway's uplink veth down (carrier lost)        |
| cloud-block    | truck   | nft in the gateway: traffic to and from the cloud endpoint dropped    |
| revoke-cert    | truck   | the truck's serial in the lab CA's CRL, the stand-in's broker reloaded|
| broker-stop    | truck   | `systemctl stop mosquitto` on the gateway                             |
| bridge-stop    | truck   | nft in the gateway: the broker's own connections to the cloud reset   |
| feed-silence   | truck   | the simulated transponder feed stopped (the lab's feed)               |
| node-off       | node    | the node's container switched off (its disk kept), its interfaces dark |
| node-cut       | node    | the host side of the node's LAN veth down                             |
| heartbeat-stop | node    | `systemctl stop truck-heartbeat` on the node                          |
| clock-skew     | node    | the heartbeat runs under libfaketime, its clock CLOCK_SKEW_S ahead    |
| impostor       | address | a network namespace with a foreign MAC on the truck's LAN bridge,     |
|                |         | configured with that address: its kernel answers ARP for it           |

The clock of a container is the host's (Linux has no namespace for the real-time clock, and the lab never
grants CAP_SYS_TIME), so clock-skew skews what the node's heartbeat reports, not the node's clock.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from truckctl.errors import ExitCode, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lab import naming, network, standin
from truckctl.lab import state as st
from truckctl.lab.node import merged_dir
from truckctl.lab.paths import LabPaths
from truckctl.lab.pki import LabPki
from truckctl.lab.plan import LAN_IF, STANDIN_MQTT_PORT, UPLINK_IF, LabPlan, NodePlan
from truckctl.lab.probe import port_open
from truckctl.lab.ssh import ssh_run
from truckctl.lab.system import require_root, run
from truckctl.project import Project

TRUCK, NODE, ADDRESS = "truck", "node", "address"
# drill -> (target kind, the incident it must raise)
KINDS: dict[str, tuple[str, str]] = {
    "cable": (TRUCK, "uplink-down"),
    "cloud-block": (TRUCK, "cloud-unreachable"),
    "revoke-cert": (TRUCK, "tls-refused"),
    "broker-stop": (TRUCK, "broker-down"),
    "bridge-stop": (TRUCK, "bridge-down"),
    "feed-silence": (TRUCK, "feed-silent"),
    "node-off": (NODE, "node-down"),
    "node-cut": (NODE, "node-down"),
    "heartbeat-stop": (NODE, "heartbeat-stopped"),
    "clock-skew": (NODE, "clock-skew"),
    "impostor": (ADDRESS, "address-conflict"),
}
CLOCK_SKEW_S = 300
NFT_TABLE = "truckctl_drill"  # one table per drill kind in the gateway: truckctl_drill_cloud_block, ...
FAKETIME_DROPIN = "/run/systemd/system/truck-heartbeat.service.d/truckctl-drill-clock.conf"
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
BROKER_BACK_S = 15.0


@dataclass(frozen=True)
class Drill:
    """An active drill: what it targets, what it did, the incident it should raise."""

    kind: str
    target: str
    truck: str
    node: str | None
    address: str | None
    incident: str
    effect: str
    started: float

    def key(self) -> str:
        return f"{self.kind}:{self.target}"


@dataclass(frozen=True)
class FaultResult:
    """What a `lab fault` command did: the drills started or cleared, and every drill still active."""

    action: str  # started | cleared | list
    changed: list[Drill]
    active: list[Drill]
    note: str = ""

    def to_dict(self) -> JsonObject:  # the command's JSON result
        return asdict(self)


# ---- targets ----------------------------------------------------------------------------------------

def _usage(code: str, message: str) -> TruckctlError:
    return TruckctlError.single(code, message, exit_code=ExitCode.USAGE)


def _kind(kind: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise _usage("lab-fault-kind", f"no drill {kind!r} (drills: {', '.join(KINDS)})")
    return KINDS[kind]


@dataclass(frozen=True)
class Target:
    name: str
    truck: str
    node: NodePlan | None  # the node the drill acts on (the gateway for truck drills)
    address: str | None = None


def _gateway(plan: LabPlan, truck: str) -> NodePlan:
    return next(n for n in plan.truck_nodes if n.truck == truck and n.uplink_veth)


def resolve(plan: LabPlan, kind: str, target: str | None) -> Target:
    """The drill's target from the command line (a default when left out), or a one-line usage error."""
    what, _ = _kind(kind)
    trucks = [t.name for t in plan.trucks]
    if what == TRUCK:
        name = target or trucks[0]
        if name not in trucks:
            raise _usage("lab-fault-target", f"{kind} takes a truck of the lab, not {name!r} "
                         f"(trucks: {', '.join(trucks)})")
        return Target(name, name, _gateway(plan, name))
    nodes = {n.name: n for n in plan.truck_nodes}
    if what == NODE:
        name = target or next(n.name for n in plan.truck_nodes if not n.uplink_veth)
        if name not in nodes:
            raise _usage("lab-fault-target", f"{kind} takes a truck node of the lab, not {name!r} "
                         f"(nodes: {', '.join(nodes)})")
        item = nodes[name]
        return Target(name, item.truck or "", item, item.address)
    addresses = {n.address: n for n in plan.truck_nodes}
    name = target or next(n.address for n in plan.truck_nodes if not n.uplink_veth)
    try:
        name = str(ipaddress.IPv4Address(name))
    except ValueError:
        raise _usage("lab-fault-target", f"{kind} takes one of the stage's node addresses, not {name!r} "
                     f"(addresses: {', '.join(addresses)})") from None
    if name not in addresses:
        raise _usage("lab-fault-target", f"{kind} takes one of the stage's node addresses, not {name!r} "
                     f"(addresses: {', '.join(addresses)})")
    item = addresses[name]
    return Target(name, item.truck or "", item, name)


# ---- the drills -------------------------------------------------------------------------------------

class Lab:
    """The running lab a drill acts on: its plan, state, paths and an SSH runner to its nodes."""

    def __init__(self, project: Project) -> None:
        self.project = project
        state = st.load(project.state_dir)
        if state is None or not state.complete:
            raise TruckctlError.single("lab-not-up", "no complete lab is up: run `truckctl lab up STAGE` first")
        state.path = st.state_file(project.state_dir)
        self.state, self.plan, self.paths = state, state.plan, LabPaths(project.state_dir)

    def ssh(self, item: NodePlan, command: str, what: str, timeout: float = 60) -> str:
        from truckctl.lab.control import connection_for

        code, out = ssh_run(connection_for(self.paths), item.address, command, timeout=timeout)
        if code != 0:
            raise TruckctlError.single("lab-fault", f"{what} on {item.name} failed (exit {code}): "
                                       f"{' '.join(out.split())[:200]}", item.name)
        return out


def _nft_table(kind: str) -> str:
    return f"{NFT_TABLE}_{kind.replace('-', '_')}"


def _cloud(plan: LabPlan) -> tuple[str, int]:
    return plan.uplink.standin_address, STANDIN_MQTT_PORT


def _nft_rules(kind: str, plan: LabPlan) -> str:
    host, port = _cloud(plan)
    table = _nft_table(kind)
    if kind == "cloud-block":  # the carrier's side lets nothing through to the cloud endpoint
        rules = [f"add rule inet {table} out ip daddr {host} tcp dport {port} drop",
                 f"add rule inet {table} in ip saddr {host} tcp sport {port} drop"]
    else:  # bridge-stop: only the broker's connections, reset at their next packet (the agent's stay)
        rules = [f"add rule inet {table} out meta skuid mosquitto ip daddr {host} tcp dport {port} "
                 "reject with tcp reset"]
    return "; ".join([f"add table inet {table}",
                      f"add chain inet {table} out {{ type filter hook output priority -10 ; }}",
                      f"add chain inet {table} in {{ type filter hook input priority -10 ; }}", *rules])


def reload_standin(lab: Lab, timeout_s: float = BROKER_BACK_S) -> None:
    """Write the CRL into the running stand-in and restart its broker (it reads the CRL at start)."""
    standin.write_revocations(merged_dir(lab.paths.root, lab.plan.standin), lab.plan, LabPki(lab.paths.pki))
    lab.ssh(lab.plan.standin, "systemctl restart mosquitto", "restarting the stand-in's broker")
    host, port = _cloud(lab.plan)
    deadline = time.monotonic() + timeout_s
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TruckctlError.single("lab-standin", f"the stand-in's broker is not listening on {host}:{port}")
        time.sleep(0.1)


def _impostor_names(plan: LabPlan, address: str) -> tuple[str, str, str]:
    """(namespace, host-side link, MAC) of the impostor for an address: fixed per lab and address."""
    digest = naming.short_hash(plan.lab_id, "impostor", address, length=10)
    mac = "02:" + ":".join(digest[i:i + 2] for i in range(0, 10, 2))
    return f"tl-{plan.lab_id}-impostor-{address.replace('.', '-')}", naming.impostor_veth(plan.lab_id, address), mac


def impostor_mac(plan: LabPlan, address: str) -> str:
    return _impostor_names(plan, address)[2]


def _start(lab: Lab, kind: str, target: Target) -> tuple[str, dict[str, Any]]:
    """Make the drill; returns what it did (for humans) and what `_undo` needs."""
    item = target.node
    assert item is not None
    if kind == "cable":
        assert item.uplink_veth is not None
        network.set_link(item.uplink_veth, False)
        return f"{item.name}'s uplink cable pulled ({item.uplink_veth} down)", {"link": item.uplink_veth}
    if kind in ("cloud-block", "bridge-stop"):
        lab.ssh(item, f"nft delete table inet {_nft_table(kind)} 2>/dev/null; nft '{_nft_rules(kind, lab.plan)}'",
                f"{kind} rules")
        host, port = _cloud(lab.plan)
        who = "all traffic" if kind == "cloud-block" else "the broker's bridge connections"
        return f"{item.name}: {who} to the cloud endpoint {host}:{port} cut (nft)", {"node": item.name}
    if kind == "revoke-cert":
        pki = LabPki(lab.paths.pki)
        serial = pki.hold(f"truck-{target.truck}")
        if serial is None:
            raise TruckctlError.single("lab-fault", f"no certificate of {target.truck} to revoke in the lab CA")
        reload_standin(lab)
        return f"{target.truck}'s certificate (serial {serial}) revoked at the stand-in (CRL)", {"serial": serial}
    if kind in ("broker-stop", "feed-silence", "heartbeat-stop"):
        unit = {"broker-stop": "mosquitto", "feed-silence": "truck-transponder-sim",
                "heartbeat-stop": "truck-heartbeat"}[kind]
        lab.ssh(item, f"systemctl stop {unit}", f"stopping {unit}")
        return f"{unit} stopped on {item.name}", {"node": item.name, "unit": unit}
    if kind == "node-off":
        from truckctl.lab.control import stop_node

        stop_node(lab.project, item.name)
        # The lab's namespace outlives the container and its kernel would still answer ARP: a node
        # switched off answers nothing, so its interfaces go dark too.
        ifaces = [LAN_IF] + ([UPLINK_IF] if item.uplink_veth else [])
        for iface in ifaces:
            run(["ip", "-n", item.netns, "link", "set", iface, "down"], what=f"{item.name}: {iface} down")
        return f"{item.name} switched off", {"node": item.name, "netns": item.netns, "ifaces": ifaces}
    if kind == "node-cut":
        network.set_link(item.veth, False)
        return f"{item.name}'s LAN cable pulled ({item.veth} down)", {"link": item.veth}
    if kind == "clock-skew":
        lab.ssh(item, _faketime_script(), "running the heartbeat under faketime", timeout=180)
        return (f"{item.name}'s heartbeat reports a clock {CLOCK_SKEW_S} s ahead (libfaketime; a container's "
                "clock is the host's)"), {"node": item.name}
    if kind == "impostor":
        return _start_impostor(lab, target)
    raise AssertionError(kind)


def _faketime_script() -> str:
    dropin = f"[Service]\nEnvironment=LD_PRELOAD={FAKETIME_LIB} FAKETIME=+{CLOCK_SKEW_S}s\n"
    return (f"set -e; test -e {FAKETIME_LIB} || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
            f"--no-install-recommends libfaketime >/dev/null; mkdir -p {FAKETIME_DROPIN.rsplit('/', 1)[0]}; "
            f"printf '{dropin}' > {FAKETIME_DROPIN}; systemctl daemon-reload; systemctl restart truck-heartbeat")


def _start_impostor(lab: Lab, target: Target) -> tuple[str, dict[str, Any]]:
    item = target.node
    assert item is not None and target.address is not None
    netns, link, mac = _impostor_names(lab.plan, target.address)
    # recorded before they exist: `lab down` removes them even if what follows fails half-way
    lab.state.record(st.NETNS, netns)
    lab.state.record(st.LINK, link)
    if not network.netns_exists(netns):
        run(["ip", "netns", "add", netns], what=f"create namespace {netns}")
    if not network.link_exists(link):
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns],
            what=f"impostor veth {link}")
    ns = ["ip", "-n", netns]
    run([*ns, "link", "set", "eth0", "address", mac], what="impostor MAC")
    run([*ns, "addr", "replace", f"{target.address}/{item.prefixlen}", "dev", "eth0"], what="impostor address")
    run([*ns, "link", "set", "eth0", "up"], what="impostor eth0 up")
    run(["ip", "link", "set", link, "master", item.bridge, "up"], what=f"attach {link}")
    return (f"an impostor ({mac}) answers ARP for {target.address} on {target.truck}'s LAN",
            {"netns": netns, "link": link, "mac": mac})


def _undo(lab: Lab, drill: st.Resource) -> None:
    kind, data = drill.data["drill"], drill.data["undo"]
    nodes = {n.name: n for n in lab.plan.nodes}
    if kind in ("cable", "node-cut"):
        if network.link_exists(data["link"]):
            network.set_link(data["link"], True)
    elif kind in ("cloud-block", "bridge-stop"):
        lab.ssh(nodes[data["node"]], f"nft delete table inet {_nft_table(kind)} 2>/dev/null || true",
                f"removing the {kind} rules")
    elif kind == "revoke-cert":
        LabPki(lab.paths.pki).release(data["serial"])
        reload_standin(lab)
    elif kind in ("broker-stop", "feed-silence", "heartbeat-stop"):
        lab.ssh(nodes[data["node"]], f"systemctl start {data['unit']}", f"starting {data['unit']}")
    elif kind == "node-off":
        from truckctl.lab.control import start_node

        for iface in data.get("ifaces", []):
            run(["ip", "-n", data["netns"], "link", "set", iface, "up"], what=f"{data['node']}: {iface} up")
        start_node(lab.project, data["node"])
    elif kind == "clock-skew":
        lab.ssh(nodes[data["node"]], f"rm -f {FAKETIME_DROPIN}; systemctl daemon-reload; "
                "systemctl restart truck-heartbeat", "taking the heartbeat off faketime")
    elif kind == "impostor":
        network.delete_netns(data["netns"])
        network.delete_link(data["link"])
        lab.state.resources = [r for r in lab.state.resources
                               if (r.kind, r.name) not in ((st.NETNS, data["netns"]), (st.LINK, data["link"]))]


# ---- the API ------------------------------------------------------------------------------------------

def _drill(resource: st.Resource) -> Drill:
    d = resource.data
    return Drill(d["drill"], d["target"], d["truck"], d.get("node"), d.get("address"), d["incident"],
                 d.get("effect", ""), float(d["started"]))


def active(lab: Lab) -> list[Drill]:
    return [_drill(r) for r in lab.state.of_kind(st.DRILL) if r.data.get("effect")]


def list_drills(project: Project) -> FaultResult:
    require_root("lab fault list")
    return FaultResult("list", [], active(Lab(project)))


def start(project: Project, kind: str, target: str | None = None) -> FaultResult:
    """Start a drill (already active: nothing changes). Bad kind or target: a usage error, nothing done."""
    _kind(kind)  # a usage error comes first, root or not
    require_root("lab fault")
    lab = Lab(project)
    tgt = resolve(lab.plan, kind, target)
    key = f"{kind}:{tgt.name}"
    existing = next((r for r in lab.state.of_kind(st.DRILL) if r.name == key and r.data.get("effect")), None)
    if existing is not None:
        return FaultResult("started", [], active(lab), f"{key} is already active")
    _, incident = KINDS[kind]
    node = tgt.node.name if tgt.node is not None and KINDS[kind][0] != TRUCK else None
    record: JsonObject = {"drill": kind, "target": tgt.name, "truck": tgt.truck, "node": node,
                              "address": tgt.address, "incident": incident, "started": time.time(), "undo": {}}
    if kind == "node-off":  # stop_node takes the lab lock itself
        resource = lab.state.record(st.DRILL, key, **record)
        effect, undo = _start(lab, kind, tgt)
    else:
        with st.locked(project.state_dir):
            resource = lab.state.record(st.DRILL, key, **record)
            effect, undo = _start(lab, kind, tgt)
    resource.data.update(effect=effect, undo=undo)
    lab.state.save()
    return FaultResult("started", [_drill(resource)], active(lab))


# Cleared first: what cuts a node off (the others' undoing goes over SSH to it), then the rest, newest first.
CLEAR_FIRST = ("cable", "node-cut", "node-off", "impostor")


def clear(project: Project, kind: str | None = None, target: str | None = None) -> FaultResult:
    """Undo the active drills (all, those of a kind, or one): exactly what each recorded. One that cannot
    be undone stays recorded (and is reported) while the others are still undone."""
    if kind is not None:
        _kind(kind)
    require_root("lab fault clear")
    lab = Lab(project)
    if kind is not None and target is not None:
        target = resolve(lab.plan, kind, target).name
    chosen = [r for r in lab.state.of_kind(st.DRILL)
              if (kind is None or r.data["drill"] == kind) and (target is None or r.data["target"] == target)]
    ordered = sorted(reversed(chosen), key=lambda r: r.data["drill"] not in CLEAR_FIRST)
    cleared, problems = [], []
    for resource in ordered:
        if resource.data.get("effect"):  # a drill that never got made has nothing to undo
            try:
                if resource.data["drill"] == "node-off":  # start_node takes the lab lock itself
                    _undo(lab, resource)
                else:
                    with st.locked(project.state_dir):
                        _undo(lab, resource)
            except TruckctlError as exc:
                problems += exc.problems
                continue
            cleared.append(_drill(resource))
        lab.state.resources.remove(resource)
        lab.state.save()
    result = FaultResult("cleared", cleared, active(lab), "" if chosen else "no such drill is active")
    if problems:
        raise TruckctlError(problems, ExitCode.ERROR, result.to_dict())
    return result


def teardown(resources: list[st.Resource], pki: Callable[[], LabPki]) -> None:
    """`lab down`: what outlives the lab's nodes and links (a serial held in the lab CA's CRL) is
    released; everything else of a drill goes with the namespaces, links and overlays it lived in."""
    for resource in resources:
        if resource.data.get("drill") == "revoke-cert" and resource.data.get("undo", {}).get("serial"):
            pki().release(resource.data["undo"]["serial"])
