"""The aws target: the real trucks over SSH (the ops key, the host keys pinned for the race) and the
cloud tier as the race's one Pulumi stack on AWS, moved to the stage each morning (DESIGN section 4,
docs/CLOUD.md).

The engine (Pulumi's Automation API) and the IoT client are made through factories so tests hand in
fakes without patching modules.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.steps import StepResult, StepSummary
from truckctl.project import Project
from truckctl.remote import Connection
from truckctl.target import CloudApplied, CloudSide, CloudTier, PublicOutputs, Record, TargetKind, TeardownStart

if TYPE_CHECKING:
    from truckctl.cloud.engine import OnEvent, OperationResult
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage
    from truckctl.lifecycle.plan import OfflineMove
    from truckctl.lifecycle.webhttp import ClientTls

SSH_USER_ENV = "TRUCKCTL_SSH_USER"
SSH_KEY_ENV = "TRUCKCTL_SSH_KEY"
CLOUDSIDE_NOTE = ("cloud-side last-seen comes from CloudWatch (the ingest metrics and the telemetry-stopped / "
                  "heartbeat-missing alarms of the cloud tier); it is not available without the pulumi CLI "
                  "and AWS credentials, so it is not shown")
SMOKE_NOTE = ("on aws, arrival is watched by the CloudWatch alarms of the cloud tier; the end-to-end smoke check "
              "needs read access to the stream and is not done from here")


class Engine(Protocol):
    """What the target asks of Pulumi (truckctl.cloud.engine.AwsEngine)."""

    def up(self) -> tuple[CloudOutputs, OperationResult]: ...
    def drift(self) -> OperationResult: ...
    def outputs(self) -> CloudOutputs: ...
    def certificates(self) -> tuple[str, dict[str, str]]: ...
    def end_day(self) -> OperationResult: ...
    def destroy(self, delete_data: bool = False) -> OperationResult: ...


EngineFactory = Callable[[Project, "Stage", "OnEvent | None"], Engine]
MoveCheck = Callable[[Project, str, str], "OfflineMove"]  # (project, stage, target) -> the offline plan of the move


def _engine(project: Project, stage: Stage, on_event: OnEvent | None) -> Engine:
    from truckctl.cloud.engine import AwsEngine

    return AwsEngine(project, stage, on_event=on_event)


def _iot_client(region: str) -> Any:
    from truckctl.cloud.revoke import iot_client

    return iot_client(region)


def _offline_move(project: Project, stage: str, target: str) -> OfflineMove:
    from truckctl.lifecycle.plan import offline_move

    return offline_move(project, stage, target)


def _require_pulumi() -> None:
    from truckctl.cloud.engine import require_pulumi_cli

    require_pulumi_cli()


def known_hosts_file(project: Project, stage: Stage) -> Path:
    """The real trucks' pinned host keys (one file per race, kept in the state directory)."""
    return project.state_dir / "known_hosts" / f"{stage.race.id}"


def check_tools() -> list[Problem]:
    if shutil.which("pulumi") is None:
        return [Problem("tool-missing", "the pulumi CLI is not on PATH: install Pulumi 3.x "
                        "(https://www.pulumi.com/docs/install/) to use --target aws", "tools")]
    return []


def check_aws_access(stage: Stage) -> list[Problem]:
    problems = []
    has_keys = os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")
    has_profile = os.environ.get("AWS_PROFILE") or (Path.home() / ".aws" / "credentials").exists()
    if not (has_keys or has_profile or os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")):
        problems.append(Problem("aws-credentials", "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                                "AWS_SECRET_ACCESS_KEY", "environment"))
    for name, ref in stage.secrets.items():
        if not os.environ.get(ref.env):
            problems.append(Problem("secret-missing", f"secret {name!r} is referenced as environment variable "
                                    f"{ref.env}, which is not set", "environment"))
    return problems


def _changed(operation: OperationResult) -> int:
    return sum(n for op, n in operation.changes.items() if op != "same")


def datalake_name(stage: Stage, bucket: str | None) -> str:
    # stacks/race_cloud/datalake.py names it <race>-datalake-<account id>
    return bucket or f"{stage.race.id}-datalake-<account id>"


def kms_name(stage: Stage) -> str:
    # stacks/race_cloud/kms.py: its alias goes with the stack, the key stays (found by its description)
    return f"the customer KMS key described 'truckctl {stage.race.name}: data lake, ingest, alerts, VPN'"


def _record_resources(record: Record) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.kind == "resource" and event.phase in ("done", "failed"):
            record("resource", "cloud", name=event.name, type=event.type, op=event.op, status=event.phase)

    return on_event


class AwsTarget:
    kind = TargetKind.aws
    cloud_beside_truck = False  # `pulumi up` first: its outputs feed the truck tier
    revoke_first = True  # a stolen or unreachable truck is refused by the cloud whatever else fails
    identities_live_the_race = True  # IoT certificates: deactivated by `down --race` only (or rotate-cert)
    cloud_side_required = False  # CloudWatch is not read from here: said in a note, not unhealthy

    def __init__(self, project: Project, engine: EngineFactory = _engine,
                 iot_client: Callable[[str], Any] = _iot_client,
                 require_pulumi: Callable[[], None] = _require_pulumi, move_check: MoveCheck = _offline_move
                 ) -> None:
        self.project = project
        self.engine = engine
        self.move_check = move_check  # the offline plan of the day's move, checked before `pulumi up`
        self.iot_client = iot_client  # a boto3 IoT client for the region (revocation)
        self.require_pulumi = require_pulumi

    def preflight(self) -> None:
        self.require_pulumi()  # before the lock and the journal, and before any truck is touched

    # ---- reaching the nodes and the cloud side ---------------------------------------------------

    def connection(self, stage: Stage) -> Connection:
        user = os.environ.get(SSH_USER_ENV) or (stage.ops_users[0].name if stage.ops_users else "root")
        key = Path(os.environ.get(SSH_KEY_ENV) or Path.home() / ".ssh" / "id_ed25519")
        known = known_hosts_file(self.project, stage)
        if not known.is_file():
            raise TruckctlError.single(
                "no-known-hosts", f"no pinned host keys for the trucks: put the nodes' host keys in {known} "
                "(ssh-keyscan over a trusted link) so host-key checking can stay on", self.project.display(known))
        from truckctl.management import apply

        return apply(self.project, stage, Connection(user, key, known))

    def cloud_outputs(self, stage: Stage) -> CloudOutputs:
        outputs = self.engine(self.project, stage, None).outputs()
        return self._applicable(outputs)

    @staticmethod
    def _applicable(outputs: CloudOutputs) -> CloudOutputs:
        if outputs.placeholder:
            raise TruckctlError.single("placeholder-outputs", "refusing to apply placeholder cloud outputs from an "
                                       "offline plan to real trucks")
        return outputs

    def cloud_source(self, stage: Stage) -> str:
        return f"the race's Pulumi stack {stage.race.id} in {stage.cloud.region}"

    def alert_receiver(self, outputs: CloudOutputs) -> str | None:
        return None  # the race's own webhook is notified from the environment; no stand-in here

    def receiver_tls(self) -> ClientTls | None:
        return None

    def read_cloud(self, stage: Stage) -> CloudSide:
        try:
            outputs = self.engine(self.project, stage, None).outputs()
        except TruckctlError as exc:
            tier = CloudTier("unknown", f"the stack's outputs cannot be read: {exc}")
        else:
            tier = CloudTier("deployed", outputs=PublicOutputs.of(outputs, receiver=None))  # its URL is a secret
        return CloudSide(tier, None, CLOUDSIDE_NOTE)

    # ---- up --------------------------------------------------------------------------------------

    def prepare(self, stage: Stage) -> JsonObject | None:
        return None  # the trucks are there already

    def prepare_message(self, stage: Stage) -> str:
        return ""

    def prechecks(self, stage: Stage) -> dict[str, list[Problem]]:
        return {"tools": check_tools(), "aws": check_aws_access(stage)}

    def cloud_up_message(self, stage: Stage) -> str:
        return f"pulumi up of the race's stack {stage.race.id} in {stage.cloud.region}, moved to {stage.name}"

    def cloud_up(self, stage: Stage, record: Record) -> CloudApplied:
        """The move rule first, offline: a move that would replace data or identity never reaches AWS. Then
        `pulumi up` of the race's stack at the stage, which is recorded as the stage the race is at."""
        from truckctl.cloud import current
        from truckctl.lifecycle.plan import checked_move

        checked = checked_move(self.move_check(self.project, stage.name, self.kind.value))
        outputs, operation = self.engine(self.project, stage, _record_resources(record)).up()
        current.write(self.project, self.kind.value, stage.name)
        return CloudApplied(StepResult({**operation.as_dict(), "move": checked.detail["move"]},
                                       changed=_changed(operation), summary=checked.summary),
                            self._applicable(outputs))

    def smoke(self, stage: Stage, outputs: CloudOutputs, run_id: str) -> StepResult:
        return StepResult({"checked": False, "note": SMOKE_NOTE})

    # ---- drift -----------------------------------------------------------------------------------

    def drift_message(self) -> str:
        return ("truck tier: the fast path when no node moved since the last clean check, else check mode with diff; "
                "cloud refresh and preview")

    def cloud_drift(self, stage: Stage) -> StepResult:
        operation = self.engine(self.project, stage, None).drift()
        return StepResult({"checked": True, **operation.as_dict()}, changed=len(operation.drifted))

    def cloud_fix(self, stage: Stage) -> OperationResult:
        _, operation = self.engine(self.project, stage, None).up()
        return operation

    # ---- down ------------------------------------------------------------------------------------

    def teardown_start(self, stage: Stage) -> TeardownStart:
        return TeardownStart(True)

    def revoke_message(self) -> str:
        return "deactivating every truck's IoT certificate first, whatever else fails (the race is over)"

    def revoke(self, stage: Stage, record: Record) -> StepResult:
        """Every truck's IoT certificate INACTIVE, from the certificate ids in the stack outputs."""
        from truckctl.cloud.revoke import deactivate_all

        region, certificates = self.engine(self.project, stage, lambda event: None).certificates()
        if not certificates:
            return StepResult({"certificates": [], "note": "the stack has no truck certificates (never deployed, or "
                               "already destroyed): nothing to revoke"}, summary=StepSummary(trucks=()))
        try:
            client = self.iot_client(region)
        except Exception as exc:  # no region, no botocore data: nothing was tried
            raise TruckctlError.single("revoke-failed", f"no AWS IoT client for {region!r} ({type(exc).__name__}): "
                                       "no certificate was deactivated and nothing else was torn down; fix the AWS "
                                       "setup and re-run `truckctl down`") from None
        states, problems = deactivate_all(client, certificates)
        for state in states:
            record("certificate", "revoke", **state.as_dict())
        if problems:
            raise TruckctlError(problems, ExitCode.ERROR, {"revoke": {"certificates": [s.as_dict() for s in states]}})
        changed = [s for s in states if s.changed]
        return StepResult({"certificates": [s.as_dict() for s in states], "region": region,
                           "note": f"{len(changed)} IoT certificate(s) set INACTIVE, {len(states) - len(changed)} "
                                   "already not trusted: AWS IoT refuses and disconnects them; the cloud destroy "
                                   "deletes them"},
                          changed=len(changed), summary=StepSummary(trucks=tuple(s.truck for s in states)))

    def end_day_message(self, stage: Stage) -> str:
        return (f"the race's stack {stage.race.id} leaves {stage.name}: the day's alarms and LAN routes removed, "
                "everything that lives the race kept")

    def end_day(self, stage: Stage, record: Record) -> StepResult:
        """The race's stack between stages: what lives the race (lake, stream, key, things, certificates,
        VPN hub) untouched, the trucks' certificates still trusted."""
        operation = self.engine(self.project, stage, _record_resources(record)).end_day()
        return StepResult({"destroyed": False, "operation": operation.as_dict(),
                           "note": f"the race's cloud left {stage.name}: the day's alarms and LAN routes are gone; the "
                                   "lake, stream, key, trucks' identities and certificates and the VPN hub stay for "
                                   "the race"},
                          changed=_changed(operation), summary=StepSummary(delete_data=False))

    def destroy_message(self, stage: Stage, delete_data: bool) -> str:
        return (f"pulumi destroy of the race's stack {stage.race.id} in {stage.cloud.region}"
                + (" INCLUDING the data lake" if delete_data else ", keeping the data lake"))

    def destroy(self, stage: Stage, delete_data: bool, record: Record, secret: Callable[[str], None]
                ) -> StepResult:
        engine = self.engine(self.project, stage, _record_resources(record))
        try:
            outputs = engine.outputs()
        except TruckctlError:
            bucket = None  # no outputs: never deployed, or already destroyed by an earlier down
        else:
            for value in outputs.secret_values():
                secret(value)
            bucket = outputs.datalake_bucket
        operation = engine.destroy(delete_data)
        return StepResult({"destroyed": True, "operation": operation.as_dict(), "datalake_bucket": bucket},
                          changed=_changed(operation), summary=StepSummary(delete_data=delete_data))

    def kept(self, stage: Stage, delete_data: bool, bucket: str | None, start: TeardownStart,
             cloud_destroyed: bool, race: bool = True) -> list[dict[str, str]]:
        stack = f"Pulumi stack {stage.race.id}"
        if not cloud_destroyed:
            return [{"what": "cloud tier", "name": stack,
                     "detail": ("not destroyed" if race else "not changed") + ": some nodes were not taken down"}]
        if not race:
            return [{"what": "the race's cloud", "name": stack,
                     "detail": "lake, stream, key, trucks' identities and certificates, VPN hub: they live the race "
                               "(`down STAGE --race` tears them down after it)"}]
        if delete_data:
            return []
        return [{"what": "data lake", "name": datalake_name(stage, bucket),
                 "detail": "S3 bucket with the race's telemetry, protected and retained"},
                {"what": "data lake key", "name": kms_name(stage),
                 "detail": "retained with the lake: without it the data is unreadable"}]

    def deleted(self, stage: Stage, delete_data: bool, bucket: str | None) -> list[dict[str, str]]:
        if not delete_data:
            return []
        return [{"what": "data lake", "name": datalake_name(stage, bucket), "detail": "deleted with its contents"},
                {"what": "data lake key", "name": kms_name(stage),
                 "detail": "scheduled for deletion (KMS waits 30 days)"}]

    def delete_data_text(self, delete_data: bool) -> str:
        return "and DELETES the data lake (race data, its KMS key)" if delete_data else "and keeps the data lake"

    def delete_data_note(self, delete_data: bool) -> str | None:
        return None
