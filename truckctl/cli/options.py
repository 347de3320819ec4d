"""Options shared by the commands, declared once (molecule's click_cfg): the target and the tier are
enums, so `--help` lists their choices and Click refuses anything else as a usage error (exit 2).

Only typer and the light `truckctl.target` are imported here (`truckctl --help` stays fast).
"""

from __future__ import annotations

from typing import Annotated

import typer

from truckctl.target import TargetKind, Tier

TargetOpt = Annotated[TargetKind, typer.Option(
    "--target", help="lab: simulated trucks, offline cloud plan and cloud stand-in; aws: real trucks and Pulumi.")]
TierOpt = Annotated[Tier, typer.Option("--tier", help="Which tier: cloud, truck or all.")]

# up, drift --fix and down: while the race is live, what would interrupt telemetry waits unless this is given
# (truckctl/lifecycle/racelive.py). --during-race is the same option under the name the race crew uses.
InterruptTelemetryOpt = Annotated[bool, typer.Option(
    "--interrupt-telemetry", "--during-race",
    help="Apply changes that interrupt the live telemetry feed (broker or bridge restarts, the gateway's firewall "
         "or network reloads, down) even while the race is live; without it they wait and exit is 3.")]

# up and drift: the fast path (truckctl/truck/fastcheck.py) says "as at the last clean run" from one SSH call per
# node; --full runs site.yml anyway.
FullOpt = Annotated[bool, typer.Option(
    "--full", help="Run site.yml on the nodes even when none moved since the last clean run (no fast path).")]
