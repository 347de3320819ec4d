"""Where the lab keeps its files in the project's state directory (<state_dir>/lab)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from truckctl.lab.state import lab_dir


@dataclass(frozen=True)
class LabPaths:
    state_dir: Path

    @property
    def root(self) -> Path:
        return lab_dir(self.state_dir)

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def acng(self) -> Path:
        return self.root / "acng"

    def host_key(self, node: str) -> Path:
        return self.root / "hostkeys" / node / "ssh_host_ed25519_key"
