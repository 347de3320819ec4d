"""Targets: where a stage's environment runs (the lab on this machine, or the real trucks and AWS).

Everything that differs between the two lives in one object (`truckctl.target.Target`): `LabTarget`
(targets/lab.py) and `AwsTarget` (targets/aws.py). The CLI chooses one, once, from `TargetKind`,
with `for_kind`; the lifecycle (up, drift, status, down) only talks to the object it is given.
Light to import: the implementations load inside `for_kind`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from truckctl.target import TargetKind

if TYPE_CHECKING:
    from truckctl.project import Project
    from truckctl.target import Target


def for_kind(kind: TargetKind | str, project: Project) -> Target:
    """The target of that kind for a project (a string is checked: a usage error names the choices)."""
    from truckctl.target import parse_kind

    chosen = parse_kind(kind)
    if chosen is TargetKind.lab:
        from truckctl.targets.lab import LabTarget

        return LabTarget(project)
    from truckctl.targets.aws import AwsTarget

    return AwsTarget(project)
