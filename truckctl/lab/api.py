"""The lab's public API: what the CLI, the truck tier and tests call.

- up / down / status: build, remove and inspect the lab (root only).
- connection / lab_nodes: how the truck tier reaches the nodes (host-key checking on).
- cloud_outputs: the `lab` target's CloudOutputs, built from the cloud stand-in.
- set_uplink: "pull the cable" of a truck's gateway, and plug it back.
- stop_node / start_node: switch a truck node off, and on again (its disk kept), for fault tests.
- revoke_truck: make the stand-in refuse a truck's certificate (what `truckctl down` does on the lab).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from truckctl.cloud.outputs import CloudOutputs, TruckAccess, topic_prefix
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lab import standin
from truckctl.lab.access import connection, running_plan
from truckctl.lab.control import Progress, down, start_node, status, stop_node, up
from truckctl.lab.network import link_exists, set_link
from truckctl.lab.operator import outside
from truckctl.lab.paths import LabPaths
from truckctl.lab.pki import OPERATOR_LEAF, LabPki, client_id
from truckctl.lab.plan import LAN_IF, STANDIN_HTTP_PORT, STANDIN_MQTT_PORT, UPLINK_IF, LabPlan
from truckctl.lab.ssh import LabConnection
from truckctl.lab.system import require_root
from truckctl.lifecycle.webhttp import ClientTls
from truckctl.project import Project

__all__ = ["LabConnection", "LabNode", "Progress", "cloud_outputs", "connection", "down", "is_outside", "lab_nodes",
           "operator_tls", "revoke_truck", "set_uplink", "start_node", "status", "stop_node", "up"]


@dataclass(frozen=True)
class LabNode:
    """A truck node of the running lab, as the truck tier needs it."""

    name: str
    truck: str
    address: str
    role: str
    lan_interface: str = LAN_IF
    uplink_address: str | None = None  # gateways only: their address on the lab uplink
    uplink_interface: str | None = None


def lab_nodes(project: Project) -> list[LabNode]:
    """The truck nodes (not the stand-in), with the stage configuration's names and addresses."""
    return [LabNode(n.name, n.truck or "", n.address, n.role, uplink_address=n.uplink_address,
                    uplink_interface=UPLINK_IF if n.uplink_address else None)
            for n in running_plan(project).truck_nodes]


def cloud_outputs(project: Project, stage: Stage | str) -> CloudOutputs:
    """The `lab` target's CloudOutputs. The VPN endpoint is described but not served: the lab has no
    WireGuard (no kernel module on this machine kind), only a WireGuard-format public key."""
    plan = running_plan(project, stage if isinstance(stage, str) else stage.name)
    pki = LabPki(LabPaths(project.state_dir).pki)
    address = plan.uplink.standin_address
    trucks = {}
    for truck in plan.trucks:
        issued = pki.leaf(f"truck-{truck.name}")
        cid = client_id(plan.race_id, truck.name)
        trucks[truck.name] = TruckAccess(
            thing_name=cid, client_id=cid, topic_prefix=topic_prefix(plan.race_id, truck.name),
            certificate_pem=issued.cert.read_text(), private_key_pem=SecretStr(issued.key.read_text()),
            certificate_ref=f"lab-serial:{issued.serial}",
        )
    return CloudOutputs(
        target="lab", region="lab", mqtt_host=address, mqtt_port=STANDIN_MQTT_PORT,
        ca_pem=pki.ca.cert.read_text(), trucks=trucks,
        telemetry_stream="lab:standin/telemetry", datalake_bucket="lab:standin/datalake",
        alert_topic_arn="lab:standin/alerts",
        alert_webhook_url=f"https://{address}:{STANDIN_HTTP_PORT}/alerts",
        standin_client_files=(str(pki.leaf(OPERATOR_LEAF).cert), str(pki.leaf(OPERATOR_LEAF).key)),
        vpn_endpoint=f"{address}:{plan.vpn_port}", vpn_public_key=_vpn_public_key(project, pki),
    )


def _vpn_public_key(project: Project, pki: LabPki) -> str:
    given = outside(project.state_dir)
    return given.vpn_public_key if given is not None else pki.wireguard_public_key()


def is_outside(project: Project) -> bool:
    """This state directory is the lab's outside operator's (`lab operator add`), not the lab's own."""
    return outside(project.state_dir) is not None


def operator_tls(project: Project) -> ClientTls | None:
    """truckctl's credential for the stand-in's API (the lab CA pinned, its own client certificate),
    or None when the lab's PKI does not hold one (then the stand-in cannot be called)."""
    try:
        return standin.operator_tls(LabPki(LabPaths(project.state_dir).pki))
    except OSError:
        return None


def _lab_truck(plan: LabPlan, truck: str) -> None:
    if truck not in {t.name for t in plan.trucks}:
        known = ", ".join(t.name for t in plan.trucks)
        raise TruckctlError.single("lab-unknown-truck", f"no truck {truck!r} in the lab (trucks: {known})",
                                   exit_code=ExitCode.USAGE)


def revoke_truck(project: Project, truck: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """Revoke the truck's certificate at the stand-in, as destroying its IoT certificate does on aws.

    The serial goes into the lab CA's CRL, which is installed in the running stand-in, whose broker is
    restarted: that also drops a bridge still connected with the revoked certificate. A replacement
    certificate is issued at once (no node holds it) so a later `up` converges again. Idempotent in
    effect: a re-run revokes that unused replacement too and leaves the truck refused.
    """
    require_root("revoke")
    plan = running_plan(project)
    _lab_truck(plan, truck)
    paths = LabPaths(project.state_dir)
    pki = LabPki(paths.pki)
    name = f"truck-{truck}"
    serial = pki.revoke(name)
    replacement = pki.ensure_client(name, client_id(plan.race_id, truck)).serial
    from truckctl.lab import faults  # the drills' module: only a revoke needs it, not every status

    faults.reload_standin(faults.Lab(project), timeout_s)
    return {"truck": truck, "revoked_serial": serial, "replacement_serial": replacement,
            "revoked_total": len(pki.revoked())}


def set_uplink(project: Project, truck: str, up: bool) -> None:
    """Plug or pull a truck's uplink cable: the host side of its gateway's uplink veth, up or down."""
    require_root("set_uplink")
    plan = running_plan(project)
    gateways = [n for n in plan.truck_nodes if n.truck == truck and n.uplink_veth]
    if not gateways:
        known = ", ".join(t.name for t in plan.trucks)
        raise TruckctlError.single("lab-unknown-truck", f"no gateway of truck {truck!r} in the lab (trucks: {known})",
                                   exit_code=ExitCode.USAGE)
    for gateway in gateways:
        assert gateway.uplink_veth is not None
        if not link_exists(gateway.uplink_veth):
            raise TruckctlError.single("lab-link", f"{gateway.name}'s uplink {gateway.uplink_veth} is missing")
        set_link(gateway.uplink_veth, up)
