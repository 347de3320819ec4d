"""Fixtures of the portal's tests: the example race with temporary state, and a fake lab
(their helpers are in tests/unit/portal/support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.unit.portal.support import FakeLab
from truckctl.project import Project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The example race; state in a temporary directory; no webhook, no portal token."""
    monkeypatch.setenv("TRUCKCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TRUCKCTL_ALERT_WEBHOOK", raising=False)
    monkeypatch.delenv("TRUCKCTL_PORTAL_TOKEN", raising=False)
    return Project(REPO)


@pytest.fixture
def lab(project: Project, monkeypatch: pytest.MonkeyPatch) -> FakeLab:
    return FakeLab(project)
