"""`truckctl down STAGE [--race]`: end the day, or tear the race down, without losing the race's data.

The race has one cloud (docs/CLOUD.md). So there are two teardowns:
- `down STAGE` ends the day (journal command `down`): the stage's truck tier is taken down
  (step `truck`), the trucks' identities revoked only where they do not live the race (the lab's
  stand-in certificates, step `revoke`), and the race's cloud leaves the stage (step `cloud`:
  `Target.end_day`; on aws the day's alarms and LAN routes removed). What lives the race stays, the
  trucks' IoT certificates included (rotated on purpose by `rotate-cert`, deactivated only when the
  race ends). `--delete-data` is refused without `--race`: a day's down never deletes the lake.
- `down STAGE --race` tears the race's cloud down after the race (journal command `down-race`), in
  the order below; STAGE is the tech zone whose trucks are taken down (the last one).

Order of `--race`, one locked and journaled run (steps `truck`, `revoke`, `cloud`):
1. truck: playbooks/down.yml on every node: heartbeats, the lab's simulated feed and the telemetry
   bridge stopped and disabled, the truck's certificate and key removed from the gateway;
2. revoke: the trucks' certificates refused at the cloud side (lab: the stand-in's CRL; aws: every
   truck's IoT certificate set INACTIVE through the IoT API, truckctl/cloud/revoke.py);
3. cloud: aws: the Pulumi destroy, which keeps the data lake and its KMS key unless delete_data
   (it deletes the certificates); lab: nothing to destroy (the cloud tier is an offline plan; the
   stand-in lives until `lab down`).

On aws the revocation comes FIRST, before the truck tier is touched: a stolen or unreachable truck is
refused by the cloud whatever else fails. If it fails, nothing else is done: the run stops (exit 1)
saying which certificates are still trusted and how to deactivate them, and a re-run resumes there.

A node that cannot be taken down (unreachable, or a task failed): the others are, the certificates
are still revoked (so a truck that could not be stopped is refused at the cloud side), but the
cloud tier is NOT destroyed: the run fails (exit 1) naming the nodes, and re-running `down` once
they are back completes it. The cloud is never torn down under a truck that may still be sending.

Every step is idempotent. A re-run right after a down that failed, was interrupted or died skips
the steps that run recorded as done, and redoes the rest; a day's down resumes only a day's down,
a race's only a race's (the journal's command tells them apart).

Confirmation is decided by `confirm` (the CLI supplies the prompt; the core never prompts) and
checked again by `down` before the lock or the journal are touched: unconfirmed, nothing changes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import journal, racelive
from truckctl.lifecycle.steps import StepRecord, StepResult, StepSummary
from truckctl.project import Project
from truckctl.target import Target, TargetKind, TeardownStart

if TYPE_CHECKING:
    from truckctl.config.model import Stage
    from truckctl.lifecycle.finished import RunEnd
    from truckctl.lifecycle.run import Run
    from truckctl.remote import Connection
    from truckctl.truck.plan import RunPlan
    from truckctl.truck.tier import Runner, UpCallbacks

DOWN_PLAYBOOK = "down.yml"
STEPS = ("truck", "revoke", "cloud")
COMMANDS = {False: "down", True: "down-race"}  # the journal's command by scope (the race's teardown or the day's)
RESUMABLE = ("failed", "interrupted", "died")
GATEWAY_STORE = "/var/lib/mosquitto"


# ---- confirmation ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Confirmation:
    teardown: bool = False  # the stage name typed, or --yes
    delete_data: bool = False  # the stage name typed with --delete-data, or --confirm-delete-data STAGE


def confirm(stage: str, target: Target, *, yes: bool, delete_data: bool, confirm_delete_data: str | None,
            interactive: bool, ask: Callable[[str], str], race: bool = True) -> Confirmation:
    """The confirmation policy.

    - `--yes` confirms the teardown; without it a terminal user types the stage name.
    - `--delete-data` always needs the stage name typed, even with --yes; where nobody can type
      (CI), `--confirm-delete-data STAGE` is that typed name.
    - Nobody to ask and not confirmed by flags: refused as a usage error (exit 2), nothing changed.
    - A wrong name typed: refused (exit 1), nothing changed.
    """
    if confirm_delete_data is not None and not delete_data:
        raise TruckctlError.single("usage", "--confirm-delete-data only goes with --delete-data",
                                   "--confirm-delete-data", ExitCode.USAGE)
    if confirm_delete_data is not None and confirm_delete_data != stage:
        raise TruckctlError.single("not-confirmed", f"--confirm-delete-data must repeat the stage name {stage!r}, "
                                   f"got {confirm_delete_data!r}: nothing was changed", "--confirm-delete-data",
                                   ExitCode.USAGE)
    need_typed = not yes or (delete_data and confirm_delete_data is None)
    if not need_typed:
        return Confirmation(True, delete_data)
    if not interactive:
        needed = "--yes" + (" --confirm-delete-data " + stage if delete_data and confirm_delete_data is None else "")
        raise TruckctlError.single("not-confirmed", f"down asks for confirmation and there is no terminal to ask "
                                   f"on: pass {needed} to tear {stage} down; nothing was changed", "--yes",
                                   ExitCode.USAGE)
    data = target.delete_data_text(delete_data)
    what = ("the race's cloud after the race: truck tier, certificates, cloud tier" if race else
            "the day: the truck tier, and the cloud's day-specific parts (the race's cloud stays)")
    typed = ask(f"This tears {stage} down on {target.kind.value} ({what}) {data}.\n"
                f"Type the stage name to confirm")
    if typed.strip() != stage:
        raise TruckctlError.single("not-confirmed", f"typed {typed.strip()!r}, not {stage!r}: nothing was changed")
    return Confirmation(True, delete_data)


def _no_step(step: str, message: str) -> None:
    return None


@dataclass
class DownProgress:
    on_step: Callable[[str, str], None] = _no_step
    truck: UpCallbacks | None = None  # per-node events of the truck tier


@dataclass(frozen=True)
class DownOptions:
    stage: str
    delete_data: bool = False
    race: bool = False  # tear the race's cloud down (after the race), not only end the day
    interrupt_telemetry: bool = False  # --interrupt-telemetry: tear down even while the race is live

    @property
    def command(self) -> str:
        return COMMANDS[self.race]


# ---- the truck tier's teardown plan ----------------------------------------------------------

def teardown_plan(project: Project, stage: Stage, connection: Connection, target: TargetKind) -> RunPlan:
    """down.yml over the stage's rendered inventory: no cloud values, no secrets (it only removes)."""
    from truckctl.truck.inventory import render_inventory
    from truckctl.truck.plan import RunPlan, connection_vars, resolve_limit
    from truckctl.truck.vars import target_vars

    hosts = resolve_limit(stage, None)
    inventory = copy.deepcopy(render_inventory(stage))
    inventory["all"]["vars"].update(connection_vars(connection))
    return RunPlan(project_dir=project.playbooks_dir, playbook=DOWN_PLAYBOOK, inventory=inventory,
                   extravars=target_vars(target), limit=None, check=False, forks=max(1, len(hosts)), hosts=hosts,
                   secret_vars={})


# ---- resume ----------------------------------------------------------------------------------

def resumable(project: Project, stage: str, target: str, current_run: str, command: str = "down"
              ) -> tuple[str | None, dict[str, StepRecord]]:
    """The down run this one resumes (the stage's newest run, if it is an unfinished down of the same
    scope, `command`, on the same target) and its steps as recorded; (None, {}) otherwise."""
    runs = [r for r in journal.list_runs(project, stage) if r["run_id"] != current_run]
    if not runs:
        return None, {}
    last = runs[0]
    if last["command"] != command or last["target"] != target or last["status"] not in RESUMABLE:
        return None, {}
    try:
        summary = json.loads((journal.runs_dir(project) / last["run_id"] / "summary.json").read_text())
    except (OSError, ValueError):
        return last["run_id"], {}
    return last["run_id"], step_records(summary.get("steps"))


def step_records(steps: object) -> dict[str, StepRecord]:
    """summary.json's `steps`, as typed records (entries that are not step records are left out)."""
    if not isinstance(steps, dict):
        return {}
    records = {name: StepRecord.read(info) for name, info in steps.items()}
    return {name: record for name, record in records.items() if record is not None}


def steps_done(steps: dict[str, StepRecord], delete_data: bool) -> set[str]:
    done = {name for name, record in steps.items() if name in STEPS and record.status == "ok"}
    if delete_data and "cloud" in done and not steps["cloud"].delete_data:
        done.discard("cloud")  # the earlier destroy kept the data lake: this one must delete it
    return done


# ---- the command -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DownResult:
    """`truckctl down`'s result; `to_json` is the envelope's `result`, its keys in the order they always had.
    The steps' details are as the journal has them."""

    stage: str
    target: str
    delete_data: bool
    scope: str  # day or race
    resumed_from: str | None = None  # the run this one resumes
    skipped_steps: tuple[str, ...] = ()  # done there
    live: racelive.Liveness | None = None
    revoke: JsonObject | None = None
    revoke_after_truck: bool = False  # the target revokes after the truck tier is down
    truck: JsonObject | None = None
    cloud: JsonObject | None = None
    note: str | None = None
    kept: tuple[dict[str, str], ...] | None = None  # what, name, detail
    deleted: tuple[dict[str, str], ...] | None = None
    ended: RunEnd | None = None

    def to_json(self) -> JsonObject:
        result: JsonObject = {"stage": self.stage, "target": self.target, "delete_data": self.delete_data,
                              "scope": self.scope, "resumed_from": self.resumed_from,
                              "skipped_steps": list(self.skipped_steps)}
        if self.live is not None:
            result["live"] = self.live.as_dict()
        if self.revoke is not None and not self.revoke_after_truck:
            result["revoke"] = self.revoke
        if self.truck is not None:
            result["truck"] = self.truck
        if self.revoke is not None and self.revoke_after_truck:
            result["revoke"] = self.revoke
        if self.cloud is not None:
            result["cloud"] = self.cloud
        if self.note is not None:
            result["note"] = self.note
        if self.kept is not None:
            result["kept"] = list(self.kept)
        if self.deleted is not None:
            result["deleted"] = list(self.deleted)
        if self.ended is not None:
            result.update(self.ended.to_json())
        return result


def down(target: Target, options: DownOptions, confirmation: Confirmation, progress: DownProgress | None = None,
         runner: Runner | None = None) -> DownResult:
    """`runner` runs the truck tier's plan (tests hand in a fake; default: ansible-runner)."""
    from truckctl.config.loader import load_stage
    from truckctl.lifecycle.finished import finish
    from truckctl.lifecycle.run import locked_run

    progress = progress or DownProgress()
    project = target.project
    stage = load_stage(project, options.stage)
    if not confirmation.teardown or (options.delete_data and not confirmation.delete_data):
        raise TruckctlError.single("not-confirmed", f"down {stage.name} was not confirmed: nothing was changed",
                                   exit_code=ExitCode.USAGE)
    if options.delete_data and not options.race:
        raise TruckctlError.single("usage", "--delete-data goes with --race: the data lake lives the race, a day's "
                                   "down never deletes it; nothing was changed", "--delete-data", ExitCode.USAGE)
    target.preflight()  # before the lock and the journal, and before any truck is stopped
    start = target.teardown_start(stage)
    revokes = options.race or not target.identities_live_the_race
    with locked_run(project, stage, options.command, target) as run:
        resumed, steps = resumable(project, stage.name, target.kind.value, run.journal.run_id, options.command)
        done = steps_done(steps, options.delete_data)
        result = DownResult(stage.name, target.kind.value, options.delete_data, "race" if options.race else "day",
                            resumed, tuple(sorted(done)), revoke_after_truck=not target.revoke_first)
        if resumed:
            run.journal.event("resume", "run", resumed_from=resumed, skipped=sorted(done))
            progress.on_step("resume", f"resuming {resumed}: " + (f"skipping {', '.join(sorted(done))} (done there)"
                                                                  if done else "no step of it completed"))
        if not start.anything_up:
            run.journal.event("note", "run", message="no lab is up: nothing to tear down")
            return finish(run, ExitCode.OK, replace(
                result, note="no lab is up for this project: no truck node and no stand-in to tear down",
                kept=(_journal_kept(run),), deleted=()))
        if start.outputs is not None:
            run.lab_receiver = target.alert_receiver(start.outputs)
            for secret in start.outputs.secret_values():
                run.secret(secret)
        if not options.interrupt_telemetry:  # every step of down cuts the feed: while live, none runs
            progress.on_step("liveness", "is the race live? (telemetry at the cloud side, the stage's race window)")
            liveness = racelive.journaled_check(run, stage, target.kind, start.outputs)
            result = replace(result, live=liveness)
            if liveness.live:
                refused = racelive.refuse_down(stage, liveness)
                refused.result = {**result.to_json(), **refused.result}
                raise refused

        if revokes and target.revoke_first and "revoke" not in done:
            progress.on_step("revoke", target.revoke_message())
            try:
                result = replace(result, revoke=run.step("revoke", lambda: target.revoke(stage, run.journal.event)))
            except TruckctlError as exc:
                exc.result = {**result.to_json(), **exc.result,
                              "cloud": {"destroyed": False, "reason": "the revocation failed"},
                              "note": "down stopped at the revocation: no truck node and no cloud resource was "
                                      "touched; re-run `truckctl down` once every certificate can be deactivated"}
                raise

        if "truck" not in done:
            progress.on_step("truck", "stopping the heartbeats and the telemetry bridge, removing the trucks' "
                             "certificates from the gateways")
            result = replace(result, truck=run.step("truck", lambda: truck_step(project, stage, target, run, progress,
                                                                                runner)))
        left = list((result.truck or {}).get("not_down", []))

        if revokes and not target.revoke_first and "revoke" not in done:
            progress.on_step("revoke", target.revoke_message())
            result = replace(result, revoke=run.step("revoke", lambda: target.revoke(stage, run.journal.event)))

        if left:
            problems = [Problem("node-not-down", f"node {item['node']} was not taken down ({item['reason']}): "
                                "the cloud tier is left in place; re-run `truckctl down` once it is reachable",
                                item["node"]) for item in left]
            result = replace(result, cloud={"destroyed": False, "reason": "nodes were not taken down"},
                             kept=kept(stage, target, options, None, start, run, cloud_destroyed=False), deleted=())
            raise TruckctlError(problems, ExitCode.ERROR, {**result.to_json(), "failed_step": "truck"})

        if "cloud" not in done and not options.race:
            progress.on_step("cloud", target.end_day_message(stage))
            result = replace(result, cloud=run.step("cloud", lambda: target.end_day(stage, run.journal.event)))
        elif "cloud" not in done:
            progress.on_step("cloud", target.destroy_message(stage, options.delete_data))
            result = replace(result, cloud=run.step("cloud", lambda: target.destroy(
                stage, options.delete_data, run.journal.event, run.secret)))
        bucket = (result.cloud or {}).get("datalake_bucket")
        result = replace(result, note=target.delete_data_note(options.delete_data) or None,
                         kept=kept(stage, target, options, bucket, start, run, cloud_destroyed=True),
                         deleted=tuple(target.deleted(stage, options.delete_data, bucket)))
        from truckctl.cloud import current

        current.write(project, target.kind.value, None)  # the race's cloud is between stages (or gone)
        return finish(run, ExitCode.OK, result)


def truck_step(project: Project, stage: Stage, target: Target, run: Run, progress: DownProgress,
               runner: Runner | None) -> StepResult:
    from truckctl.truck.tier import UpCallbacks

    plan = teardown_plan(project, stage, target.connection(stage), target.kind)
    outcome = run.truck(plan, progress.truck or UpCallbacks(), "the truck tier's teardown was interrupted", runner)
    if not outcome.hosts:  # Ansible itself failed: no recap at all
        raise TruckctlError.single("truck-failed", f"the teardown playbook did not run (ansible-runner "
                                   f"{outcome.status}, rc {outcome.rc}); see {outcome.artifacts_dir}")
    reasons = {f.host: f.message or f.status for f in outcome.failures}
    not_down = [{"node": host, "reason": ("unreachable: " if stats.unreachable else "failed: ")
                 + reasons.get(host, stats.state)}
                for host, stats in sorted(outcome.hosts.items()) if stats.unreachable or stats.failed]
    missing = sorted(set(plan.hosts) - set(outcome.hosts))
    not_down += [{"node": host, "reason": "not in the playbook's recap"} for host in missing]
    detail = {**outcome.as_dict(), "playbook": DOWN_PLAYBOOK, "not_down": not_down}
    return StepResult(detail, "failed" if not_down else "ok", outcome.changed,
                      StepSummary(not_down=tuple(item["node"] for item in not_down)))


# ---- what was kept ---------------------------------------------------------------------------

def _journal_kept(run: Run) -> dict[str, str]:
    return {"what": "run journal", "name": run.project.display(run.journal.dir),
            "detail": f"this run's record (truckctl runs show {run.journal.run_id})"}


def kept(stage: Stage, target: Target, options: DownOptions, bucket: str | None, start: TeardownStart, run: Run,
         cloud_destroyed: bool) -> tuple[dict[str, str], ...]:
    items = target.kept(stage, options.delete_data, bucket, start, cloud_destroyed, options.race)
    items.append({"what": "gateway message store", "name": f"{GATEWAY_STORE} on each gateway",
                  "detail": "anything queued while an uplink was down stays on disk; the next `up` sends it"})
    items.append(_journal_kept(run))
    return tuple(items)
