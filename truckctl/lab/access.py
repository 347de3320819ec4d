"""How truckctl reaches the running lab's nodes: whether a lab runs, and the connection to its nodes.

Apart from the lab's machinery (lab.control, the stand-in's) on purpose: every command that reaches the
nodes needs this first, before anything else can start (`status`' probes wait for it).
"""

from __future__ import annotations

from truckctl.errors import TruckctlError
from truckctl.lab import state as st
from truckctl.lab.operator import outside
from truckctl.lab.paths import LabPaths
from truckctl.lab.plan import LabPlan
from truckctl.lab.ssh import USER, LabConnection
from truckctl.project import Project


def connection_for(paths: LabPaths) -> LabConnection:
    return LabConnection(USER, paths.ssh_key, paths.known_hosts)


def running_plan(project: Project, stage: str | None = None) -> LabPlan:
    """The plan of the lab that runs (of `stage` when given), or the one-line reason there is none."""
    given = outside(project.state_dir)
    if given is not None:  # an outside operator's state: the lab runs on the lab's own machine
        if stage is not None and given.plan.stage != stage:
            raise TruckctlError.single("lab-other-stage", f"operator {given.operator!r} was given the lab of "
                                       f"{given.plan.stage}, not {stage}: add the operator again once the lab "
                                       f"is up for {stage}")
        return given.plan
    state = st.load(project.state_dir)
    if state is None:
        raise TruckctlError.single("lab-not-up", "no lab is up: run `truckctl lab up STAGE` first")
    if stage is not None and state.stage != stage:
        raise TruckctlError.single("lab-other-stage", f"the lab is on {state.stage}, not {stage}: run "
                                   f"`truckctl lab up {stage}` to move it (the stand-in keeps its data)")
    if not state.complete:
        raise TruckctlError.single("lab-incomplete", "the lab is half-built: run `truckctl lab down`, then "
                                   "`truckctl lab up` again")
    return state.plan


def connection(project: Project) -> LabConnection:
    """How this operator reaches the running lab's nodes (host-key checking on)."""
    running_plan(project)
    return connection_for(LabPaths(project.state_dir))
