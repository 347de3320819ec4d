"""Adapter from CrossGuard (pulumi_policy) to the project's policy rules, for policypack/.

Duck-typed over `PolicyResource` and `StackValidationArgs`, so it is testable without
pulumi_policy installed. The engine reports no retain_on_delete to policy packs: that flag is
left unknown (None) and the retention rule then checks protection only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from truckctl.cloud.policy import Rule
from truckctl.cloud.resources import COMPONENT_TYPE_PREFIX, PlannedResource, normalise


def _component(resource: Any) -> str:
    parent = getattr(resource, "parent", None)
    while parent is not None:
        if str(parent.resource_type).startswith(COMPONENT_TYPE_PREFIX):
            return str(parent.name)
        parent = getattr(parent, "parent", None)
    return "stack"


def planned_resources(resources: Iterable[Any]) -> list[PlannedResource]:
    return [
        PlannedResource(
            type=r.resource_type,
            name=r.name,
            inputs=normalise(dict(r.props)),
            depends_on=[d.name for d in (getattr(r, "dependencies", None) or [])],
            component=_component(r),
            protect=bool(getattr(r.opts, "protect", False)),
            retain_on_delete=getattr(r.opts, "retain_on_delete", None),
            urn=str(getattr(r, "urn", "") or ""),
        )
        for r in resources
        if not str(r.resource_type).startswith(("pulumi:", COMPONENT_TYPE_PREFIX))
    ]


def stack_validation(rule: Rule) -> Callable[[Any, Callable[..., None]], None]:
    """A CrossGuard stack validation running one rule and reporting each violation on its resource."""

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        urns = {r.name: r.urn for r in args.resources}
        for violation in rule.check(planned_resources(args.resources)):
            report_violation(violation.message, urns.get(violation.resource))

    return validate
