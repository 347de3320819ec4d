"""The aws-target engine: the stacks/ program driven through Pulumi's Automation API.

One `LocalWorkspace` over stacks/ per operation. The race has ONE stack, named after the race id;
its config `stage` is the day (`up STAGE` moves the race there, `end_day` takes it between stages)
and `certificateGenerations` is raised only by `rotate_certificate`. State goes
to the local file backend under `<state_dir>/pulumi` unless a backend URL is given (s3://...).
Secrets are encrypted with a passphrase from the environment (the race file names the
variable as secret `pulumi-passphrase`) or with `awskms://...`.

Nothing is written (no state directory, no stack config) before the checks that can fail
cheaply: the `pulumi` CLI on PATH, the passphrase present. pulumi.automation is imported
inside the methods so that importing this module stays cheap.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project

if TYPE_CHECKING:
    from pulumi.automation import Stack

PULUMI_MISSING = ("the aws target needs the Pulumi CLI (>= 3) on PATH, which was not found: install it from "
                  "https://www.pulumi.com/docs/iac/download-install/ (curl -fsSL https://get.pulumi.com | sh)")
PASSPHRASE_SECRET = "pulumi-passphrase"
DEFAULT_PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"
CONFIG_PREFIX = "truckctl-race:"  # the project name in stacks/Pulumi.yaml
DRIFT_OPS = ("update", "delete", "create", "replace", "create-replacement", "delete-replaced")
BETWEEN_STAGES = ""  # the `stage` config of the race's stack between stages


@dataclass(frozen=True)
class CloudEvent:
    """One progress event, small and secret-free: what the CLI shows and the journal records."""

    kind: str  # resource | diagnostic | summary
    phase: str = ""  # start | done | failed (resource events)
    op: str = ""
    name: str = ""
    type: str = ""
    message: str = ""
    changed: tuple[str, ...] = ()  # property names that differ (never their values)


OnEvent = Callable[[CloudEvent], None]


@dataclass
class OperationResult:
    operation: str
    changes: dict[str, int] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(count for op, count in self.changes.items() if op != "same") or bool(self.drifted)

    def as_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "changes": self.changes, "drifted": self.drifted,
                "changed": self.changed}


def backend_url(project: Project, backend: str | None = None) -> str:
    """`--backend` as given (s3://, file://, https://), else the local file backend in the state dir."""
    if backend:
        if "://" not in backend:
            raise TruckctlError.single("bad-backend", f"expected a backend URL such as s3://bucket/prefix or "
                                       f"file:///path, got {backend!r}", "--backend", ExitCode.USAGE)
        return backend
    return (project.state_dir / "pulumi").resolve().as_uri()


def secrets_provider_url(provider: str | None) -> str:
    if provider in (None, "", "passphrase"):
        return "passphrase"
    if provider.startswith("awskms://"):
        return provider
    raise TruckctlError.single("bad-secrets-provider", f"expected passphrase or awskms://KEY, got {provider!r}",
                               "--secrets-provider", ExitCode.USAGE)


def require_pulumi_cli() -> str:
    path = shutil.which("pulumi")
    if path is None:
        raise TruckctlError.single("pulumi-missing", PULUMI_MISSING)
    return path


def new_wireguard_key() -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return base64.b64encode(X25519PrivateKey.generate().private_bytes_raw()).decode()


class AwsEngine:
    def __init__(self, project: Project, stage: Stage, *, backend: str | None = None,
                 secrets_provider: str | None = None, on_event: OnEvent | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.project = project
        self.stage = stage
        self.backend = backend_url(project, backend)
        self.secrets_provider = secrets_provider_url(secrets_provider)
        self.on_event = on_event
        self.environ = os.environ if environ is None else environ
        self._secrets: list[str] = []  # values to scrub from any message we pass on

    @property
    def stack_name(self) -> str:
        """The race's one stack: every stage is a move of it."""
        return self.stage.race.id

    # --- operations ----------------------------------------------------------------------------

    def preview(self) -> OperationResult:
        with self._stack() as stack:
            result = stack.preview(on_event=self._forward, color="never", suppress_progress=True)
            return OperationResult("preview", _op_counts(result.change_summary))

    def up(self) -> tuple[CloudOutputs, OperationResult]:
        from truckctl.cloud.stack_outputs import cloud_outputs_from_stack

        with self._stack() as stack:
            result = stack.up(on_event=self._forward, color="never", suppress_progress=True, show_secrets=False)
            changes = _op_counts(result.summary.resource_changes or {})
            return cloud_outputs_from_stack(result.outputs, alert_webhook_url=self._webhook()), \
                OperationResult("up", changes)

    def end_day(self) -> OperationResult:
        """The race between stages: the day's parts (its trucks' alarms, its LAN routes) removed; what
        lives the race (lake, stream, key, things, certificates, VPN hub) untouched."""
        with self._stack(day=BETWEEN_STAGES) as stack:
            result = stack.up(on_event=self._forward, color="never", suppress_progress=True, show_secrets=False)
            return OperationResult("end-day", _op_counts(result.summary.resource_changes or {}))

    def rotate_certificate(self, truck: str) -> OperationResult:
        """A new certificate for one truck, on purpose: its generation raised, then `pulumi up` creates
        the new certificate before it deletes the old one. The stack stays at the day it is at."""
        import json

        with self._stack(day=None) as stack:
            from pulumi.automation import ConfigValue

            raw = stack.get_all_config().get(CONFIG_PREFIX + "certificateGenerations")
            generations = json.loads(raw.value) if raw is not None and raw.value else {}
            generations[truck] = int(generations.get(truck, 0)) + 1
            stack.set_config("certificateGenerations", ConfigValue(json.dumps(generations, sort_keys=True)))
            result = stack.up(on_event=self._forward, color="never", suppress_progress=True, show_secrets=False)
            return OperationResult("rotate-cert", _op_counts(result.summary.resource_changes or {}))

    def current_stage(self) -> str | None:
        """The stage the race's stack is at (None: between stages, or never deployed)."""
        from truckctl.cloud.stack_outputs import _plain

        with self._stack(day=None) as stack:
            return str(_plain(stack.outputs().get("stage")) or "") or None

    def drift(self) -> OperationResult:
        """Refresh as a preview (what differs in AWS from the state), then a preview of the program."""
        drifted: list[str] = []

        def collect(event: CloudEvent) -> None:
            if event.kind == "resource" and event.phase == "done" and (event.changed or event.op in DRIFT_OPS):
                drifted.append(event.name)
            self._emit(event)

        with self._stack() as stack:
            stack.refresh(preview_only=True, on_event=lambda e: self._forward(e, collect), color="never",
                          suppress_progress=True, show_secrets=False)
            result = stack.preview(on_event=self._forward, color="never", suppress_progress=True)
            return OperationResult("drift", _op_counts(result.change_summary), sorted(set(drifted)))

    def destroy(self, delete_data: bool = False) -> OperationResult:
        """Tear the race's cloud down; the data lake (and its key) stays unless `delete_data`."""
        with self._stack(delete_data=delete_data, day=None) as stack:
            if delete_data:
                # Protection is a resource option: an update must lift it before a destroy may delete.
                stack.up(on_event=self._forward, color="never", suppress_progress=True, show_secrets=False)
            result = stack.destroy(on_event=self._forward, color="never", suppress_progress=True,
                                   exclude_protected=not delete_data, show_secrets=False)
            return OperationResult("destroy", _op_counts(result.summary.resource_changes or {}))

    def outputs(self) -> CloudOutputs:
        from truckctl.cloud.stack_outputs import cloud_outputs_from_stack

        with self._stack(day=None) as stack:
            return cloud_outputs_from_stack(stack.outputs(), alert_webhook_url=self._webhook())

    def certificates(self) -> tuple[str, dict[str, str]]:
        """The region and each truck's IoT certificate id, from the stack outputs (for revocation)."""
        from truckctl.cloud.stack_outputs import truck_certificates

        with self._stack(day=None) as stack:
            return truck_certificates(stack.outputs())

    # --- plumbing ------------------------------------------------------------------------------

    def _webhook(self) -> str | None:
        """The race's alert webhook is a secret of the race file, not a stack output."""
        ref = self.stage.alerts.webhook
        return (self.environ.get(ref.env) or None) if ref is not None else None

    def _env(self) -> dict[str, str]:
        env = {"PULUMI_BACKEND_URL": self.backend, "PULUMI_SKIP_UPDATE_CHECK": "true"}
        if self.secrets_provider == "passphrase":
            ref = self.stage.secrets.get(PASSPHRASE_SECRET)
            variable = ref.env if ref is not None else DEFAULT_PASSPHRASE_ENV
            passphrase = self.environ.get(variable)
            if not passphrase:
                raise TruckctlError.single(
                    "secret-missing", f"secret {PASSPHRASE_SECRET}: set {variable} (it encrypts the stack's "
                    "secrets), or use --secrets-provider awskms://...", f"env {variable}", ExitCode.INVALID_CONFIG)
            env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
            self._secrets.append(passphrase)
        return env

    @contextmanager
    def _stack(self, delete_data: bool = False, day: str | None = "today") -> Iterator[Stack]:
        """The race's stack; `day` "today" moves it to this engine's stage, None leaves its stage config as it is."""
        require_pulumi_cli()
        env = self._env()  # may refuse: still nothing written
        with self._errors():
            from pulumi.automation import ConfigValue, LocalWorkspaceOptions, PulumiCommand, create_or_select_stack

            command = PulumiCommand()  # runs `pulumi version`: a vanished CLI fails here, before any write
            if self.backend.startswith("file://"):
                Path(self.backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
            stack = create_or_select_stack(
                self.stack_name, work_dir=str(self.project.stacks_dir),
                opts=LocalWorkspaceOptions(env_vars=env, secrets_provider=self.secrets_provider,
                                           pulumi_command=command))
            config = stack.get_all_config()
            if CONFIG_PREFIX + "vpnPrivateKey" not in config:
                # Generated once, kept encrypted in the stack config: the gateway's identity for the race.
                key = new_wireguard_key()
                self._secrets.append(key)
                stack.set_config("vpnPrivateKey", ConfigValue(key, secret=True))
            stack.set_config("deleteData", ConfigValue("true" if delete_data else "false"))
            if day is not None:
                stack.set_config("stage", ConfigValue(self.stage.name if day == "today" else day))
            yield stack

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except TruckctlError:
            raise
        except FileNotFoundError as exc:
            if _is_missing_pulumi(exc):
                raise TruckctlError.single("pulumi-missing", PULUMI_MISSING) from None
            raise self.map_error(exc) from None
        except Exception as exc:  # mapped to one user-facing error, never a traceback
            raise self.map_error(exc) from None

    def map_error(self, exc: BaseException) -> TruckctlError:
        from pulumi.automation.errors import CommandError, ConcurrentUpdateError, InvalidVersionError

        stage = self.stack_name
        if isinstance(exc, ConcurrentUpdateError):
            return TruckctlError.single("stack-locked", f"the Pulumi stack {stage} is locked by another update; "
                                        "wait for it, or clear a dead lock with `pulumi cancel`", stage,
                                        ExitCode.LOCKED)
        if isinstance(exc, InvalidVersionError):
            return TruckctlError.single("pulumi-version", f"{self._scrub(str(exc))}: {PULUMI_MISSING}")
        if isinstance(exc, CommandError):
            return TruckctlError.single("pulumi-failed", f"pulumi failed on stack {stage}: "
                                        f"{self._scrub(_command_summary(exc))}", stage)
        return TruckctlError.single("pulumi-failed", f"pulumi failed on stack {stage}: {type(exc).__name__}: "
                                    f"{self._scrub(str(exc))[:300]}", stage)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[secret]")
        return text

    def _emit(self, event: CloudEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _forward(self, raw: Any, sink: OnEvent | None = None) -> None:
        event = to_cloud_event(raw)
        if event is not None:
            event = CloudEvent(**{**event.__dict__, "message": self._scrub(event.message)})
            (sink or self._emit)(event)


def to_cloud_event(raw: Any) -> CloudEvent | None:
    """An Automation API EngineEvent as a CloudEvent: names, ops and changed keys, never values."""
    for attr, phase in (("resource_pre_event", "start"), ("res_outputs_event", "done"),
                        ("res_op_failed_event", "failed")):
        sub = getattr(raw, attr, None)
        if sub is not None:
            meta = sub.metadata
            op = getattr(meta.op, "value", str(meta.op))
            if meta.type == "pulumi:pulumi:Stack":
                return None
            return CloudEvent("resource", phase, op, meta.urn.rsplit("::", 1)[-1], meta.type,
                              changed=tuple(meta.diffs or ()))
    diagnostic = getattr(raw, "diagnostic_event", None)
    if diagnostic is not None and diagnostic.severity in ("warning", "error") and not diagnostic.ephemeral:
        return CloudEvent("diagnostic", op=diagnostic.severity, message=_strip_ansi(diagnostic.message).strip())
    summary = getattr(raw, "summary_event", None)
    if summary is not None:
        counts = ", ".join(f"{getattr(k, 'value', k)} {v}" for k, v in (summary.resource_changes or {}).items())
        return CloudEvent("summary", message=f"{counts} in {summary.duration_seconds} s")
    return None


def _op_counts(ops: Mapping[Any, int]) -> dict[str, int]:
    return {str(getattr(op, "value", op)): int(count) for op, count in ops.items()}


def _is_missing_pulumi(exc: FileNotFoundError) -> bool:
    return exc.filename in (None, "pulumi") or "pulumi" in str(exc)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


_ERROR_LINE = re.compile(r"(?:^|\s)error:\s*(.+)$")


def _command_summary(exc: BaseException) -> str:
    """The engine's own `error:` line(s) from a failed command, shortened; else its last output line.

    CommandError keeps no reference to its CommandResult, only its text (code, stdout, stderr).
    """
    lines = [line.strip() for line in _strip_ansi(str(exc)).splitlines() if line.strip()]
    errors = [m.group(1).strip() for m in map(_ERROR_LINE.search, lines) if m]
    chosen = "; ".join(dict.fromkeys(errors)) if errors else (lines[-1] if lines else "no output")
    return chosen if len(chosen) <= 300 else chosen[:300] + "..."
