from __future__ import annotations

import pytest

from tests.helpers import REPO
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.project import Project


@pytest.fixture(scope="session")
def example_stage() -> Stage:
    return load_stage(Project(REPO), "stage-1")
