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
from collections.abc import Callable
from typing import Any

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import journal as journal_module
from truckctl.lifecycle import lock as local_lock
from truckctl.lifecycle import teamlock
from truckctl.processes import alive
from truckctl.target import Target

Confirm = Callable[[list[dict[str, Any]]], bool]


def provably_dead(holder: dict[str, Any] | None) -> bool:
    """Only provable on this host: its process is gone."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    return not alive(holder.get("pid") or None)


def unlock(target: Target, stage_name: str, confirm: Confirm, force_local: bool = False) -> dict[str, Any]:
    from truckctl.config.loader import load_stage
    from truckctl.lifecycle.run import env_secrets

    project = target.project
    stage = load_stage(project, stage_name)
    result: dict[str, Any] = {"stage": stage_name, "local": local_lock.unlock(project, stage_name, force_local)}
    try:
        transport = teamlock.transport(target, stage)
    except TruckctlError as exc:
        result.update(cleared=result["local"]["cleared"], gateways=[],
                      message=f"this machine: {result['local']['message']}; the gateways were not reached ({exc})")
        return result
    gws = teamlock.gateways(stage)
    held = [lock for lock in teamlock.read_locks(stage_name, gws, transport) if lock["state"] == "held"]
    if not held:
        result.update(cleared=result["local"]["cleared"], gateways=[],
                      message=f"this machine: {result['local']['message']}; no gateway holds a lock on {stage_name}")
        return result
    live = [lock for lock in held if not provably_dead(lock["holder"])]
    if live and not confirm(live):
        raise TruckctlError([Problem("not-confirmed", f"the lock of {lock['description']} on {lock['gateway']} was "
                                     "not released: not confirmed (give --yes where there is no terminal)",
                                     lock["gateway"]) for lock in live], ExitCode.USAGE, result)
    record = journal_module.Journal(project, stage_name, "unlock", target.kind.value,
                                    journal_module.Redactor(env_secrets(stage)))
    holder = teamlock.this_holder(f"unlock {stage_name} --target {target.kind.value}", record.run_id)
    record.event("lock-forced", "run", gateways=[lock["gateway"] for lock in held],
                 holders=[lock["holder"] for lock in held])
    summary = {"stage": stage_name, "forced": [{"gateway": lock["gateway"], "holder": lock["holder"]}
                                                for lock in held]}
    record.finish(ExitCode.OK, [], summary)
    brief = record.brief() or {}
    released = teamlock.force_release(stage_name, [g for g in gws if g.node in {lock["gateway"] for lock in held}],
                                      transport, teamlock.run_record(brief, holder))
    not_reached = [r["gateway"] for r in released if r["state"] not in ("forced", "free")]
    if not_reached:
        record.note("lock", f"not released on {', '.join(not_reached)} (unreachable): its lease runs out there")
    who = "; ".join(sorted({lock["description"] for lock in held}))
    result.update(cleared=True, run_id=record.run_id, gateways=released,
                  message=f"this machine: {result['local']['message']}; gateways: released the lock of {who} on "
                  + ", ".join(r["gateway"] for r in released if r["gateway"] not in not_reached)
                  + (f" (not reached: {', '.join(not_reached)})" if not_reached else "")
                  + f"; recorded as run {record.run_id}")
    return result
