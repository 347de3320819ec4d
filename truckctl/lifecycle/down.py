"""`truckctl down STAGE`: tear a stage down in the right order without losing the race's data.

Order, one locked and journaled run (steps `truck`, `revoke`, `cloud`):
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
the steps that run recorded as done, and redoes the rest.

Confirmation is decided by `confirm` (the CLI supplies the prompt; the core never prompts) and
checked again by `down` before the lock or the journal are touched: unconfirmed, nothing changes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import journal
from truckctl.lifecycle.targets import check_target
from truckctl.project import Project

if TYPE_CHECKING:
    from truckctl.cloud.engine import OnEvent, OperationResult
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage
    from truckctl.lifecycle.run import Run
    from truckctl.remote import Connection
    from truckctl.truck.events import HostEvent, TruckRunResult
    from truckctl.truck.plan import RunPlan
    from truckctl.truck.tier import UpCallbacks

DOWN_PLAYBOOK = "down.yml"
STEPS = ("truck", "revoke", "cloud")
RESUMABLE = ("failed", "interrupted", "died")
GATEWAY_STORE = "/var/lib/mosquitto"


# ---- confirmation ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Confirmation:
    teardown: bool = False  # the stage name typed, or --yes
    delete_data: bool = False  # the stage name typed with --delete-data, or --confirm-delete-data STAGE


def confirm(stage: str, target: str, *, yes: bool, delete_data: bool, confirm_delete_data: str | None,
            interactive: bool, ask: Callable[[str], str]) -> Confirmation:
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
    data = ("and DELETES the data lake (race data, its KMS key)" if delete_data and target == "aws" else
            "(the lab has no data lake: --delete-data deletes nothing more there)" if delete_data else
            "and keeps the data lake")
    typed = ask(f"This tears {stage} down on {target} (truck tier, certificates, cloud tier) {data}.\n"
                f"Type the stage name to confirm")
    if typed.strip() != stage:
        raise TruckctlError.single("not-confirmed", f"typed {typed.strip()!r}, not {stage!r}: nothing was changed")
    return Confirmation(True, delete_data)


# ---- what down talks to (tests swap these) ---------------------------------------------------

class Engine(Protocol):
    def outputs(self) -> CloudOutputs: ...

    def certificates(self) -> tuple[str, dict[str, str]]: ...

    def destroy(self, delete_data: bool = False) -> OperationResult: ...


def _run_truck(plan: RunPlan, project: Project, on_event: Callable[[HostEvent], None],
               cancel: Callable[[], bool] | None) -> TruckRunResult:
    from truckctl.truck.tier import execute_plan

    return execute_plan(plan, project, on_event, cancel)


def _revoke(project: Project, truck: str) -> dict[str, Any]:
    from truckctl.lab import api as lab_api

    return lab_api.revoke_truck(project, truck)


def _iot_client(region: str) -> Any:
    from truckctl.cloud.revoke import iot_client

    return iot_client(region)


def _engine(project: Project, stage: Stage, on_event: OnEvent) -> Engine:
    from truckctl.cloud.engine import AwsEngine

    return AwsEngine(project, stage, on_event=on_event)


def _preflight(target: str) -> None:
    if target == "aws":
        from truckctl.cloud.engine import require_pulumi_cli

        require_pulumi_cli()  # before the lock and the journal, and before any truck is stopped


def _lab_outputs(project: Project, stage: Stage) -> CloudOutputs | None:
    """The lab's outputs, or None when no lab is up (then there is nothing to tear down)."""
    from truckctl.lab import api as lab_api

    try:
        return lab_api.cloud_outputs(project, stage)
    except TruckctlError as exc:
        if exc.problems and exc.problems[0].code == "lab-not-up":
            return None
        raise


def _standin_seen(outputs: CloudOutputs) -> dict[str, Any] | None:
    from truckctl.lifecycle import cloudside

    try:
        return dict(cloudside.fetch(outputs, "/status"))
    except TruckctlError:
        return None


def _connection(project: Project, stage: Stage, target: str) -> Connection:
    from truckctl.lifecycle import targets

    return targets.connection(project, stage, target)


@dataclass
class Backends:
    run_truck: Callable[[RunPlan, Project, Callable[[HostEvent], None], Callable[[], bool] | None],
                        TruckRunResult] = _run_truck
    revoke: Callable[[Project, str], dict[str, Any]] = _revoke
    engine: Callable[[Project, Stage, OnEvent], Engine] = _engine
    preflight: Callable[[str], None] = _preflight
    lab_outputs: Callable[[Project, Stage], CloudOutputs | None] = _lab_outputs
    standin_seen: Callable[[CloudOutputs], dict[str, Any] | None] = _standin_seen
    connection: Callable[[Project, Stage, str], Connection] = _connection
    iot_client: Callable[[str], Any] = _iot_client  # a boto3 IoT client for the region (aws revocation)


def _no_step(step: str, message: str) -> None:
    return None


@dataclass
class DownProgress:
    on_step: Callable[[str, str], None] = _no_step
    truck: UpCallbacks | None = None  # per-node events of the truck tier


@dataclass(frozen=True)
class DownOptions:
    stage: str
    target: str = "lab"
    delete_data: bool = False


# ---- the truck tier's teardown plan ----------------------------------------------------------

def teardown_plan(project: Project, stage: Stage, connection: Connection, target: str) -> RunPlan:
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

def resumable(project: Project, stage: str, target: str, current_run: str) -> tuple[str | None, dict[str, Any]]:
    """The down run this one resumes (the stage's newest run, if it is an unfinished down on the same
    target) and its steps as recorded; (None, {}) otherwise."""
    runs = [r for r in journal.list_runs(project, stage) if r["run_id"] != current_run]
    if not runs:
        return None, {}
    last = runs[0]
    if last["command"] != "down" or last["target"] != target or last["status"] not in RESUMABLE:
        return None, {}
    try:
        summary = json.loads((journal.runs_dir(project) / last["run_id"] / "summary.json").read_text())
    except (OSError, ValueError):
        return last["run_id"], {}
    steps = summary.get("steps")
    return last["run_id"], steps if isinstance(steps, dict) else {}


def steps_done(steps: dict[str, Any], delete_data: bool) -> set[str]:
    done = {name for name, info in steps.items() if name in STEPS and isinstance(info, dict)
            and info.get("status") == "ok"}
    if delete_data and "cloud" in done and not steps["cloud"].get("summary_delete_data"):
        done.discard("cloud")  # the earlier destroy kept the data lake: this one must delete it
    return done


# ---- the command -----------------------------------------------------------------------------

def down(project: Project, options: DownOptions, confirmation: Confirmation, progress: DownProgress | None = None,
         backends: Backends | None = None) -> dict[str, Any]:
    from truckctl.config.loader import load_stage
    from truckctl.lifecycle.run import finish_run, locked_run

    progress = progress or DownProgress()
    backends = backends or Backends()
    check_target(options.target)
    stage = load_stage(project, options.stage)
    if not confirmation.teardown or (options.delete_data and not confirmation.delete_data):
        raise TruckctlError.single("not-confirmed", f"down {stage.name} was not confirmed: nothing was changed",
                                   exit_code=ExitCode.USAGE)
    backends.preflight(options.target)
    lab_outputs = backends.lab_outputs(project, stage) if options.target == "lab" else None
    with locked_run(project, stage, "down", options.target) as run:
        result: dict[str, Any] = {"stage": stage.name, "target": options.target, "delete_data": options.delete_data}
        resumed, steps = resumable(project, stage.name, options.target, run.journal.run_id)
        done = steps_done(steps, options.delete_data)
        result.update(resumed_from=resumed, skipped_steps=sorted(done))
        if resumed:
            run.journal.event("resume", "run", resumed_from=resumed, skipped=sorted(done))
            progress.on_step("resume", f"resuming {resumed}: " + (f"skipping {', '.join(sorted(done))} (done there)"
                                                                  if done else "no step of it completed"))
        if options.target == "lab" and lab_outputs is None:
            run.journal.event("note", "run", message="no lab is up: nothing to tear down")
            result.update(note="no lab is up for this project: no truck node and no stand-in to tear down",
                          kept=[_journal_kept(run)], deleted=[])
            return finish_run(run, ExitCode.OK, result)
        if lab_outputs is not None:
            run.lab_receiver = lab_outputs.alert_webhook_url
            for secret in lab_outputs.secret_values():
                run.secret(secret)

        if options.target == "aws" and "revoke" not in done:
            progress.on_step("revoke", "deactivating every truck's IoT certificate first, whatever else fails")
            try:
                result["revoke"] = run.step("revoke", lambda: aws_revoke_step(project, stage, run, backends))
            except TruckctlError as exc:
                exc.result = {**result, **exc.result, "cloud": {"destroyed": False, "reason": "the revocation failed"},
                              "note": "down stopped at the revocation: no truck node and no cloud resource was "
                                      "touched; re-run `truckctl down` once every certificate can be deactivated"}
                raise

        if "truck" not in done:
            progress.on_step("truck", "stopping the heartbeats and the telemetry bridge, removing the trucks' "
                             "certificates from the gateways")
            result["truck"] = run.step("truck", lambda: truck_step(project, stage, options.target, run, progress,
                                                                   backends))
        left = list(result.get("truck", {}).get("not_down", []))

        if options.target == "lab" and "revoke" not in done:
            progress.on_step("revoke", "revoking the trucks' certificates at the cloud side")
            result["revoke"] = run.step("revoke", lambda: revoke_step(project, stage, options.target, backends))

        if left:
            problems = [Problem("node-not-down", f"node {item['node']} was not taken down ({item['reason']}): "
                                "the cloud tier is left in place; re-run `truckctl down` once it is reachable",
                                item["node"]) for item in left]
            result.update(cloud={"destroyed": False, "reason": "nodes were not taken down"},
                          kept=kept(stage, options, None, lab_outputs, backends, run, cloud_destroyed=False),
                          deleted=[])
            raise TruckctlError(problems, ExitCode.ERROR, {**result, "failed_step": "truck"})

        if "cloud" not in done:
            progress.on_step("cloud", _cloud_message(stage, options))
            result["cloud"] = run.step("cloud", lambda: cloud_step(project, stage, options, run, backends))
        bucket = (result.get("cloud") or {}).get("datalake_bucket")
        if options.target == "lab" and options.delete_data:
            result["note"] = ("--delete-data: the lab has no data lake to delete; what the stand-in received goes "
                              "with `truckctl lab down`")
        result["kept"] = kept(stage, options, bucket, lab_outputs, backends, run, cloud_destroyed=True)
        result["deleted"] = deleted(stage, options, bucket)
        return finish_run(run, ExitCode.OK, result)


def _cloud_message(stage: Stage, options: DownOptions) -> str:
    if options.target == "lab":
        return "lab target: the cloud tier is the offline plan, nothing to destroy"
    return (f"pulumi destroy of stack {stage.name} in {stage.cloud.region}"
            + (" INCLUDING the data lake" if options.delete_data else ", keeping the data lake"))


def truck_step(project: Project, stage: Stage, target: str, run: Run, progress: DownProgress,
               backends: Backends) -> dict[str, Any]:
    from truckctl.truck.tier import UpCallbacks

    plan = teardown_plan(project, stage, backends.connection(project, stage, target), target)
    outcome = run.truck(plan, progress.truck or UpCallbacks(), "the truck tier's teardown was interrupted",
                        backends.run_truck)
    if not outcome.hosts:  # Ansible itself failed: no recap at all
        raise TruckctlError.single("truck-failed", f"the teardown playbook did not run (ansible-runner "
                                   f"{outcome.status}, rc {outcome.rc}); see {outcome.artifacts_dir}")
    reasons = {f.host: f.message or f.status for f in outcome.failures}
    not_down = [{"node": host, "reason": ("unreachable: " if stats.unreachable else "failed: ")
                 + reasons.get(host, stats.state)}
                for host, stats in sorted(outcome.hosts.items()) if stats.unreachable or stats.failed]
    missing = sorted(set(plan.hosts) - set(outcome.hosts))
    not_down += [{"node": host, "reason": "not in the playbook's recap"} for host in missing]
    detail = outcome.as_dict()
    detail.update(playbook=DOWN_PLAYBOOK, not_down=not_down, _status="failed" if not_down else "ok",
                  _changed=outcome.changed, summary_not_down=[item["node"] for item in not_down])
    return detail


def aws_revoke_step(project: Project, stage: Stage, run: Run, backends: Backends) -> dict[str, Any]:
    """Every truck's IoT certificate INACTIVE, from the certificate ids in the stack outputs."""
    from truckctl.cloud.revoke import deactivate_all

    engine = backends.engine(project, stage, lambda event: None)
    region, certificates = engine.certificates()
    if not certificates:
        return {"certificates": [], "note": "the stack has no truck certificates (never deployed, or already "
                "destroyed): nothing to revoke", "summary_trucks": []}
    try:
        client = backends.iot_client(region)
    except Exception as exc:  # no region, no botocore data: nothing was tried
        raise TruckctlError.single("revoke-failed", f"no AWS IoT client for {region!r} ({type(exc).__name__}): no "
                                   "certificate was deactivated and nothing else was torn down; fix the AWS "
                                   "setup and re-run `truckctl down`") from None
    states, problems = deactivate_all(client, certificates)
    for state in states:
        run.journal.event("certificate", "revoke", **state.as_dict())
    if problems:
        raise TruckctlError(problems, ExitCode.ERROR, {"revoke": {"certificates": [s.as_dict() for s in states]}})
    changed = [s for s in states if s.changed]
    return {"certificates": [s.as_dict() for s in states], "region": region,
            "note": f"{len(changed)} IoT certificate(s) set INACTIVE, {len(states) - len(changed)} already not "
                    "trusted: AWS IoT refuses and disconnects them; the cloud destroy deletes them",
            "summary_trucks": [s.truck for s in states], "_changed": len(changed)}


def revoke_step(project: Project, stage: Stage, target: str, backends: Backends) -> dict[str, Any]:
    revoked = [backends.revoke(project, truck.name) for truck in stage.trucks]
    return {"revoked": revoked, "note": "the lab CA's CRL now lists the trucks' certificates and the stand-in "
            "refuses them; fresh certificates wait for the next `up`",
            "summary_trucks": [item["truck"] for item in revoked], "_changed": len(revoked)}


def cloud_step(project: Project, stage: Stage, options: DownOptions, run: Run, backends: Backends) -> dict[str, Any]:
    if options.target == "lab":
        return {"destroyed": False, "summary_delete_data": options.delete_data,
                "note": "lab target: the cloud tier is the offline plan, so nothing is deployed to destroy; the "
                        "cloud stand-in keeps what it received until `truckctl lab down`"}
    from truckctl.cloud.engine import CloudEvent

    def record(event: CloudEvent) -> None:
        if event.kind == "resource" and event.phase in ("done", "failed"):
            run.journal.event("resource", "cloud", name=event.name, type=event.type, op=event.op,
                              status=event.phase)

    engine = backends.engine(project, stage, record)
    try:
        outputs = engine.outputs()
    except TruckctlError:
        bucket = None  # no outputs: never deployed, or already destroyed by an earlier down
    else:
        for secret in outputs.secret_values():
            run.secret(secret)
        bucket = outputs.datalake_bucket
    operation = engine.destroy(options.delete_data)
    return {"destroyed": True, "operation": operation.as_dict(), "datalake_bucket": bucket,
            "_changed": sum(n for op, n in operation.changes.items() if op != "same"),
            "summary_delete_data": options.delete_data}


# ---- what was kept ---------------------------------------------------------------------------

def _datalake_name(stage: Stage, bucket: str | None) -> str:
    # stacks/race_cloud/datalake.py names it <race>-<stage>-datalake-<account id>
    return bucket or f"{stage.race.id}-{stage.name}-datalake-<account id>"


def _kms_name(stage: Stage) -> str:
    # stacks/race_cloud/kms.py: its alias goes with the stack, the key stays (found by its description)
    return f"the customer KMS key described 'truckctl {stage.race.name} {stage.name}: data lake, ingest, alerts, VPN'"


def _journal_kept(run: Run) -> dict[str, str]:
    return {"what": "run journal", "name": run.project.display(run.journal.dir),
            "detail": f"this run's record (truckctl runs show {run.journal.run_id})"}


def kept(stage: Stage, options: DownOptions, bucket: str | None, lab_outputs: CloudOutputs | None,
         backends: Backends, run: Run, cloud_destroyed: bool) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    if options.target == "aws":
        if not cloud_destroyed:
            items.append({"what": "cloud tier", "name": f"Pulumi stack {stage.name}",
                          "detail": "not destroyed: some nodes were not taken down"})
        elif not options.delete_data:
            items.append({"what": "data lake", "name": _datalake_name(stage, bucket),
                          "detail": "S3 bucket with the race's telemetry, protected and retained"})
            items.append({"what": "data lake key", "name": _kms_name(stage),
                          "detail": "retained with the lake: without it the data is unreadable"})
    elif lab_outputs is not None:
        seen = backends.standin_seen(lab_outputs)
        if seen is not None:
            counts = "; ".join(f"{name}: {info.get('counts', {}).get('telemetry', 0)} telemetry and "
                               f"{info.get('counts', {}).get('heartbeat', 0)} heartbeat messages"
                               for name, info in sorted((seen.get("trucks") or {}).items()))
            items.append({"what": "the stand-in's received data (the lab's data lake)",
                          "name": f"{lab_outputs.mqtt_host} (cloud stand-in)",
                          "detail": f"{counts}; kept until `truckctl lab down`"})
    items.append({"what": "gateway message store", "name": f"{GATEWAY_STORE} on each gateway",
                  "detail": "anything queued while an uplink was down stays on disk; the next `up` sends it"})
    items.append(_journal_kept(run))
    return items


def deleted(stage: Stage, options: DownOptions, bucket: str | None) -> list[dict[str, str]]:
    if not options.delete_data:
        return []
    if options.target == "aws":
        return [{"what": "data lake", "name": _datalake_name(stage, bucket), "detail": "deleted with its contents"},
                {"what": "data lake key", "name": _kms_name(stage),
                 "detail": "scheduled for deletion (KMS waits 30 days)"}]
    return []  # the lab has no data lake: what the stand-in holds goes with `truckctl lab down`
