"""Planned resources: what a stack program would create, in a plain form policies and renderers use.

Pure (no pulumi import): the offline plan builds these from what its mock monitor captured, and
the CrossGuard pack from `PolicyResource`s. Inputs are normalised once, here: the engine sends
camelCase keys and numbers as floats; we use the snake_case names of the Python program and ints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from truckctl.jsondoc import JsonObject

SECRET = "[secret]"
# The type of the stack program's component resources (stacks/race_cloud/component.py TYPE_PREFIX,
# which stays its own: stacks/ is a plain Pulumi project; tests/unit/cloud checks they agree).
COMPONENT_TYPE_PREFIX = "truckctl:race:"

# Maps whose keys are user data (tag keys, Glue parameters, alarm dimensions): never renamed.
_OPAQUE_MAPS = frozenset({"tags", "tags_all", "parameters", "dimensions", "attributes", "default_tags"})
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


@dataclass(frozen=True)
class PlannedResource:
    type: str  # e.g. aws:s3/bucket:Bucket
    name: str  # logical name, unique within the stack
    inputs: JsonObject
    depends_on: list[str] = field(default_factory=list)
    component: str = ""
    id: str = ""
    protect: bool = False
    retain_on_delete: bool | None = False  # None: the engine does not report it (CrossGuard)
    urn: str = ""  # the engine's identity of the resource: a move compares plans by it

    @property
    def short_type(self) -> str:
        """`aws:s3/bucket:Bucket` -> `s3:Bucket`, for tables."""
        head, _, kind = self.type.rpartition(":")
        module = head.split(":", 1)[-1].split("/", 1)[0]
        return f"{module}:{kind}"

    def as_dict(self) -> JsonObject:
        return {"type": self.type, "name": self.name, "component": self.component, "inputs": self.inputs,
                "depends_on": self.depends_on, "protect": self.protect, "retain_on_delete": self.retain_on_delete,
                "urn": self.urn}


def snake(key: str) -> str:
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), key)


def normalise(value: Any, secret: Any = None, opaque: bool = False) -> Any:
    """snake_case keys, integral floats as ints, secrets replaced by `[secret]`.

    `secret` is a predicate telling whether a value is a wrapped secret (the engine's
    representation differs between the mock monitor and CrossGuard).
    """
    if secret is not None and secret(value):
        return SECRET
    if isinstance(value, Mapping):
        return {(str(k) if opaque else snake(str(k))): normalise(v, secret, snake(str(k)) in _OPAQUE_MAPS)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v, secret) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def by_type(resources: list[PlannedResource], type_: str) -> list[PlannedResource]:
    return [r for r in resources if r.type == type_]
