"""Lint of the truck tier as tests: ansible-lint (production profile), yamllint over playbooks/
and inventory/, and `ansible-playbook --syntax-check` against a rendered inventory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

BIN = Path(sys.executable).parent


def _run(*argv: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The venv's bin first: ansible-lint runs ansible-playbook and ansible-config itself.
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1",
                **(env or {})}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=full_env)


def test_ansible_lint() -> None:
    proc = _run(str(BIN / "ansible-lint"), "--offline", "--nocolor", "playbooks")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", ["playbooks", "inventory", "bench/module_cost"])
def test_yamllint(path: str) -> None:
    proc = _run(str(BIN / "yamllint"), "--strict", "-c", str(REPO / ".yamllint"), path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_playbook_syntax_check(tmp_path: Path) -> None:
    from truckctl.config.loader import load_stage
    from truckctl.project import Project
    from truckctl.truck.inventory import inventory_yaml

    inventory = tmp_path / "stage-1.yml"
    inventory.write_text(inventory_yaml(load_stage(Project(REPO), "stage-1")))
    proc = _run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), "site.yml",
                cwd=REPO / "playbooks", env={"ANSIBLE_CONFIG": str(REPO / "playbooks" / "ansible.cfg")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "playbook: site.yml" in proc.stdout
