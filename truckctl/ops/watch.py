"""The cloud side's watch: the gateways' evidence as it arrives, the streams' silence, the book.

Used by the lab's cloud stand-in (stdlib only, like the rest of this package). Each evidence
document is judged when it arrives: a current one with the cloud side's view of the streams; a
late one (queued on the gateway while its uplink was down, `ts` older than LATE_S on arrival) on
its own, at its own time, so an incident it shows opens and resolves on arrival. `tick` judges
every truck once a second: silence (no evidence on time for diagnose.EVIDENCE_SILENT_S) is the
truck's link. A late document is never the truck's present word: the queue after an outage is
delivered in windows, and one written before the gateway noticed the outage still says "connected";
judging the present by it would resolve the incident, and the rest of the queue would open it again.
The gateway's `ts` is compared with this clock for lateness only (the lab's are one clock; a gateway
whose clock lags by more than LATE_S is judged by its streams and its late documents alone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .book import Book, Event
from .diagnose import EVIDENCE_SILENT_S, CloudView, Observations, Stream, diagnose
from .evidence import GatewayEvidence, parse
from .topology import Topology

LATE_S = 3.0


@dataclass
class Watch:
    topology: Topology
    book: Book = field(default_factory=Book)
    latest: dict[str, GatewayEvidence] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # the latest, as received (bounded by parse)
    received: dict[str, float] = field(default_factory=dict)
    on_time: dict[str, GatewayEvidence] = field(default_factory=dict)  # the latest that arrived on time
    heard: dict[str, float] = field(default_factory=dict)  # when it arrived
    counts: dict[str, int] = field(default_factory=dict)
    bad: dict[str, int] = field(default_factory=dict)
    last_bad: dict[str, str] = field(default_factory=dict)

    def evidence(self, truck: str, node: str, payload: bytes, now: float,
                 streams: CloudView) -> list[Event]:
        """One document from `truck`'s topic for gateway `node`; the events it makes."""
        topo = self.topology.truck(truck)
        if topo is None:
            return []
        if node != topo.gateway.name:
            return self._bad(truck, f"published for {node[:64]!r}, not the truck's gateway")
        document = parse(payload, truck, topo.gateway.name)
        if not isinstance(document, GatewayEvidence):
            return self._bad(truck, document.reason)
        self.counts[truck] = self.counts.get(truck, 0) + 1
        previous = self.latest.get(truck)
        if previous is None or document.ts >= previous.ts:  # (a redelivered older one judges its own time only)
            self.latest[truck], self.received[truck] = document, now
            self.documents[truck] = json.loads(payload)
        if now - document.ts > LATE_S:
            late = diagnose(self.topology, Observations(document.ts, {truck: document}, evidence_max_age_s=None))
            return self.book.update(late, document.ts, {truck}, from_evidence=True, late=True)
        self.on_time[truck], self.heard[truck] = document, now
        return self._judge(now, streams, {truck}, from_evidence=True)

    def tick(self, now: float, streams: CloudView) -> list[Event]:
        return self._judge(now, streams, {t.name for t in self.topology.trucks}, from_evidence=False)

    def _bad(self, truck: str, reason: str) -> list[Event]:
        self.bad[truck] = self.bad.get(truck, 0) + 1
        self.last_bad[truck] = reason
        return []

    def _judge(self, now: float, streams: CloudView, trucks: set[str], from_evidence: bool) -> list[Event]:
        current = {t: d for t, d in self.on_time.items() if now - self.heard[t] <= EVIDENCE_SILENT_S}
        seen = {t.name: Stream(round(now - self.heard[t.name], 1) if t.name in self.heard else None)
                for t in self.topology.trucks}
        view = CloudView(streams.telemetry, streams.heartbeats, seen, streams.refused)
        found = diagnose(self.topology, Observations(now, dict(current), None, view, evidence_max_age_s=None))
        return self.book.update(found, now, trucks, from_evidence=from_evidence)

    def view(self, truck: str, now: float) -> dict[str, Any]:
        """The truck's evidence as the cloud side holds it (for /status)."""
        received = self.received.get(truck)
        return {"age_s": None if received is None else round(now - received, 1), "count": self.counts.get(truck, 0),
                "bad": self.bad.get(truck, 0), "last_bad": self.last_bad.get(truck),
                "document": self.documents.get(truck)}
