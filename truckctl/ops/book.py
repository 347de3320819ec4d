"""Incidents over time: which opened, which resolved, each exactly once (the cloud side's memory).

`update` takes one diagnosis of some trucks at some time and returns the events to notify: one
"incident-opened" per incident not open yet, one "incident-resolved" per open incident of those
trucks the diagnosis no longer has. Repeats and the symptoms of an incident never make another
event. A diagnosis older than an incident's opening (late evidence from before it) resolves nothing;
late evidence may open and resolve an incident of its own (the pair is then sent on arrival), but not
one from a time the book already closed (a document the gateway sent twice, QoS 1, after its
incident resolved). The
three link kinds share an incident per truck (model.LINK_KINDS): an incident opened from the
cloud side's silence takes the kind the gateway's evidence later gives, once. A kind the cloud side
established itself (a certificate it refuses: Diagnosis.settled) is as certain as that evidence: the
gateway's queued documents do not change it (the first of them, written as its connection dropped,
says only "connection lost").

A bridge is let reconnect before it is an incident of its own: bridge-down opens only once it has
lasted HOLD_S, and not within RECOVERY_S of the truck's link or broker coming back (mosquitto's
bridge retries with a back-off, `restart_timeout 1 5` in the telemetry role; it was 2 30): that
silence belongs to the incident that just resolved. Likewise the feed's 10 s window and the heartbeats'
next beat after the broker comes back, and a node's next beat after it is back on its LAN (NODE_RECOVERY_S).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from .model import LINK_KINDS, Diagnosis, Incident, Kind

RECENT = 50
OPENED, RESOLVED = "incident-opened", "incident-resolved"
HOLD_S = {Kind.BRIDGE_DOWN: 10.0}
RECOVERY_S = {Kind.BRIDGE_DOWN: (LINK_KINDS | {Kind.BROKER_DOWN}, 35.0),
              # the gateway counts the feed over 10 s through its broker: a restarted broker reads as silence
              Kind.FEED_SILENT: (frozenset({Kind.BROKER_DOWN}), 12.0),
              # the gateway's own heartbeat ages ran on while its broker was down: the next beat (every
              # heartbeat_interval_s, 5 s in the example race) must arrive through the restarted broker first
              Kind.HEARTBEAT_STOPPED: (frozenset({Kind.BROKER_DOWN}), 12.0)}
# The same for one node: a node back on its LAN (cut, switched off) beats again at its next interval
NODE_RECOVERY_S = {Kind.HEARTBEAT_STOPPED: (frozenset({Kind.NODE_DOWN}), 12.0)}


@dataclass(frozen=True)
class Event:
    event: str  # OPENED or RESOLVED
    incident: Incident

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.event, "incident": self.incident.as_dict()}


@dataclass
class Book:
    open: dict[str, Incident] = field(default_factory=dict)
    recent: deque[Incident] = field(default_factory=lambda: deque(maxlen=RECENT))  # resolved, newest last
    _confirmed: set[str] = field(default_factory=set)  # link incidents whose kind came from evidence
    _pending: dict[str, float] = field(default_factory=dict)  # held kinds: id -> first seen
    _resolved_at: dict[tuple[str, Kind], float] = field(default_factory=dict)  # (truck, kind) -> last resolved
    _node_resolved_at: dict[tuple[str, str, Kind], float] = field(default_factory=dict)  # (truck, node, kind) ->
    _closed_at: dict[str, float] = field(default_factory=dict)  # id -> when it last resolved

    def _ready(self, incident: Incident, at: float) -> bool:
        """Whether a held kind has lasted long enough, and is not the tail of a just-resolved cause."""
        hold = HOLD_S.get(incident.kind)
        if hold is not None and at - self._pending.setdefault(incident.id, at) < hold:
            return False
        causes, window = RECOVERY_S.get(incident.kind, (frozenset(), 0.0))
        if any(at - self._resolved_at.get((incident.truck, cause), -1e18) < window for cause in causes):
            return False
        causes, window = NODE_RECOVERY_S.get(incident.kind, (frozenset(), 0.0))
        return incident.node is None or not any(
            at - self._node_resolved_at.get((incident.truck, incident.node, cause), -1e18) < window for cause in causes)

    def update(self, diagnosis: Diagnosis, at: float, trucks: set[str], *, from_evidence: bool = False,
               late: bool = False) -> list[Event]:
        """Apply a diagnosis made at `at` covering `trucks`; return the events, opened before resolved.

        from_evidence: the link kind of this diagnosis comes from the gateway's own document (not silence).
        late: from a document that arrived late, which proves its truck's link was not delivering then
        (whatever the gateway believed): it resolves no link incident."""
        events: list[Event] = []
        current = {i.id: i for i in diagnosis.incidents if i.truck in trucks}
        for key in [k for k in self._pending if k not in current and k.split("/")[1] in trucks]:
            del self._pending[key]  # it did not last: its hold starts again if it comes back
        closing = [key for key, held in self.open.items()
                   if key not in current and held.truck in trucks and at >= (held.opened or 0)
                   and not (late and held.kind in LINK_KINDS)]
        for key in closing:  # first: what resolves now is recovering now (see RECOVERY_S)
            ending = self.open[key]
            self._resolved_at[(ending.truck, ending.kind)] = self._closed_at[key] = at
            if ending.node is not None:
                self._node_resolved_at[(ending.truck, ending.node, ending.kind)] = at
        for key, incident in current.items():
            held = self.open.get(key)
            # (late evidence from a time the book already closed opens nothing: a redelivery, a tail)
            already_closed = late and at <= self._closed_at.get(key, -1e18)
            if held is None and (already_closed or not self._ready(incident, at)):
                continue
            certain = from_evidence or key in diagnosis.settled
            if held is None:
                self._pending.pop(key, None)
                opened = replace(incident, opened=at, resolved=None)
                self.open[key] = opened
                if certain and incident.kind in LINK_KINDS:
                    self._confirmed.add(key)
                events.append(Event(OPENED, opened))
                continue
            refine = incident.kind in LINK_KINDS and certain and key not in self._confirmed
            if refine:
                self._confirmed.add(key)
            kind = incident.kind if refine else held.kind
            evidence = incident.evidence if refine or incident.kind == held.kind else held.evidence
            self.open[key] = replace(held, kind=kind, hop=incident.hop if refine else held.hop, evidence=evidence,
                                     symptoms=incident.symptoms or held.symptoms,
                                     opened=min(held.opened or at, at) if refine else held.opened)
        for key in closing:
            held = self.open.pop(key)
            self._confirmed.discard(key)
            closed = replace(held, resolved=at)
            self.recent.append(closed)
            events.append(Event(RESOLVED, closed))
        return events

    def held(self) -> dict[str, Any]:
        """Open ones (a link incident opened from silence alone and not yet told apart is `provisional`)
        and recently resolved ones, newest first."""
        return {"open": [{**i.as_dict(), "provisional": i.kind in LINK_KINDS and key not in self._confirmed}
                         for key, i in self.open.items()],
                "recent": [i.as_dict() for i in reversed(self.recent)]}
