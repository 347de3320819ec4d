"""The aws engine without the Pulumi CLI: the missing-CLI path, backends, error mapping, and the
operation flows against a fake Automation API stack."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pulumi.automation import CommandResult, ConfigValue, OpType
from pulumi.automation.errors import CommandError, ConcurrentUpdateError

from tests.helpers import REPO
from truckctl.cloud import engine
from truckctl.cloud.engine import AwsEngine, CloudEvent, backend_url, secrets_provider_url, to_cloud_event
from truckctl.config.loader import load_stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("TRUCKCTL_STATE_DIR", str(tmp_path / "state"))
    return Project(REPO)


@pytest.fixture
def stage(project: Project) -> Any:
    return load_stage(project, "stage-1")


def test_without_the_pulumi_cli_nothing_is_written(project: Project, stage: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.shutil, "which", lambda name: None)
    before = sorted(p.name for p in (REPO / "stacks").iterdir())
    with pytest.raises(TruckctlError) as caught:
        AwsEngine(project, stage, environ={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}).preview()
    error = caught.value
    assert error.exit_code == ExitCode.ERROR and error.problems[0].code == "pulumi-missing"
    assert "\n" not in str(error) and "install" in str(error) and "Pulumi CLI" in str(error)
    assert not (tmp_path / "state").exists()
    assert sorted(p.name for p in (REPO / "stacks").iterdir()) == before


def test_a_vanished_cli_raising_file_not_found_is_the_same_error(project: Project, stage: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi.automation

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", "pulumi")

    monkeypatch.setattr(engine.shutil, "which", lambda name: "/nowhere/pulumi")
    monkeypatch.setattr(pulumi.automation, "PulumiCommand", missing)
    with pytest.raises(TruckctlError) as caught:
        AwsEngine(project, stage, environ={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}).up()
    assert caught.value.problems[0].code == "pulumi-missing" and caught.value.exit_code == ExitCode.ERROR
    assert not (tmp_path / "state").exists()


def test_missing_passphrase_is_refused_before_any_write(project: Project, stage: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.shutil, "which", lambda name: "/usr/bin/pulumi")
    with pytest.raises(TruckctlError) as caught:
        AwsEngine(project, stage, environ={}).preview()
    assert caught.value.exit_code == ExitCode.INVALID_CONFIG
    assert "PULUMI_CONFIG_PASSPHRASE" in str(caught.value)  # named by the race file's pulumi-passphrase secret
    assert not (tmp_path / "state").exists()


def test_backend_urls(project: Project, tmp_path: Path) -> None:
    assert backend_url(project) == (tmp_path / "state" / "pulumi").as_uri()
    assert backend_url(project, "s3://race-state/truckctl") == "s3://race-state/truckctl"
    with pytest.raises(TruckctlError) as caught:
        backend_url(project, "race-state")
    assert caught.value.exit_code == ExitCode.USAGE


def test_secrets_providers() -> None:
    assert secrets_provider_url(None) == "passphrase"
    assert secrets_provider_url("awskms://alias/race") == "awskms://alias/race"
    with pytest.raises(TruckctlError):
        secrets_provider_url("hashivault://x")


def test_lock_conflicts_exit_4(project: Project, stage: Any) -> None:
    conflict = ConcurrentUpdateError(CommandResult("", "error: the stack is currently locked by 1 lock(s)", 255))
    error = AwsEngine(project, stage).map_error(conflict)
    assert error.exit_code == ExitCode.LOCKED and error.problems[0].code == "stack-locked"


def test_other_failures_exit_1_with_a_short_scrubbed_line(project: Project, stage: Any) -> None:
    aws = AwsEngine(project, stage, environ={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})
    aws._env()  # registers the passphrase for scrubbing
    stderr = "\n".join(["Traceback (most recent call last):", "  File x", f"error: decrypt failed with {PASSPHRASE}"])
    error = aws.map_error(CommandError(CommandResult("Updating (stage-1)\n" * 50, stderr, 255)))
    message = str(error)
    assert error.exit_code == ExitCode.ERROR and "\n" not in message and len(message) < 400
    assert "decrypt failed" in message and PASSPHRASE not in message and "Traceback" not in message
    assert aws.map_error(RuntimeError("boom")).exit_code == ExitCode.ERROR


def test_engine_events_carry_names_and_changed_keys_never_values() -> None:
    meta = SimpleNamespace(op=OpType.UPDATE, urn="urn:pulumi:stage-1::truckctl-race::aws:s3/bucket:Bucket::datalake",
                           type="aws:s3/bucket:Bucket", diffs=["tags"], old={"secret": "x"}, new={"secret": "y"})
    event = to_cloud_event(SimpleNamespace(res_outputs_event=SimpleNamespace(metadata=meta)))
    assert event == CloudEvent("resource", "done", "update", "datalake", "aws:s3/bucket:Bucket", changed=("tags",))
    diag = SimpleNamespace(resource_pre_event=None, res_outputs_event=None, res_op_failed_event=None,
                           diagnostic_event=SimpleNamespace(severity="warning", ephemeral=False,
                                                            message="\x1b[33mdeprecated\x1b[0m\n"))
    assert to_cloud_event(diag) == CloudEvent("diagnostic", op="warning", message="deprecated")
    assert to_cloud_event(SimpleNamespace()) is None


class FakeStack:
    """The parts of pulumi.automation.Stack the engine uses, recording calls."""

    def __init__(self, config: dict[str, Any] | None = None, events: list[Any] | None = None) -> None:
        self.config = dict(config or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.events = events or []

    def get_all_config(self) -> dict[str, Any]:
        return self.config

    def set_config(self, key: str, value: ConfigValue) -> None:
        self.config[f"truckctl-race:{key}"] = value

    def _run(self, name: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((name, kwargs))
        for event in self.events:
            kwargs["on_event"](event)

    def preview(self, **kwargs: Any) -> Any:
        self._run("preview", kwargs)
        return SimpleNamespace(change_summary={OpType.CREATE: 67})

    def refresh(self, **kwargs: Any) -> Any:
        self._run("refresh", kwargs)
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={}))

    def up(self, **kwargs: Any) -> Any:
        self._run("up", kwargs)
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={OpType.SAME: 67}), outputs=_outputs())

    def destroy(self, **kwargs: Any) -> Any:
        self._run("destroy", kwargs)
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={OpType.DELETE: 50}))


def _outputs() -> dict[str, Any]:
    truck = {"thingName": "t", "clientId": "t", "topicPrefix": "gdf27/t", "certificatePem": "PEM",
             "certificateRef": "arn:aws:iot:eu-south-1:1:cert/x"}
    return {"region": "eu-south-1", "mqttHost": "x-ats.iot", "mqttPort": 8883, "caPem": "CA", "trucks": {"t": truck},
            "truckPrivateKeys": {"t": "KEY"}, "telemetryStream": "s", "datalakeBucket": "b", "alertTopicArn": "arn",
            "vpnEndpoint": "203.0.113.1:51820", "vpnPublicKey": "pub"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Swap the Automation API entry points for fakes; record what the engine asked for."""
    import pulumi.automation

    seen: dict[str, Any] = {"stack": FakeStack()}

    def create_or_select_stack(name: str, work_dir: str, opts: Any) -> FakeStack:
        seen.update(name=name, work_dir=work_dir, opts=opts)
        return seen["stack"]

    monkeypatch.setattr(engine.shutil, "which", lambda name: "/usr/bin/pulumi")
    monkeypatch.setattr(pulumi.automation, "PulumiCommand", lambda: "pulumi-command")
    monkeypatch.setattr(pulumi.automation, "create_or_select_stack", create_or_select_stack)
    return seen


def make(project: Project, stage: Any, **kwargs: Any) -> AwsEngine:
    environ = {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "TRUCKCTL_ALERT_WEBHOOK": "https://hooks.example/x"}
    return AwsEngine(project, stage, environ=environ, **kwargs)


def test_preview_uses_the_stacks_dir_file_backend_and_a_generated_vpn_key(project: Project, stage: Any,
                                                                         fake: dict[str, Any], tmp_path: Path) -> None:
    result = make(project, stage).preview()
    assert result.changes == {"create": 67} and result.changed
    # The race's one stack, moved to the stage through its config.
    assert fake["name"] == "gdf27" and fake["work_dir"] == str(REPO / "stacks")
    assert fake["stack"].config["truckctl-race:stage"].value == "stage-1"
    env = fake["opts"].env_vars
    assert env["PULUMI_BACKEND_URL"] == (tmp_path / "state" / "pulumi").as_uri()
    assert env["PULUMI_CONFIG_PASSPHRASE"] == PASSPHRASE and fake["opts"].secrets_provider == "passphrase"
    assert (tmp_path / "state" / "pulumi").is_dir()
    key = fake["stack"].config["truckctl-race:vpnPrivateKey"]
    assert key.secret is True and len(key.value) == 44
    assert fake["stack"].config["truckctl-race:deleteData"].value == "false"


def test_end_day_takes_the_race_stack_between_stages(project: Project, stage: Any, fake: dict[str, Any]) -> None:
    fake["stack"] = FakeStack({"truckctl-race:vpnPrivateKey": ConfigValue("kept", secret=True),
                               "truckctl-race:stage": ConfigValue("stage-1")})
    result = make(project, stage).end_day()
    assert result.operation == "end-day" and [name for name, _ in fake["stack"].calls] == ["up"]
    assert fake["stack"].config["truckctl-race:stage"].value == ""
    assert fake["stack"].config["truckctl-race:vpnPrivateKey"].value == "kept"  # the hub's key lasts the race


def test_rotate_certificate_raises_one_truck_generation_and_keeps_the_day(project: Project, stage: Any,
                                                                          fake: dict[str, Any]) -> None:
    fake["stack"] = FakeStack({"truckctl-race:vpnPrivateKey": ConfigValue("kept", secret=True),
                               "truckctl-race:stage": ConfigValue("stage-4"),
                               "truckctl-race:certificateGenerations": ConfigValue('{"truck-b": 2}')})
    result = make(project, stage).rotate_certificate("truck-a")
    assert result.operation == "rotate-cert" and [name for name, _ in fake["stack"].calls] == ["up"]
    assert json.loads(fake["stack"].config["truckctl-race:certificateGenerations"].value) == {"truck-a": 1,
                                                                                             "truck-b": 2}
    assert fake["stack"].config["truckctl-race:stage"].value == "stage-4"  # not moved to the engine's stage


def test_an_existing_vpn_key_is_kept(project: Project, stage: Any, fake: dict[str, Any]) -> None:
    fake["stack"] = FakeStack({"truckctl-race:vpnPrivateKey": ConfigValue("kept", secret=True)})
    make(project, stage).preview()
    assert fake["stack"].config["truckctl-race:vpnPrivateKey"].value == "kept"


def test_up_returns_cloud_outputs_and_streams_events(project: Project, stage: Any, fake: dict[str, Any]) -> None:
    meta = SimpleNamespace(op=OpType.CREATE, urn="urn:x::aws:kinesis/stream:Stream::telemetry-stream",
                           type="aws:kinesis/stream:Stream", diffs=None)
    fake["stack"].events = [SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=meta))]
    seen: list[CloudEvent] = []
    outputs, result = make(project, stage, on_event=seen.append).up()
    assert outputs.trucks["t"].private_key_pem.get_secret_value() == "KEY"
    assert outputs.alert_webhook_url == "https://hooks.example/x" and outputs.placeholder is False
    assert result.changes == {"same": 67} and not result.changed
    assert seen == [CloudEvent("resource", "start", "create", "telemetry-stream", "aws:kinesis/stream:Stream")]
    assert fake["stack"].calls[0][1]["show_secrets"] is False


def test_drift_is_a_refresh_preview_then_a_preview(project: Project, stage: Any, fake: dict[str, Any]) -> None:
    meta = SimpleNamespace(op=OpType.REFRESH, urn="urn:x::aws:s3/bucket:Bucket::datalake",
                           type="aws:s3/bucket:Bucket", diffs=["versioning"])
    fake["stack"].events = [SimpleNamespace(res_outputs_event=SimpleNamespace(metadata=meta))]
    result = make(project, stage).drift()
    assert [name for name, _ in fake["stack"].calls] == ["refresh", "preview"]
    assert fake["stack"].calls[0][1]["preview_only"] is True
    assert result.drifted == ["datalake"] and result.changed


def test_destroy_keeps_the_data_lake_unless_asked(project: Project, stage: Any, fake: dict[str, Any]) -> None:
    make(project, stage).destroy()
    assert [(n, kw["exclude_protected"]) for n, kw in fake["stack"].calls if n == "destroy"] == [("destroy", True)]
    assert [n for n, _ in fake["stack"].calls] == ["destroy"]

    fake["stack"] = FakeStack()
    make(project, stage).destroy(delete_data=True)
    assert [n for n, _ in fake["stack"].calls] == ["up", "destroy"]  # lift protection, then delete
    assert fake["stack"].calls[1][1]["exclude_protected"] is False
    assert fake["stack"].config["truckctl-race:deleteData"].value == "true"


def test_automation_errors_during_an_operation_are_mapped(project: Project, stage: Any,
                                                          fake: dict[str, Any]) -> None:
    class Locked(FakeStack):
        def preview(self, **kwargs: Any) -> Any:
            raise ConcurrentUpdateError(CommandResult("", "[409] Conflict: Another update is currently in progress.",
                                                      255))

    fake["stack"] = Locked()
    with pytest.raises(TruckctlError) as caught:
        make(project, stage).preview()
    assert caught.value.exit_code == ExitCode.LOCKED
