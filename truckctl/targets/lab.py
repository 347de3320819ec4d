"""The lab target: the stage's trucks as systemd-nspawn nodes on this machine, the cloud tier as its
offline plan with the policy rules, and the lab's cloud stand-in in place of AWS (DESIGN section 6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from truckctl.errors import TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.steps import StepResult, StepSummary
from truckctl.project import Project
from truckctl.target import CloudApplied, CloudSide, CloudTier, PublicOutputs, Record, TargetKind, TeardownStart

if TYPE_CHECKING:
    from truckctl.cloud.engine import OperationResult
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage
    from truckctl.lab.ssh import LabConnection
    from truckctl.lifecycle.plan import OfflineMove
    from truckctl.lifecycle.webhttp import ClientTls

DRIFT_CLOUD_NOTE = ("lab target: the cloud tier is the offline plan, with no deployed state that could drift; "
                    "cloud drift is measured on aws (pulumi refresh --preview-only + preview --expect-no-changes)")


class LabTarget:
    kind = TargetKind.lab
    cloud_beside_truck = True  # the trucks take their outputs from the stand-in, not from the plan
    revoke_first = False
    identities_live_the_race = False  # the stand-in's certificates: revoked at every down, fresh at the next up
    cloud_side_required = True  # the stand-in is part of the lab: unreadable is unhealthy

    def __init__(self, project: Project) -> None:
        self.project = project

    def preflight(self) -> None:
        return None

    # ---- reaching the nodes and the cloud side ---------------------------------------------------

    def connection(self, stage: Stage) -> LabConnection:
        """The lab's nodes directly, or through the management path when this operator chose it (the
        lab's outside operator: `lab operator add`)."""
        from truckctl.lab.access import connection  # not lab.api: the probes that wait for it start sooner
        from truckctl.management import apply

        return apply(self.project, stage, connection(self.project))

    def cloud_outputs(self, stage: Stage) -> CloudOutputs:
        from truckctl.lab import api as lab_api

        return lab_api.cloud_outputs(self.project, stage)

    def cloud_source(self, stage: Stage) -> str:
        return "the lab's cloud stand-in (the cloud tier itself is the offline plan on this target)"

    def alert_receiver(self, outputs: CloudOutputs) -> str | None:
        return outputs.alert_webhook_url

    def receiver_tls(self) -> ClientTls | None:
        from truckctl.lab.api import operator_tls

        return operator_tls(self.project)

    def standin_status(self, outputs: CloudOutputs) -> JsonObject:
        """The stand-in's /status (bounded in time and size; raises when it does not answer)."""
        from truckctl.lifecycle import cloudside

        return dict(cloudside.fetch(outputs, "/status"))

    def read_cloud(self, stage: Stage) -> CloudSide:
        tier = CloudTier("offline plan + cloud stand-in", "on the lab target the cloud tier is the offline plan; the "
                         "lab's cloud stand-in plays the ingest and the alert receiver")
        try:
            outputs = self.cloud_outputs(stage)
        except TruckctlError as exc:
            return CloudSide(replace(tier, standin="down"), None, str(exc))
        tier = replace(tier, outputs=PublicOutputs.of(outputs, receiver=outputs.alert_webhook_url))
        try:
            seen = self.standin_status(outputs)
        except TruckctlError as exc:
            return CloudSide(replace(tier, standin="not answering"), None, str(exc))
        mqtt = "" if seen.get("mqtt_connected") else " (its MQTT reader is not connected)"
        return CloudSide(replace(tier, standin="answering" + mqtt), seen)

    # ---- up --------------------------------------------------------------------------------------

    def prepare(self, stage: Stage) -> JsonObject | None:
        """The lab under the run: built if missing, reused if its infrastructure is up. A truck node that is
        down or cut off is not rebuilt away: the prechecks report it, as they would for a real truck."""
        from truckctl.lab import api as lab_api

        if lab_api.is_outside(self.project):  # the lab's outside operator: the lab is another machine's
            return {"outside_operator": True, "note": "the lab runs on another machine; this operator reaches "
                    "its trucks through the management path"}
        return dict(lab_api.up(self.project, stage.name, keep_node_faults=True))

    def prepare_message(self, stage: Stage) -> str:
        return f"bringing up the lab of {stage.name} (simulated trucks and cloud stand-in)"

    def prechecks(self, stage: Stage) -> dict[str, list[Any]]:
        return {}

    def cloud_up_message(self, stage: Stage) -> str:
        return ("lab target: the cloud tier is the offline plan with its policy rules; the lab's cloud stand-in "
                "provides the cloud outputs")

    def cloud_up(self, stage: Stage, record: Record) -> CloudApplied:
        """The offline plan of the race's stack at the stage and of the move to it, with the policy rules and
        the move rule (a violation fails the step); the stage is then recorded as the one the race is at."""
        from truckctl.cloud import current
        from truckctl.lifecycle.plan import checked_move

        checked = checked_move(self.offline_plan(stage))
        current.write(self.project, self.kind.value, stage.name)
        return CloudApplied(StepResult({**checked.detail, "mode": "offline plan (lab target)"},
                                       summary=checked.summary))

    def offline_plan(self, stage: Stage) -> OfflineMove:
        """The race's stack at the stage, with the move to it from the stage the race is at."""
        from truckctl.lifecycle.plan import offline_move

        return offline_move(self.project, stage.name, self.kind.value)

    def smoke(self, stage: Stage, outputs: CloudOutputs, run_id: str) -> StepResult:
        from truckctl.lifecycle import smoke

        arrived = smoke.check(stage, outputs, run_id, connection=self.connection(stage))
        return StepResult({"checked": True, "arrived_s": arrived}, summary=StepSummary(trucks=len(arrived)))

    # ---- drift -----------------------------------------------------------------------------------

    def drift_message(self) -> str:
        return "truck tier: the fast path when no node moved since the last clean check, else check mode with diff"

    def cloud_drift(self, stage: Stage) -> StepResult:
        return StepResult({"checked": False, "note": DRIFT_CLOUD_NOTE, "drifted": []})

    def cloud_fix(self, stage: Stage) -> OperationResult | None:
        return None

    # ---- down ------------------------------------------------------------------------------------

    def teardown_start(self, stage: Stage) -> TeardownStart:
        """The lab's outputs; nothing is up (nothing to tear down) when no lab is."""
        try:
            return TeardownStart(True, self.cloud_outputs(stage))
        except TruckctlError as exc:
            if exc.problems and exc.problems[0].code == "lab-not-up":
                return TeardownStart(False)
            raise

    def revoke_message(self) -> str:
        return "revoking the trucks' certificates at the cloud side"

    def revoke(self, stage: Stage, record: Record) -> StepResult:
        revoked = [self.revoke_truck(truck.name) for truck in stage.trucks]
        return StepResult({"revoked": revoked, "note": "the lab CA's CRL now lists the trucks' certificates and the "
                           "stand-in refuses them; fresh certificates wait for the next `up`"},
                          changed=len(revoked), summary=StepSummary(trucks=tuple(item["truck"] for item in revoked)))

    def revoke_truck(self, truck: str) -> dict[str, Any]:
        from truckctl.lab import api as lab_api

        return lab_api.revoke_truck(self.project, truck)

    def end_day_message(self, stage: Stage) -> str:
        return "lab target: the cloud tier is the offline plan, nothing deployed leaves the stage"

    def end_day(self, stage: Stage, record: Record) -> StepResult:
        return StepResult({"destroyed": False,
                           "note": "lab target: the cloud tier is the offline plan, so nothing is deployed to "
                                   "leave the stage; the cloud stand-in keeps what it received until "
                                   "`truckctl lab down`"},
                          summary=StepSummary(delete_data=False))

    def destroy_message(self, stage: Stage, delete_data: bool) -> str:
        return "lab target: the cloud tier is the offline plan, nothing to destroy"

    def destroy(self, stage: Stage, delete_data: bool, record: Record, secret: Callable[[str], None]
                ) -> StepResult:
        return StepResult({"destroyed": False,
                           "note": "lab target: the cloud tier is the offline plan, so nothing is deployed to destroy; "
                                   "the cloud stand-in keeps what it received until `truckctl lab down`"},
                          summary=StepSummary(delete_data=delete_data))

    def standin_seen(self, outputs: CloudOutputs) -> JsonObject | None:
        try:
            return self.standin_status(outputs)
        except TruckctlError:
            return None

    def kept(self, stage: Stage, delete_data: bool, bucket: str | None, start: TeardownStart,
             cloud_destroyed: bool, race: bool = True) -> list[dict[str, str]]:
        if start.outputs is None:
            return []
        seen = self.standin_seen(start.outputs)
        if seen is None:
            return []
        counts = "; ".join(f"{name}: {info.get('counts', {}).get('telemetry', 0)} telemetry and "
                           f"{info.get('counts', {}).get('heartbeat', 0)} heartbeat messages"
                           for name, info in sorted((seen.get("trucks") or {}).items()))
        return [{"what": "the stand-in's received data (the lab's data lake)",
                 "name": f"{start.outputs.mqtt_host} (cloud stand-in)",
                 "detail": f"{counts}; kept until `truckctl lab down`"}]

    def deleted(self, stage: Stage, delete_data: bool, bucket: str | None) -> list[dict[str, str]]:
        return []  # the lab has no data lake: what the stand-in holds goes with `truckctl lab down`

    def delete_data_text(self, delete_data: bool) -> str:
        return ("(the lab has no data lake: --delete-data deletes nothing more there)" if delete_data else
                "and keeps the data lake")

    def delete_data_note(self, delete_data: bool) -> str | None:
        if not delete_data:
            return None
        return ("--delete-data: the lab has no data lake to delete; what the stand-in received goes with "
                "`truckctl lab down`")
