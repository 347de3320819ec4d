"""A SIGTERM to a test session stops it after running the session's finalizers (the lab's teardown),
whether it arrives while a test runs or while truckctl's run handler holds the signal."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import sigterm
from tests.helpers import REPO
from truckctl.truck import runner

SESSION = '''
import os, signal, time
from pathlib import Path
import pytest
from truckctl.truck import runner

OUT = Path({out!r})

@pytest.fixture(scope="session")
def lab():
    yield
    (OUT / "torn-down").write_text("yes")

def test_stopped(lab):
    {body}

def test_never_reached(lab):
    (OUT / "second-test").write_text("ran")
'''
DIRECT = "os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)"
# What an in-process `truckctl up` does: its handler turns the signal into an interrupted run, caught.
IN_A_RUN = ("with runner._stop_signals_interrupt():\n"
            "        try:\n"
            "            os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)\n"
            "        except KeyboardInterrupt:\n"
            "            pass")


@pytest.mark.parametrize("body", [DIRECT, IN_A_RUN], ids=["during-a-test", "during-a-truckctl-run"])
def test_sigterm_stops_the_session_after_its_finalizers(tmp_path: Path, body: str) -> None:
    (tmp_path / "test_session.py").write_text(SESSION.format(out=str(tmp_path), body=body))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.sigterm", "-p", "no:cacheprovider",
                           "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=25)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "torn-down").read_text() == "yes"
    assert not (tmp_path / "second-test").exists()


def test_truckctl_run_handler_gives_the_signal_back_afterwards() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with runner._stop_signals_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_suites_own_session_stops_on_sigterm() -> None:
    assert signal.getsignal(signal.SIGTERM) is sigterm._stop  # tests/conftest.py wired the hooks in
