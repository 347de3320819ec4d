"""Fixtures for the truck tier's pure tests (their helpers are in tests/helpers.py)."""

from __future__ import annotations

import pytest

from tests.helpers import make_cloud
from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage


@pytest.fixture
def cloud(stage: Stage) -> CloudOutputs:
    return make_cloud(stage)
