"""`truckctl unlock STAGE`: clear this machine's stale lock, and force the team lock off the gateways.

This machine's lock (`lock.unlock`): a stale one (its run is gone) is cleared; a live one is refused.
The team lock on the gateways: a holder provably dead (a run of this host whose process is gone) is
released as is; any other holder (another machine's run, whose lease may simply not have run out)
is released only once confirmed (`confirm`: the CLI asks, or --yes), since its run, if still going,
stops at its next renewal. Every forced release is recorded: in the local journal (an `unlock` run,
listed by `truckctl runs`) and on each gateway (the same record, in the shared history).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import journal as journal_module
from truckctl.lifecycle import lock as local_lock
from truckctl.lifecycle import teamlock
from truckctl.lifecycle.teamlock import ForcedRelease, GatewayLock, Holder
from truckctl.processes import alive
from truckctl.target import Target

Confirm = Callable[[list[GatewayLock]], bool]


@dataclass(frozen=True)
class Unlocked:
    """What `truckctl unlock` did: this machine's lock, and the team lock forced off the gateways."""

    stage: str
    local: Mapping[str, object]  # this machine's lock, as `lock.unlock` says it
    cleared: bool
    message: str
    gateways: tuple[ForcedRelease, ...] = ()
    run_id: str | None = None  # the `unlock` run that recorded a forced release

    def to_json(self) -> JsonObject:
        """The JSON envelope's `result` of `truckctl unlock`."""
        run = {"run_id": self.run_id} if self.run_id is not None else {}
        return {"stage": self.stage, "local": dict(self.local), "cleared": self.cleared, **run,
                "gateways": [g.to_json() for g in self.gateways], "message": self.message}


def provably_dead(holder: Holder | None) -> bool:
    """Only provable on this host: its process is gone."""
    if holder is None or holder.host != socket.gethostname():
        return False
    return not alive(holder.pid or None)


def unlock(target: Target, stage_name: str, confirm: Confirm, force_local: bool = False) -> Unlocked:
    from truckctl.config.loader import load_stage
    from truckctl.lifecycle.run import env_secrets

    project = target.project
    stage = load_stage(project, stage_name)
    local = local_lock.unlock(project, stage_name, force_local)
    here = f"this machine: {local['message']}"
    try:
        transport = teamlock.transport(target, stage)
    except TruckctlError as exc:
        return Unlocked(stage_name, local, bool(local["cleared"]), f"{here}; the gateways were not reached ({exc})")
    gws = teamlock.gateways(stage)
    held = [lock for lock in teamlock.read_locks(stage_name, gws, transport) if lock.state == "held"]
    if not held:
        return Unlocked(stage_name, local, bool(local["cleared"]),
                        f"{here}; no gateway holds a lock on {stage_name}")
    live = [lock for lock in held if not provably_dead(lock.holder)]
    if live and not confirm(live):
        raise TruckctlError([Problem("not-confirmed", f"the lock of {lock.description} on {lock.gateway} was "
                                     "not released: not confirmed (give --yes where there is no terminal)",
                                     lock.gateway) for lock in live], ExitCode.USAGE,
                            {"stage": stage_name, "local": local})
    record = journal_module.Journal(project, stage_name, "unlock", target.kind.value,
                                    journal_module.Redactor(env_secrets(stage)))
    holder = teamlock.this_holder(f"unlock {stage_name} --target {target.kind.value}", record.run_id)
    holders = [lock.holder.model_dump() if lock.holder is not None else None for lock in held]
    record.event("lock-forced", "run", gateways=[lock.gateway for lock in held], holders=holders)
    summary = {"stage": stage_name, "forced": [{"gateway": lock.gateway, "holder": who}
                                                for lock, who in zip(held, holders, strict=True)]}
    record.finish(ExitCode.OK, [], summary)
    brief = record.brief() or {}
    released = teamlock.force_release(stage_name, [g for g in gws if g.node in {lock.gateway for lock in held}],
                                      transport, teamlock.run_record(brief, holder))
    not_reached = [r.gateway for r in released if not r.reached]
    if not_reached:
        record.note("lock", f"not released on {', '.join(not_reached)} (unreachable): its lease runs out there")
    who = "; ".join(sorted({str(lock.description) for lock in held}))
    return Unlocked(stage_name, local, True,
                    f"{here}; gateways: released the lock of {who} on "
                    + ", ".join(r.gateway for r in released if r.gateway not in not_reached)
                    + (f" (not reached: {', '.join(not_reached)})" if not_reached else "")
                    + f"; recorded as run {record.run_id}", tuple(released), record.run_id)
