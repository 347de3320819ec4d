"""A run is over only when all of its processes are: ansible-runner starts ansible-playbook in a session
of its own, so neither Ctrl-C nor SIGTERM to truckctl reaches it, and a SIGKILLed truckctl leaves it
converging nodes beside the next run. Real processes and a real ansible-playbook run (connection local)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, FakeConnection, make_cloud
from tests.sigterm import sent_by_the_test
from truckctl.config.loader import load_stage
from truckctl.processes import RUN_TAG, alive, tagged
from truckctl.project import Project
from truckctl.truck.plan import build_plan
from truckctl.truck.runner import RunnerSettings, end_orphans, run_plan

PLAYBOOK = """\
- name: A long task
  hosts: truck-a-gw
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {python}
  tasks:
    - name: Wait
      ansible.builtin.command: sleep 120
      changed_when: false
"""


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def start_tree(tag: str, tmp_path: Path, name: str = "sleep") -> subprocess.Popen[bytes]:
    """A session of its own (as ansible-runner's pexpect makes) with a child: both carry the tag."""
    binary = tmp_path / name
    if not binary.exists():
        binary.symlink_to(shutil.which("sleep") or "/bin/sleep")
    return subprocess.Popen(["sh", "-c", f'"{binary}" 300 & exec "{binary}" 300'], start_new_session=True,
                            env={**os.environ, RUN_TAG: tag})


def wait_gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def test_the_processes_of_a_dead_runs_truckctl_are_ended_and_nothing_else(tmp_path: Path) -> None:
    orphan = start_tree(f"20270509T0700-ab-p{dead_pid()}-x1", tmp_path)
    ours = start_tree(f"20270509T0700-cd-p{os.getpid()}-x2", tmp_path)  # its truckctl (this test) is alive
    ssh_master = start_tree(f"20270509T0700-ef-p{dead_pid()}-x3", tmp_path, name="ssh")
    try:
        def mine(suffix: str) -> set[int]:
            return {pid for pid, tag in tagged().items() if tag.endswith(suffix)}

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(len(mine(s)) == 2 for s in ("-x1", "-x2", "-x3")):
            time.sleep(0.05)  # each session: the shell's exec'd sleep and its background child
        orphans, spared = mine("-x1"), mine("-x2") | mine("-x3")
        assert len(orphans) == 2 and len(spared) == 4
        ended = set(end_orphans())  # (other dead runs' leftovers on this machine would go too)
        assert orphans <= ended and not spared & ended and wait_gone(list(orphans))
        assert all(alive(pid) for pid in spared)  # a live run's, and SSH masters (they expire)
    finally:
        for proc in (orphan, ours, ssh_master):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_end_orphans_of_one_owner_spares_other_owners(tmp_path: Path) -> None:
    owner, other = dead_pid(), dead_pid()
    first = start_tree(f"x-p{owner}-a", tmp_path)
    second = start_tree(f"x-p{other}-b", tmp_path)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len([t for t in tagged().values() if t == f"x-p{owner}-a"]) < 2:
            time.sleep(0.05)
        assert len(end_orphans(owner)) == 2
        assert alive(second.pid)
    finally:
        for proc in (first, second):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "sigterm", "sighup"])
def test_an_interrupted_run_leaves_no_process_behind(tmp_path: Path, stop: signal.Signals) -> None:
    stage = load_stage(Project(REPO), "stage-1")
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "ansible.cfg").write_text("[defaults]\ngathering = explicit\n")
    (playbooks / "site.yml").write_text(PLAYBOOK.format(python=shutil.which("python3")))
    plan = build_plan(playbooks, stage, make_cloud(stage), FakeConnection(), "lab", limit="truck-a-gw")
    settings = RunnerSettings(tmp_path / "state")

    earlier = set(tagged())  # e.g. SSH masters that earlier tests' runs left on purpose (same pid in the tag)

    def running() -> list[int]:
        return [pid for pid, tag in tagged().items() if f"-p{os.getpid()}-" in tag and pid not in earlier]

    def command_line(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        except OSError:  # it ended between the listing and the read (CI once lost the watcher to this)
            return ""

    def stop_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("sleep" in command_line(pid) for pid in running()):
            time.sleep(0.1)
        os.kill(os.getpid(), stop)

    # Python leaves SIGINT ignored when it starts ignored (a job started with & by a script, as CI may be):
    # give it the handler an interactive truckctl has
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=stop_when_running, daemon=True).start()
    try:
        with sent_by_the_test(), pytest.raises(KeyboardInterrupt):
            run_plan(plan, settings, cancel=lambda: False)  # as truckctl calls it: its own cancel, no runner handler
    finally:
        signal.signal(signal.SIGINT, previous)
    survivors = running() if not wait_gone(running()) else []
    assert not survivors, [command_line(pid) for pid in survivors]
