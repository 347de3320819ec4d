"""Incidents over time: which opened, which resolved, each exactly once (the cloud side's memory).

`update` takes one diagnosis of some trucks at some time and returns the events to notify: one
"incident-opened" per incident not open yet, one "incident-resolved" per open incident of those
trucks the diagnosis no longer has. Repeats and the symptoms of an incident never make another
event. A diagnosis older than an incident's opening (late evidence from before it) resolves nothing;
late evidence may open and resolve an incident of its own (the pair is then sent on arrival). The
three link kinds share an incident per truck (model.LINK_KINDS): an incident opened from the
cloud side's silence takes the kind the gateway's evidence later gives, once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from .model import LINK_KINDS, Diagnosis, Incident

RECENT = 50
OPENED, RESOLVED = "incident-opened", "incident-resolved"


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

    def update(self, diagnosis: Diagnosis, at: float, trucks: set[str], *, from_evidence: bool = False) -> list[Event]:
        """Apply a diagnosis made at `at` covering `trucks`; return the events, opened before resolved.

        from_evidence: the link kind of this diagnosis comes from the gateway's own document (not silence)."""
        events: list[Event] = []
        current = {i.id: i for i in diagnosis.incidents}
        for key, incident in current.items():
            held = self.open.get(key)
            if held is None:
                opened = replace(incident, opened=at, resolved=None)
                self.open[key] = opened
                if from_evidence and incident.kind in LINK_KINDS:
                    self._confirmed.add(key)
                events.append(Event(OPENED, opened))
                continue
            refine = incident.kind in LINK_KINDS and from_evidence and key not in self._confirmed
            if refine:
                self._confirmed.add(key)
            kind = incident.kind if refine else held.kind
            evidence = incident.evidence if refine or incident.kind == held.kind else held.evidence
            self.open[key] = replace(held, kind=kind, hop=incident.hop if refine else held.hop, evidence=evidence,
                                     symptoms=incident.symptoms or held.symptoms,
                                     opened=min(held.opened or at, at) if refine else held.opened)
        for key, held in list(self.open.items()):
            if key in current or held.truck not in trucks or at < (held.opened or 0):
                continue
            del self.open[key]
            self._confirmed.discard(key)
            closed = replace(held, resolved=at)
            self.recent.append(closed)
            events.append(Event(RESOLVED, closed))
        return events

    def held(self) -> dict[str, Any]:
        return {"open": [i.as_dict() for i in self.open.values()],
                "recent": [i.as_dict() for i in reversed(self.recent)]}
