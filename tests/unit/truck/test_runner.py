"""The runner's pure parts: the job environment, what is kept of truckctl's own environment, and
the one-time vault that carries the secrets."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.helpers import KEY_BODY, FakeConnection, fake_key
from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.truck.plan import build_plan
from truckctl.truck.runner import RunnerSettings, filter_env, job_env
from truckctl.truck.vault import VAULT_PROMPT, new_password, write_encrypted_vars


def test_job_env_finds_the_venv_and_keeps_host_key_checking_on(tmp_path: Path, stage: Stage,
                                                                 cloud: CloudOutputs) -> None:
    plan = build_plan(Path("/repo/playbooks"), stage, cloud, FakeConnection(), "lab")
    env = job_env(plan, RunnerSettings(tmp_path, venv_bin=Path("/venv/bin")))
    assert env["PATH"].split(os.pathsep)[0] == "/venv/bin"
    assert env["ANSIBLE_CONFIG"] == "/repo/playbooks/ansible.cfg"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"  # ansible-runner would default it to False
    assert not any("PRIVATE KEY" in value for value in env.values())


def test_state_dir_layout(tmp_path: Path) -> None:
    settings = RunnerSettings(tmp_path)
    assert settings.work_dir == tmp_path / "truck" / "work"
    assert settings.artifacts_dir == tmp_path / "truck" / "artifacts"
    assert settings.keep_artifacts > 0  # rotation bounds disk use


def test_filter_env_drops_inherited_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abc123")
    monkeypatch.setenv("LANG", "C.UTF-8")
    added = {"ANSIBLE_CONFIG": "/repo/playbooks/ansible.cfg", "PATH": "/venv/bin:/usr/bin"}
    runner_env = {**os.environ, **added, "ANSIBLE_STDOUT_CALLBACK": "awx_display", "RUNNER_OMIT_EVENTS": "False"}
    kept = filter_env(runner_env, added)
    assert "PULUMI_CONFIG_PASSPHRASE" not in kept
    assert "AWS_SECRET_ACCESS_KEY" not in kept
    assert kept["LANG"] == "C.UTF-8"
    assert kept["PATH"] == "/venv/bin:/usr/bin"
    assert kept["ANSIBLE_STDOUT_CALLBACK"] == "awx_display"
    assert kept["RUNNER_OMIT_EVENTS"] == "False"


def test_vault_file_is_private_encrypted_and_opens_with_the_password(tmp_path: Path) -> None:
    password = new_password()
    assert len(password) >= 40 and password != new_password()
    values = {"cloud_truck_keys": {"truck-a": fake_key("truck-a")}}
    path = write_encrypted_vars(tmp_path / "secrets.vault", values, password)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert raw.startswith(b"$ANSIBLE_VAULT;")
    assert KEY_BODY["truck-a"].encode() not in raw
    clear = VaultLib([("default", VaultSecret(password.encode()))]).decrypt(raw)
    assert KEY_BODY["truck-a"].encode() in clear


def test_vault_prompt_matches_ansible_playbook_prompt() -> None:
    import re

    assert re.search(VAULT_PROMPT, "Vault password: ", re.MULTILINE)


def test_private_dirs_of_dead_runs_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    from truckctl.truck.runner import sweep_dead_runs

    dead = subprocess.Popen(["true"])
    dead.wait()
    work = tmp_path / "work"
    mine = work / f"20270508T060000-aaaa-p{os.getpid()}-x1"
    gone = work / f"20270508T060001-bbbb-p{dead.pid}-x2"
    legacy = work / "20270508T060002-cccc-x3"  # from before runs named their process: left alone
    for directory in (mine, gone, legacy):
        directory.mkdir(parents=True)
        (directory / "secrets.vault").write_text("$ANSIBLE_VAULT;1.1;AES256\n")
    assert sweep_dead_runs(work) == [gone]
    assert mine.exists() and legacy.exists() and not gone.exists()
