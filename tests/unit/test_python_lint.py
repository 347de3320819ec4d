"""Lint is part of the tests: ruff and mypy over the Python code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff() -> None:
    proc = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    proc = _run(str(BIN / "mypy"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_over_the_benchmarks() -> None:
    """bench/ is scripts, not a package (run.py imports its siblings): checked as a directory of its own."""
    proc = _run(str(BIN / "mypy"), "bench")
    assert proc.returncode == 0, proc.stdout + proc.stderr
