"""Run a RunPlan with ansible-runner: a small facade, behaviour injected as callbacks.

Each run gets a fresh private data dir under the state dir (inventory and the one-time
encrypted secrets; removed after the run) and writes its artifacts to a shared, rotated
artifacts dir, which is the run's durable record.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from truckctl.errors import TruckctlError
from truckctl.truck.events import EventCollector, HostEvent, TruckRunResult
from truckctl.truck.plan import RunPlan
from truckctl.truck.vault import VAULT_PROMPT, new_password, write_encrypted_vars

# Variables of truckctl's own environment that ansible-playbook may see. ansible-runner writes the
# job environment into artifacts/<ident>/command, so everything else (cloud credentials, Pulumi
# passphrases, webhook URLs...) is dropped before the run starts.
_INHERITED_ENV = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TERM",
                  "TMPDIR", "TZ", "SSH_AUTH_SOCK"}
_RUNNER_PREFIXES = ("ANSIBLE_", "RUNNER_", "AWX_")


@dataclass(frozen=True)
class RunnerSettings:
    state_dir: Path
    keep_artifacts: int = 20  # rotate_artifacts: the newest N runs stay on disk
    venv_bin: Path = Path(sys.executable).parent  # where ansible-playbook lives

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "truck" / "work"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "truck" / "artifacts"


def job_env(plan: RunPlan, settings: RunnerSettings) -> dict[str, str]:
    """Environment for ansible-playbook on top of the inherited allow-list. Never a secret."""
    return {
        "PATH": f"{settings.venv_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_CONFIG": str(plan.project_dir / "ansible.cfg"),
        # ansible-runner turns host-key checking off unless told otherwise.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
    }


def filter_env(env: dict[str, str], added: dict[str, str]) -> dict[str, str]:
    """Keep what ansible-runner and truckctl set, and the inherited allow-list: drop the rest."""
    return {key: value for key, value in env.items()
            if key in added or key in _INHERITED_ENV or key.startswith(_RUNNER_PREFIXES)
            or os.environ.get(key) != value}


def run_plan(plan: RunPlan, settings: RunnerSettings, on_event: Callable[[HostEvent], None] = lambda e: None,
             cancel: Callable[[], bool] | None = None) -> TruckRunResult:
    """Run the plan; return per-host results. Raises TruckctlError if Ansible cannot be started."""
    import ansible_runner  # heavy: imported only when a run happens

    if shutil.which("ansible-playbook", path=str(settings.venv_bin)) is None:
        raise TruckctlError.single("ansible-missing", f"ansible-playbook not found in {settings.venv_bin}: "
                                   "install truckctl with its dependencies (ansible-core, ansible-runner)")
    settings.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ident = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    private_dir = Path(tempfile.mkdtemp(prefix=f"{ident}-", dir=settings.work_dir))
    collector = EventCollector(on_event)
    env = job_env(plan, settings)
    started = time.monotonic()
    try:
        password = new_password() if plan.secret_vars else None
        secrets_file = (write_encrypted_vars(private_dir / "secrets.vault", plan.secret_vars, password)
                        if password else None)
        kwargs: dict[str, Any] = dict(
            private_data_dir=str(private_dir), project_dir=str(plan.project_dir),
            artifact_dir=str(settings.artifacts_dir), ident=ident, rotate_artifacts=settings.keep_artifacts,
            playbook=plan.playbook, inventory=plan.inventory, extravars=plan.extravars, limit=plan.limit,
            forks=plan.forks, cmdline=plan.cmdline(secrets_file), envvars=env, suppress_env_files=True,
            passwords={VAULT_PROMPT: password} if password else {}, quiet=True,
            event_handler=collector,
        )
        if cancel is not None:  # else ansible-runner's own SIGINT/SIGTERM handler cancels the run
            kwargs["cancel_callback"] = cancel
        runner = ansible_runner.interface.init_runner(**kwargs)
        runner.config.env = filter_env(runner.config.env, env)
        runner.run()
    except ansible_runner.exceptions.AnsibleRunnerException as exc:
        raise TruckctlError.single("runner-error", f"ansible-runner could not run the playbook: {exc}") from None
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
    return TruckRunResult(
        status=str(runner.status), rc=int(runner.rc if runner.rc is not None else 1), check=plan.check,
        hosts=collector.hosts, changes=collector.changes, failures=collector.failures,
        duration_s=time.monotonic() - started, artifacts_dir=str(settings.artifacts_dir / ident),
    )
