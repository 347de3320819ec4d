"""The lifecycle's pure tests run on the example race, with state in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.unit.lifecycle.fakes import GatewayDirs
from truckctl.lifecycle import teamlock
from truckctl.project import Project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The example race; its state directory is temporary and no webhook is configured."""
    monkeypatch.setenv("TRUCKCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TRUCKCTL_ALERT_WEBHOOK", raising=False)
    return Project(REPO)


@pytest.fixture(autouse=True)
def cloud_side_sees_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race is not live unless a test says so: the (absent) cloud side has seen no telemetry."""
    from truckctl.lifecycle import racelive

    monkeypatch.setattr(racelive, "observe", lambda stage, target, cloud: racelive.Seen(
        dict.fromkeys((t.name for t in stage.trucks), None)))


@pytest.fixture(autouse=True)
def gateway_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GatewayDirs:
    """Every run's team lock and shared history go to the real node script on directories here."""
    dirs = GatewayDirs(tmp_path / "gateways")
    monkeypatch.setattr(teamlock, "transport", lambda target, stage: dirs)
    return dirs
