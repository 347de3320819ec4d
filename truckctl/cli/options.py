"""Options shared by several commands, declared once (molecule's click_cfg idea)."""

from __future__ import annotations

from typing import Annotated

import typer

# up, drift --fix and down: while the race is live, what would interrupt telemetry waits unless this is given
# (truckctl/lifecycle/racelive.py). --during-race is the same option under the name the race crew uses.
InterruptTelemetryOpt = Annotated[bool, typer.Option(
    "--interrupt-telemetry", "--during-race",
    help="Apply changes that interrupt the live telemetry feed (broker or bridge restarts, the gateway's firewall "
         "or network reloads, down) even while the race is live; without it they wait and exit is 3.")]
