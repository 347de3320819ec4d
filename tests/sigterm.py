"""A SIGTERM ends the test session the way Ctrl-C does, so the lab's finalizers still tear it down.

CI stops a job with SIGTERM. Python's default would kill pytest on the spot (no finalizer runs, the
lab stays up); and while a test runs truckctl in-process, truckctl's own handler turns the signal into
an interrupted *run*, which fails that one test and lets the session go on, bringing labs up again.
Here the signal raises KeyboardInterrupt (pytest's own way to stop a session), and a SIGTERM that
truckctl caught (its handler calls this one first) stops the session after that test.
Wired into every test session by tests/conftest.py.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import pytest

_received: list[int] = []


def _stop(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _interrupt_only(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def sent_by_the_test() -> Iterator[None]:
    """For a test that sends itself SIGTERM on purpose: it interrupts as usual but does not end the session."""
    previous = signal.signal(signal.SIGTERM, _interrupt_only)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def pytest_sessionstart(session: pytest.Session) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _received:
        pytest.exit(f"stopped by signal {_received[0]} during {nodeid}", returncode=pytest.ExitCode.INTERRUPTED)
