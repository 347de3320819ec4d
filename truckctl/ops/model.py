"""Incident kinds, incidents and the symptoms they explain (the vocabulary of CONTRACT-14)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """The root causes truckctl tells apart; the value is `kind` everywhere (JSON, notifications, portal)."""

    UPLINK_DOWN = "uplink-down"
    CLOUD_UNREACHABLE = "cloud-unreachable"
    TLS_REFUSED = "tls-refused"
    BROKER_DOWN = "broker-down"
    BRIDGE_DOWN = "bridge-down"
    FEED_SILENT = "feed-silent"
    NODE_DOWN = "node-down"
    HEARTBEAT_STOPPED = "heartbeat-stopped"
    CLOCK_SKEW = "clock-skew"
    ADDRESS_CONFLICT = "address-conflict"


# The truck's link to the cloud: seen from the cloud side, all three are the same silence until the
# gateway's queued evidence arrives, so they are one incident per truck whose kind is refined then.
LINK_KINDS = frozenset({Kind.UPLINK_DOWN, Kind.CLOUD_UNREACHABLE, Kind.TLS_REFUSED})

TITLES = {
    Kind.UPLINK_DOWN: "uplink down",
    Kind.CLOUD_UNREACHABLE: "cloud endpoint unreachable",
    Kind.TLS_REFUSED: "TLS / certificate refused",
    Kind.BROKER_DOWN: "truck broker down",
    Kind.BRIDGE_DOWN: "bridge to the cloud down",
    Kind.FEED_SILENT: "transponder feed silent",
    Kind.NODE_DOWN: "node down or cut from the LAN",
    Kind.HEARTBEAT_STOPPED: "heartbeat stopped",
    Kind.CLOCK_SKEW: "clock skew beyond the limit",
    Kind.ADDRESS_CONFLICT: "address conflict",
}


@dataclass(frozen=True)
class Symptom:
    """Something observed wrong: `key` names it stably (e.g. "heartbeat/truck-a-hv1")."""

    key: str
    truck: str | None
    node: str | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "truck": self.truck, "node": self.node, "text": self.text}


def incident_id(kind: Kind, truck: str, subject: str | None) -> str:
    group = "link" if kind in LINK_KINDS else kind.value
    return f"{group}/{truck}/{subject or '-'}"


@dataclass(frozen=True)
class Incident:
    """One root cause: where (truck, node or address, hop), why (evidence) and what it explains."""

    kind: Kind
    truck: str
    hop: str
    node: str | None = None
    address: str | None = None
    evidence: tuple[str, ...] = ()
    symptoms: tuple[Symptom, ...] = ()
    opened: float | None = None
    resolved: float | None = None
    source: str = "diagnosis"  # "diagnosis" (this run's own) or "cloud" (held by the cloud side only)

    @property
    def id(self) -> str:
        """Stable per (kind, truck, node or address); the link kinds share one per truck (see LINK_KINDS)."""
        return incident_id(self.kind, self.truck, self.address if self.kind is Kind.ADDRESS_CONFLICT else self.node)

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    def summary(self) -> str:
        where = self.address if self.kind is Kind.ADDRESS_CONFLICT else self.node
        head = f"{self.truck}: {self.title}" + (f" ({where})" if where else "") + f" at {self.hop}"
        return head + (f": {self.evidence[0]}" if self.evidence else "")

    def explaining(self, symptoms: tuple[Symptom, ...]) -> Incident:
        return replace(self, symptoms=symptoms)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind.value, "title": self.title, "truck": self.truck, "node": self.node,
                "address": self.address, "hop": self.hop, "evidence": list(self.evidence),
                "symptoms": [s.as_dict() for s in self.symptoms], "opened": self.opened, "resolved": self.resolved,
                "source": self.source, "summary": self.summary()}


@dataclass(frozen=True)
class Diagnosis:
    """Incidents (root-most first) and the symptoms none of them explains. `settled`: the ids of link
    incidents whose kind the cloud side established itself (a certificate it refuses), as certain as the
    gateway's own evidence: the book does not let a later document change it (see book.Book.update)."""

    incidents: tuple[Incident, ...] = ()
    unexplained: tuple[Symptom, ...] = field(default=())
    settled: frozenset[str] = field(default=frozenset())

    @property
    def healthy(self) -> bool:
        return not self.incidents and not self.unexplained
