"""Observations -> incidents, one per root cause, each with the symptoms it explains (pure).

Three sources, any of them may be missing:
- the gateway's evidence (its own view of uplink, cloud link, broker, bridge, feed, LAN, clocks,
  address conflicts), read by truckctl from the gateway or received by the cloud side;
- truckctl's direct checks (one SSH probe per node: reachable, units active), `status` only;
- the cloud side's view: when it last saw each truck's telemetry, each node's heartbeat and each
  gateway's evidence.

Each cause is established by evidence, never by a symptom alone, except where the dependency
model leaves one explanation: a truck the cloud hears nothing from (no evidence, no telemetry, no
heartbeat) has lost its link to the cloud, whatever the gateway's queued evidence will later say
was the reason (uplink, cloud endpoint or certificate: see model.LINK_KINDS); a node whose
heartbeat alone is silent while its truck's telemetry flows has a stopped heartbeat. A symptom is
listed under the most specific incident that explains it (a node's own before its truck's);
symptoms nothing explains stay `unexplained`, shown as problems of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .evidence import BadEvidence, GatewayEvidence
from .model import Diagnosis, Incident, Kind, Symptom
from .topology import Topology, TruckTopo

EVIDENCE_FRESH_S = 5.0  # the agent writes at least once a second: older than this, it is not writing
BRIDGE_SILENT_S = 10.0  # a bridge down whose telemetry the cloud side had this recently is reconnecting
EVIDENCE_SILENT_S = 3.0  # the cloud side: no evidence for this long after having had some = silence
# An agent's first documents (seq counts from 1 at its start): its ARP book, its own subscription to the
# broker and its feed window are still filling, so they say "unreachable", "inactive", "silent" falsely.
WARMUP_SEQ = 8
FEED_SERVICE, BROKER_SERVICE, HEARTBEAT_SERVICE = "transponder-feed", "mosquitto", "truck-heartbeat"


@dataclass(frozen=True)
class Stream:
    """One stream as the cloud side saw it: seconds since the last message (None: never seen)."""

    age_s: float | None


@dataclass(frozen=True)
class CloudView:
    """truck -> telemetry, node -> heartbeat, truck -> evidence; a truck missing from `evidence` means
    the cloud side does not track evidence (an older stand-in), not that it heard none. `refused`: truck ->
    why the cloud endpoint itself refuses the certificate that truck holds (e.g. its serial revoked),
    what the cloud side knows of its own accord, without waiting for the gateway's queued evidence."""

    telemetry: Mapping[str, Stream] = field(default_factory=dict)
    heartbeats: Mapping[str, Stream] = field(default_factory=dict)
    evidence: Mapping[str, Stream] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeCheck:
    """truckctl's direct probe of one node: reachable over SSH, and its units' `is-active` answers."""

    reachable: bool
    detail: str = "ok"
    services: Mapping[str, str] = field(default_factory=dict)
    timed_out: bool = False  # the probe ran out of time (a loaded host, a slow node): not proof it is down


@dataclass(frozen=True)
class Observations:
    now: float
    evidence: Mapping[str, GatewayEvidence | BadEvidence] = field(default_factory=dict)  # truck ->
    checks: Mapping[str, NodeCheck] | None = None  # node -> ; None: no direct checks (the cloud side)
    cloud: CloudView | None = None
    evidence_max_age_s: float | None = EVIDENCE_FRESH_S  # None: the caller already knows it is current
    evidence_age_s: Mapping[str, float] = field(default_factory=dict)  # truck -> age when read (else now - ts)


@dataclass
class _Found:
    incident: Incident
    explains: frozenset[str]
    rank: int
    settled: bool = False  # a link kind the cloud side established itself (see Diagnosis.settled)


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f} s ago"


def symptoms(topo: TruckTopo, obs: Observations, stale_after: float) -> list[Symptom]:
    """Everything observed wrong on one truck, each under a stable key."""
    found: list[Symptom] = []
    cloud = obs.cloud
    if cloud is not None:
        telemetry = cloud.telemetry.get(topo.name, Stream(None))
        if telemetry.age_s is None or telemetry.age_s > stale_after:
            found.append(Symptom(f"telemetry/{topo.name}", topo.name, None,
                                 f"{topo.name}: telemetry " + ("never seen" if telemetry.age_s is None else
                                                               f"STALE (last seen {telemetry.age_s:.0f} s ago)")
                                 + " at the cloud side"))
        for node in topo.nodes:
            beat = cloud.heartbeats.get(node.name, Stream(None))
            if beat.age_s is None or beat.age_s > stale_after:
                found.append(Symptom(f"heartbeat/{node.name}", topo.name, node.name,
                                     f"{node.name}: heartbeat " + ("never seen" if beat.age_s is None else
                                                                   f"STALE (last seen {beat.age_s:.0f} s ago)")
                                     + " at the cloud side"))
        evidence = cloud.evidence.get(topo.name)
        if evidence is not None and evidence.age_s is not None and evidence.age_s > EVIDENCE_SILENT_S:
            found.append(Symptom(f"evidence/{topo.name}", topo.name, topo.gateway.name,
                                 f"{topo.gateway.name}: no evidence at the cloud side for {evidence.age_s:.0f} s"))
    document = obs.evidence.get(topo.name)
    if isinstance(document, BadEvidence):
        found.append(Symptom(f"bad-evidence/{topo.name}", topo.name, topo.gateway.name,
                             f"{topo.gateway.name}: bad evidence ({document.reason})"))
    elif document is not None and document.seq > WARMUP_SEQ and not _current(document, obs):
        found.append(Symptom(f"old-evidence/{topo.name}", topo.name, topo.gateway.name,
                             f"{topo.gateway.name}: its evidence is {_evidence_age(document, obs):.0f} s old "
                             "(is truck-ops-agent running?)"))
    for node in topo.nodes:
        check = (obs.checks or {}).get(node.name)
        if check is None:
            continue
        if not check.reachable:
            found.append(Symptom(f"ssh/{node.name}", topo.name, node.name,
                                 f"{node.name}: not reachable over SSH ({check.detail})"))
        for unit, state in check.services.items():
            if state != "active":
                found.append(Symptom(f"service/{node.name}/{unit}", topo.name, node.name,
                                     f"{node.name}: {unit} {state}"))
    return found


def _evidence_age(document: GatewayEvidence, obs: Observations) -> float:
    return obs.evidence_age_s.get(document.truck, obs.now - document.ts)


def _current(document: GatewayEvidence, obs: Observations) -> bool:
    if document.seq <= WARMUP_SEQ:
        return False
    return obs.evidence_max_age_s is None or _evidence_age(document, obs) <= obs.evidence_max_age_s


def _truck_keys(topo: TruckTopo) -> frozenset[str]:
    return frozenset({f"telemetry/{topo.name}", f"evidence/{topo.name}"}
                     | {f"heartbeat/{n.name}" for n in topo.nodes})


def _node_keys(node: str, services: Mapping[str, str] | None) -> frozenset[str]:
    return frozenset({f"heartbeat/{node}", f"ssh/{node}"} | {f"service/{node}/{u}" for u in services or {}})


def _truck_causes(topo: TruckTopo, obs: Observations, stale_after: float, limit: float) -> list[_Found]:
    found: list[_Found] = []
    checks = obs.checks or {}
    gw = topo.gateway.name
    raw = obs.evidence.get(topo.name)
    evidence = raw if isinstance(raw, GatewayEvidence) and _current(raw, obs) else None
    cloud = obs.cloud
    truck_wide = _truck_keys(topo)

    def add(kind: Kind, hop: str, lines: list[str], explains: frozenset[str], rank: int, node: str | None = None,
            address: str | None = None, settled: bool = False) -> None:
        found.append(_Found(Incident(kind, topo.name, hop, node, address, tuple(lines), opened=obs.now),
                            explains, rank, settled))

    gw_check = checks.get(gw)
    if gw_check is not None and not gw_check.reachable and not gw_check.timed_out and evidence is None:
        lines = [f"{gw} not reachable over SSH from truckctl ({gw_check.detail})"]
        seen = cloud.evidence.get(topo.name) if cloud is not None else None
        if seen is not None:
            lines.append(f"the cloud side last had its evidence {_age(seen.age_s)}")
        add(Kind.NODE_DOWN, topo.hop_node(gw), lines, truck_wide | _node_keys(gw, gw_check.services), 0, gw)
        return found + _node_causes(topo, obs, None, stale_after, limit, skip=gw)

    if evidence is not None:
        link_ok = evidence.uplink.carrier and evidence.cloud.connected
        if not evidence.uplink.carrier:
            add(Kind.UPLINK_DOWN, topo.hop_uplink(),
                [f"{gw} {evidence.uplink.iface}: no carrier", *_queued(evidence)], truck_wide, 1)
        elif not evidence.cloud.connected and not (
                cloud and _heard_within(cloud.evidence, topo.name, EVIDENCE_SILENT_S)):
            # (the cloud side had this truck's evidence within EVIDENCE_SILENT_S: the link works, the agent
            # is reconnecting, e.g. after the cloud's broker restarted, which every truck sees at once)
            tls = evidence.cloud.error == "tls-refused"
            detail = f" ({evidence.cloud.detail})" if evidence.cloud.detail else ""
            add(Kind.TLS_REFUSED if tls else Kind.CLOUD_UNREACHABLE, topo.hop_tls() if tls else topo.hop_cloud(),
                [f"{gw} {evidence.uplink.iface} has carrier" + (f" and address {evidence.uplink.address}"
                                                                if evidence.uplink.address else ""),
                 ("the cloud endpoint refused the truck's certificate" if tls else
                  f"the cloud endpoint is not reachable ({evidence.cloud.error or 'no connection'})") + detail,
                 *_queued(evidence)], truck_wide, 1)
        if not evidence.broker_active:
            add(Kind.BROKER_DOWN, topo.hop_broker(), [f"{gw}: the truck broker (mosquitto) is not active"],
                truck_wide | {f"service/{gw}/{BROKER_SERVICE}", f"service/{gw}/{FEED_SERVICE}"}, 2)
        elif link_ok and not evidence.bridge_connected and not (
                cloud and _heard_within(cloud.telemetry, topo.name, BRIDGE_SILENT_S)):
            # (telemetry still arriving at the cloud side: a bridge reconnecting, e.g. every truck's after
            # the cloud's broker restarted, not yet an incident: book.HOLD_S at the cloud side likewise)
            add(Kind.BRIDGE_DOWN, topo.hop_bridge(),
                [f"{gw}: bridge not connected while the uplink and the cloud endpoint are fine", *_queued(evidence)],
                truck_wide - {f"evidence/{topo.name}"}, 3)
        if evidence.broker_active and evidence.feed_messages_10s == 0:
            add(Kind.FEED_SILENT, topo.hop_feed(),
                [f"{gw}: no transponder message in the last 10 s (last one {_age(evidence.feed_last_age_s)})"],
                frozenset({f"telemetry/{topo.name}", f"service/{gw}/{FEED_SERVICE}"}), 4)
    else:
        gw_mosquitto = (gw_check.services.get(BROKER_SERVICE) if gw_check is not None else None)
        if gw_mosquitto is not None and gw_mosquitto != "active":
            add(Kind.BROKER_DOWN, topo.hop_broker(), [f"{gw}: mosquitto {gw_mosquitto} (direct check)"],
                truck_wide - {f"evidence/{topo.name}"} | {f"service/{gw}/{BROKER_SERVICE}"}, 2)
        elif cloud is not None and _silent_truck(topo, cloud, stale_after):
            seen = cloud.evidence.get(topo.name)
            silence = (f"the cloud side hears nothing from {topo.name}: "
                       + (f"no evidence for {seen.age_s:.0f} s, " if seen and seen.age_s is not None else "")
                       + "telemetry and heartbeats silent")
            refused = cloud.refused.get(topo.name)
            if refused is not None:  # the cloud endpoint refuses it: no need to wait for the gateway's word
                add(Kind.TLS_REFUSED, topo.hop_tls(),
                    [f"the cloud endpoint refuses {topo.name}'s certificate ({refused})", silence],
                    truck_wide, 1, settled=True)
            else:
                add(Kind.UPLINK_DOWN, topo.hop_uplink(), [
                    silence, "from the cloud side an uplink down cannot be told from the cloud endpoint unreachable "
                    "or a refused certificate until the gateway's queued evidence arrives"], truck_wide, 1)
    return found + _node_causes(topo, obs, evidence, stale_after, limit)


def _queued(evidence: GatewayEvidence) -> list[str]:
    return [] if not evidence.bridge_queued else [f"{evidence.bridge_queued} message(s) queued on the gateway"]


def _heard_within(streams: Mapping[str, Stream], name: str, seconds: float) -> bool:
    """The cloud side received this stream (a truck's telemetry or evidence) within `seconds`."""
    seen = streams.get(name)
    return seen is not None and seen.age_s is not None and seen.age_s <= seconds


def _silent_truck(topo: TruckTopo, cloud: CloudView, stale_after: float) -> bool:
    """The cloud hears nothing from the truck, having heard from it before."""
    seen = cloud.evidence.get(topo.name)
    if seen is not None and seen.age_s is not None:
        return seen.age_s > EVIDENCE_SILENT_S
    telemetry = cloud.telemetry.get(topo.name, Stream(None)).age_s
    beats = [cloud.heartbeats.get(n.name, Stream(None)).age_s for n in topo.nodes]
    return telemetry is not None and telemetry > stale_after and all(b is None or b > stale_after for b in beats)


def _node_causes(topo: TruckTopo, obs: Observations, evidence: GatewayEvidence | None, stale_after: float,
                 limit: float, skip: str | None = None) -> list[_Found]:
    found: list[_Found] = []
    checks = obs.checks or {}
    cloud = obs.cloud
    telemetry_age = cloud.telemetry.get(topo.name, Stream(None)).age_s if cloud is not None else None
    # The path works when the telemetry is not stale yet AND the truck is not silent: a heartbeat beats
    # every few seconds, so for those seconds after a link is lost it crosses stale_after before the
    # telemetry (which flows continuously) does; the evidence's silence says the path is gone already.
    telemetry_flows = telemetry_age is not None and telemetry_age <= stale_after \
        and not (cloud is not None and _silent_truck(topo, cloud, stale_after))
    broker_up = evidence is None or evidence.broker_active  # a stopped broker hides every heartbeat from the gateway
    for node in topo.nodes:
        if node.name == skip:
            continue
        check = checks.get(node.name)
        seen = evidence.nodes.get(node.name) if evidence is not None else None
        keys = _node_keys(node.name, check.services if check else None)

        def add(kind: Kind, hop: str, lines: list[str], explains: frozenset[str], rank: int,
                name: str = node.name) -> None:
            found.append(_Found(Incident(kind, topo.name, hop, name, None, tuple(lines), opened=obs.now),
                                explains, rank))

        down_lines = []
        if check is not None and not check.reachable and not check.timed_out and seen is None \
                and not (node.gateway and evidence is not None):
            # When the gateway's current evidence speaks for the node (it answers ARP on the LAN; or it is
            # the gateway, whose evidence arrives), an SSH failure alone is truckctl's path, not the node.
            down_lines.append(f"{node.name} not reachable over SSH from truckctl ({check.detail})")
        if seen is not None and not seen.reachable and not node.gateway:
            down_lines.append(f"{topo.gateway.name} cannot reach {node.name} ({node.address}) on the truck LAN")
            if check is not None and not check.reachable:
                down_lines.append(f"{node.name} not reachable over SSH from truckctl ({check.detail})")
        if down_lines:
            add(Kind.NODE_DOWN, topo.hop_node(node.name), down_lines, keys, 5)
            continue
        beat_lines = []
        unit = check.services.get(HEARTBEAT_SERVICE) if check is not None else None
        if unit is not None and unit != "active":
            beat_lines.append(f"{node.name}: {HEARTBEAT_SERVICE} {unit} (direct check)")
        if broker_up and seen is not None and seen.heartbeat_age_s is not None and seen.heartbeat_age_s > stale_after:
            beat_lines.append(f"{topo.gateway.name} last had a heartbeat of {node.name} "
                              f"{seen.heartbeat_age_s:.0f} s ago (stale after {stale_after:.0f} s)")
        if not beat_lines and seen is None and telemetry_flows and cloud is not None:
            age = cloud.heartbeats.get(node.name, Stream(None)).age_s
            if age is not None and age > stale_after:
                beat_lines.append(f"heartbeat of {node.name} silent at the cloud side for {age:.0f} s while "
                                  f"{topo.name}'s telemetry arrives (the path works)")
        if beat_lines:
            add(Kind.HEARTBEAT_STOPPED, topo.hop_heartbeat(node.name), beat_lines,
                frozenset({f"heartbeat/{node.name}", f"service/{node.name}/{HEARTBEAT_SERVICE}"}), 6)
        offset = evidence.clock.get(node.name) if evidence is not None else None
        if offset is not None and abs(offset) > limit:
            add(Kind.CLOCK_SKEW, topo.hop_clock(node.name),
                [f"{node.name}: clock off by {offset:+.1f} s (limit {limit:g} s)"], frozenset(), 7)
    return found


def _conflicts(topology: Topology, obs: Observations) -> list[_Found]:
    """One incident per conflicting address, whichever gateways saw it, on the truck that owns it."""
    owners: dict[str, str] = {}  # mac -> "truck-b-hv1 (truck-b)", from neighbours that are not in conflict
    conflicting: dict[str, tuple[str, set[str], float]] = {}  # address -> (observing truck, macs, since)
    current = {truck: ev for truck, ev in obs.evidence.items()
               if isinstance(ev, GatewayEvidence) and _current(ev, obs)}
    for truck, evidence in current.items():
        for conflict in evidence.conflicts:
            seen = conflicting.setdefault(conflict.address, (truck, set(), conflict.since))
            seen[1].update(conflict.macs)
    for truck, evidence in current.items():
        for address, mac in evidence.neighbours:
            owner = topology.owner(address)
            if owner is not None and owner[0] == truck and address not in conflicting:
                owners[mac.lower()] = f"{owner[1]} ({owner[0]})"
    found = []
    for address, (observer, macs, since) in sorted(conflicting.items()):
        owner = topology.owner(address)
        truck = owner[0] if owner is not None else observer
        topo = topology.truck(truck)
        described = ", ".join(f"{mac} ({owners.get(mac.lower(), 'not one of the stage nodes')})"
                              for mac in sorted(macs))
        lines = [f"{address} is answered by {len(macs)} MAC(s): {described}",
                 f"configured for {owner[1]} ({owner[0]})" if owner else f"{address} is not a configured address",
                 f"seen by {observer}'s gateway"]
        hop = topo.hop_lan() if topo is not None else f"{truck} LAN"
        # the owner's own paths through that address (truckctl's SSH to it, replies to its heartbeat) may
        # reach the impostor's MAC: what fails there is this conflict, not a problem of its own
        explains = _node_keys(owner[1], None) if owner else frozenset()
        found.append(_Found(Incident(Kind.ADDRESS_CONFLICT, truck, hop, owner[1] if owner else None, address,
                                     tuple(lines), opened=since or obs.now), explains, 8))
    return found


def diagnose(topology: Topology, obs: Observations) -> Diagnosis:
    stale_after = topology.stale_after_s
    found: list[_Found] = []
    observed: list[Symptom] = []
    for topo in topology.trucks:
        observed += symptoms(topo, obs, stale_after)
        found += sorted(_truck_causes(topo, obs, stale_after, topology.clock_limit_s), key=lambda f: f.rank)
    found += _conflicts(topology, obs)
    claimed: dict[int, list[Symptom]] = {}
    unexplained = []
    for symptom in observed:
        candidates = [i for i, f in enumerate(found) if symptom.key in f.explains]
        if not candidates:
            unexplained.append(symptom)
            continue
        specific = [i for i in candidates if symptom.node is not None and found[i].incident.node == symptom.node]
        claimed.setdefault((specific or candidates)[0], []).append(symptom)
    incidents = tuple(f.incident.explaining(tuple(claimed.get(i, ()))) for i, f in enumerate(found))
    return Diagnosis(incidents, tuple(unexplained), frozenset(f.incident.id for f in found if f.settled))
