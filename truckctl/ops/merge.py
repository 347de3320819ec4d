"""What truckctl diagnoses now, merged with the incidents the cloud side holds (pure).

- an incident both hold: the cloud side's opening time (truckctl's own check cannot say since when);
- one only the cloud side holds: listed (source "cloud"). A link incident the cloud side opened from
  silence alone (provisional) takes the kind the gateway's current evidence implies (no carrier:
  uplink-down; a refused certificate: tls-refused; carrier but the cloud hears nothing:
  cloud-unreachable), and claims the truck's silent streams this check saw;
- a bridge-down of a truck whose link or broker the cloud side saw recover less than
  book.RECOVERY_S ago is the bridge reconnecting (its back-off), not an incident: its symptoms stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from .book import RECOVERY_S
from .evidence import BadEvidence, GatewayEvidence
from .model import LINK_KINDS, Diagnosis, Incident, Kind, Symptom
from .topology import Topology


def _refined(incident: Incident, evidence: GatewayEvidence, hop: str) -> Incident:
    if not evidence.uplink.carrier:
        return replace(incident, kind=Kind.UPLINK_DOWN, evidence=(
            f"{evidence.node} {evidence.uplink.iface}: no carrier", *incident.evidence))
    if evidence.cloud.error == "tls-refused":
        return replace(incident, kind=Kind.TLS_REFUSED, evidence=(
            "the cloud endpoint refused the truck's certificate", *incident.evidence))
    return replace(incident, kind=Kind.CLOUD_UNREACHABLE, hop=hop, evidence=(
        f"{evidence.node} {evidence.uplink.iface} has carrier: what it sends does not reach the cloud side",
        *incident.evidence))


def merge(topology: Topology, local: Diagnosis, held: Sequence[Incident], provisional: set[str],
          recovered: Mapping[tuple[str, Kind], float], evidence: Mapping[str, GatewayEvidence | BadEvidence],
          now: float) -> Diagnosis:
    """held: the cloud side's open incidents; provisional: their ids opened from silence alone;
    recovered: (truck, kind) -> when the cloud side last resolved one."""
    by_id = {i.id: i for i in held}
    unexplained = list(local.unexplained)
    incidents: list[Incident] = []
    for incident in local.incidents:
        causes, window = RECOVERY_S.get(incident.kind, (frozenset(), 0.0))
        if any(now - recovered.get((incident.truck, cause), -1e18) < window for cause in causes):
            unexplained += incident.symptoms  # the bridge's back-off after its link came back
            continue
        incidents.append(replace(incident, opened=by_id[incident.id].opened if incident.id in by_id else None))
    ours = {i.id for i in incidents} | {i.id for i in local.incidents}
    for incident in held:
        if incident.id in ours:
            continue
        topo = topology.truck(incident.truck)
        current = evidence.get(incident.truck)
        if incident.kind in LINK_KINDS and incident.id in provisional and isinstance(current, GatewayEvidence) \
                and topo is not None:
            incident = _refined(incident, current, topo.hop_cloud())
        keys = {s.key for s in incident.symptoms}
        if incident.kind in LINK_KINDS and topo is not None:
            keys |= {f"telemetry/{topo.name}", f"evidence/{topo.name}"} | {f"heartbeat/{n.name}" for n in topo.nodes}
        claimed: list[Symptom] = [s for s in unexplained if s.key in keys]
        unexplained = [s for s in unexplained if s.key not in keys]
        incidents.append(replace(incident, symptoms=tuple(claimed) or incident.symptoms))
    return Diagnosis(tuple(incidents), tuple(unexplained))
