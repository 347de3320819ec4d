"""Where the Ansible executables are: the venv's bin next to this interpreter."""

from __future__ import annotations

import sys
from pathlib import Path


def ansible_bin() -> Path:
    return Path(sys.executable).parent
