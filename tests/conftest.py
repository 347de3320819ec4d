"""Shared fixtures: the repository, and throwaway copies of the example project; a SIGTERM stops the
session cleanly (tests/sigterm.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.sigterm import pytest_runtest_logfinish, pytest_sessionstart  # noqa: F401  (hooks)
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.project import Project


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A copy of the shipped example configuration, safe to break."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "inventory", root / "inventory")
    return root


@pytest.fixture(scope="session")
def stage() -> Stage:
    """stage-1 of the shipped example race."""
    return load_stage(Project(REPO), "stage-1")
