"""A stage move: what changes in the race's one stack when it goes from one day to the next.

Two plans of the same stack (the race at stage A, the race at stage B) are compared by URN: a URN
only in B is created, only in A deleted; in both, the inputs are compared and the replacement table
(truckctl/cloud/replacement.py) says whether the difference replaces the resource or updates it in
place. The rule `move-keeps-data-and-identity` fails a move that would replace or delete a resource
holding data or identity (lake, stream, delivery, key, things, certificates, VPN hub and its key).

Pure (no pulumi import): the offline plan, `up` and `rotate-cert` use it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from truckctl.cloud.policy import Violation
from truckctl.cloud.replacement import changed_keys, holds, replacing_keys
from truckctl.cloud.resources import PlannedResource

MOVE_RULE = "move-keeps-data-and-identity"
MOVE_RULE_DESCRIPTION = ("A stage move replaces and deletes no resource holding data or identity (data lake, "
                         "ingest stream and delivery, KMS key, IoT things and certificates, VPN hub, its address "
                         "and key): those live the race; only a deliberate `rotate-cert` replaces a certificate.")
Op = Literal["create", "update", "replace", "delete"]


@dataclass(frozen=True)
class Change:
    op: Op
    urn: str
    type: str
    name: str
    component: str
    keys: tuple[str, ...] = ()  # the inputs that differ (names only, never values)
    replaced_on: tuple[str, ...] = ()  # of those, the ones the provider replaces the resource for
    holds: str = ""  # what the resource holds, if it holds data or identity

    @property
    def loses(self) -> bool:
        """Replacing or deleting this resource would lose data or identity."""
        return bool(self.holds) and self.op in ("replace", "delete")

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "urn": self.urn, "type": self.type, "name": self.name, "component": self.component,
                "keys": list(self.keys), "replaced_on": list(self.replaced_on), "holds": self.holds}


@dataclass(frozen=True)
class Move:
    stage: str  # where the race goes ("race": between stages)
    from_stage: str | None  # where it comes from (None: nothing deployed yet)
    changes: tuple[Change, ...]
    unchanged: int
    allowed: frozenset[str] = field(default_factory=frozenset)  # URNs a deliberate act may replace

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(c.op for c in self.changes)
        return {op: counted.get(op, 0) for op in ("create", "update", "replace", "delete")} | {"same": self.unchanged}

    def violations(self) -> list[Violation]:
        return [Violation(MOVE_RULE, c.name, f"moving {self.from_stage} -> {self.stage} would {c.op} it "
                          f"({c.holds}" + (f"; replaced on {', '.join(c.replaced_on)})" if c.replaced_on else ")"))
                for c in self.changes if c.loses and c.urn not in self.allowed]

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "from": self.from_stage, "counts": self.counts,
                "changes": [c.as_dict() for c in self.changes],
                "policy": [v.as_dict() for v in self.violations()], "policy_rule": MOVE_RULE}


def _key(resource: PlannedResource) -> str:
    return resource.urn or f"{resource.type}::{resource.name}"


def diff(before: Sequence[PlannedResource], after: Sequence[PlannedResource], stage: str, from_stage: str | None,
         allowed: frozenset[str] = frozenset()) -> Move:
    """The move from the plan `before` (stage `from_stage`) to the plan `after` (stage `stage`)."""
    old = {_key(r): r for r in before}
    new = {_key(r): r for r in after}
    changes: list[Change] = []
    unchanged = 0
    for key, resource in new.items():
        previous = old.get(key)
        if previous is None:
            changes.append(Change("create", key, resource.type, resource.name, resource.component,
                                  holds=holds(resource.type)))
            continue
        keys = changed_keys(previous, resource)
        if not keys:
            unchanged += 1
            continue
        replaced_on = replacing_keys(previous, resource)
        changes.append(Change("replace" if replaced_on else "update", key, resource.type, resource.name,
                              resource.component, keys, replaced_on, holds(resource.type)))
    for key, resource in old.items():
        if key not in new:
            changes.append(Change("delete", key, resource.type, resource.name, resource.component,
                                  holds=holds(resource.type)))
    return Move(stage, from_stage, tuple(changes), unchanged, allowed)
