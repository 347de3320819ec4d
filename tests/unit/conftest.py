"""Unit tests never build a lab: one that would (a hostile name taken for a real stage, a command that
reaches the lab before checking its input) is stopped before anything is made on the host and fails,
naming itself, even when the CLI turned the refusal into an exit code. The lab's real runs are in
tests/lab."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_lab_from_unit_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from truckctl.lab import control

    reached: list[str] = []

    def refuse(plan: Any, *args: Any, **kwargs: Any) -> None:
        reached.append(getattr(plan, "stage", "?"))
        raise AssertionError("a unit test would build a lab on this host")

    monkeypatch.setattr(control, "check_host_routes", refuse)
    yield
    assert not reached, f"this unit test reached the lab's building (stages {reached}): unit tests never build a lab"
