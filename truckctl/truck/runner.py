"""Run a RunPlan with ansible-runner: a small facade, behaviour injected as callbacks.

Each run gets a fresh private data dir under the state dir (inventory and the one-time
encrypted secrets; removed after the run) and writes its artifacts to a shared, rotated
artifacts dir, which is the run's durable record.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from truckctl.errors import TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.private_file import write_private
from truckctl.processes import RUN_TAG, alive, end_tagged
from truckctl.truck.events import EventCollector, HostEvent, TruckRunResult
from truckctl.truck.plan import RunPlan
from truckctl.truck.vault import VAULT_PROMPT, new_password, write_encrypted_vars

# Variables of truckctl's own environment that ansible-playbook may see. ansible-runner writes the
# job environment into artifacts/<ident>/command, so everything else (cloud credentials, Pulumi
# passphrases, webhook URLs...) is dropped before the run starts.
_INHERITED_ENV = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TERM",
                  "TMPDIR", "TZ", "SSH_AUTH_SOCK"}
_RUNNER_PREFIXES = ("ANSIBLE_", "RUNNER_", "AWX_")
MITOGEN_ENV = "TRUCKCTL_MITOGEN"


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
        **mitogen_env(),
    }


def mitogen_env() -> dict[str, str]:
    """Mitogen's strategy when it is installed, unless TRUCKCTL_MITOGEN=0.

    Mitogen keeps one Python interpreter per node for the whole run instead of starting one per task:
    on the lab's idempotent re-run of stage-1 it cuts the nodes' CPU about 6x (19 -> 3 CPU-s) and
    the run's time about 1.7x (docs/BENCHMARKS.md). Host-key checking stays on (it uses the same ssh
    options and known_hosts). playbooks/ansible.cfg leaves the default strategy, so plain
    `ansible-playbook` works without Mitogen. Located without importing it (fast start-up).
    """
    if os.environ.get(MITOGEN_ENV, "1") == "0":
        return {}
    spec = importlib.util.find_spec("ansible_mitogen")
    for location in (spec.submodule_search_locations or []) if spec else []:
        strategy = Path(location) / "plugins" / "strategy"
        if (strategy / "mitogen_linear.py").is_file():
            return {"ANSIBLE_STRATEGY_PLUGINS": str(strategy), "ANSIBLE_STRATEGY": "mitogen_linear"}
    return {}


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
    ident = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    try:
        settings.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sweep_dead_runs(settings.work_dir)
        private_dir = Path(tempfile.mkdtemp(prefix=f"{ident}-p{os.getpid()}-", dir=settings.work_dir))
    except OSError as exc:
        raise _unwritable(settings, exc) from None
    collector = EventCollector(on_event)
    env = {**job_env(plan, settings), RUN_TAG: private_dir.name}  # every process of the run carries it
    started = time.monotonic()
    try:
        password = new_password() if plan.secret_vars else None
        secrets_file = (write_encrypted_vars(private_dir / "secrets.vault", plan.secret_vars, password)
                        if password else None)
        inventory, extravars = write_data_files(private_dir, plan)
        kwargs: JsonObject = dict(
            private_data_dir=str(private_dir), project_dir=str(plan.project_dir),
            artifact_dir=str(settings.artifacts_dir), ident=ident, rotate_artifacts=settings.keep_artifacts,
            playbook=plan.playbook, inventory=str(inventory), limit=plan.limit,
            forks=plan.forks, cmdline=plan.cmdline(secrets_file, extravars), envvars=env, suppress_env_files=True,
            passwords={VAULT_PROMPT: password} if password else {}, quiet=True,
            event_handler=collector,
        )
        if cancel is not None:  # else ansible-runner's own SIGINT/SIGTERM handler cancels the run
            kwargs["cancel_callback"] = cancel
        runner = ansible_runner.interface.init_runner(**kwargs)
        runner.config.env = filter_env(runner.config.env, env)
        with _stop_signals_interrupt():
            try:
                runner.run()
            except BaseException:  # Ctrl-C, SIGTERM, a lost terminal, a bug: the run's processes end with it
                end_tagged(lambda tag: tag == private_dir.name, spare=())
                raise
        # a canceled run (ansible-runner kills only ansible-playbook's process group) leaves none either;
        # SSH ControlPersist masters of a finished run stay for the next one (they expire by themselves)
        end_tagged(lambda tag: tag == private_dir.name)
    except ansible_runner.exceptions.AnsibleRunnerException as exc:
        raise TruckctlError.single("runner-error", f"ansible-runner could not run the playbook: {exc}") from None
    except OSError as exc:  # e.g. the state directory's disk is full
        raise _unwritable(settings, exc) from None
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
    return TruckRunResult(
        status=str(runner.status), rc=int(runner.rc if runner.rc is not None else 1), check=plan.check,
        hosts=collector.hosts, changes=collector.changes, failures=collector.failures,
        duration_s=time.monotonic() - started, artifacts_dir=str(settings.artifacts_dir / ident), held=collector.held,
    )


def write_data_files(private_dir: Path, plan: RunPlan) -> tuple[Path, Path]:
    """The inventory and the extra vars as files of the run's private dir (mode 0600), every string in them
    `!unsafe`: ansible-runner's own dict inventory and extravars are JSON, which Ansible templates."""
    from truckctl.ansible_data import dump

    paths = []
    for name, data in (("inventory.yml", plan.inventory), ("extravars.yml", plan.extravars)):
        paths.append(write_private(private_dir / name, dump(data).encode("ascii")))
    return paths[0], paths[1]


_OWNER = re.compile(r"-p([0-9]+)-")


def end_orphans(owner: int | None = None) -> list[int]:
    """End the processes of runs whose truckctl died (SIGKILL, power loss of its terminal...), which would
    otherwise go on converging nodes beside the next run. With `owner` (a dead lock holder's pid): all of
    its runs' processes, SSH included; without: those of every dead owner but SSH ControlPersist masters,
    which finished runs leave on purpose (they expire by themselves). Returns the pids ended."""
    def orphaned(tag: str) -> bool:
        found = _OWNER.search(tag)
        return found is not None and (int(found.group(1)) == owner if owner is not None
                                      else not alive(int(found.group(1))))
    return end_tagged(orphaned, spare=() if owner is not None else ("ssh",))


def sweep_dead_runs(work_dir: Path) -> list[Path]:
    """Remove private data dirs whose run died without cleaning up (SIGKILL, power loss): each names
    its process; one that is gone leaves an inventory and one-time encrypted secrets nobody needs.
    Runs of other stages may be going on at the same time: their dirs (process alive) are kept."""
    end_orphans()
    removed = []
    for directory in work_dir.iterdir() if work_dir.is_dir() else []:
        owner = _OWNER.search(directory.name)
        if owner is None or alive(int(owner.group(1))):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a lost terminal) end the run as Ctrl-C does, instead of killing truckctl
    outright and leaving ansible-playbook running in its own session."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        earlier = previous.get(signal.Signals(signum))
        if callable(earlier):  # a program that embeds truckctl (a test session) hears its stop too
            earlier(signum, frame)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _unwritable(settings: RunnerSettings, exc: OSError) -> TruckctlError:
    where = str(exc.filename or settings.work_dir)
    return TruckctlError.single("state-unwritable", f"the truck run cannot write its files: {exc.strerror}; free "
                                f"space in the state directory {settings.state_dir} and re-run", where)
