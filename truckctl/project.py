"""Where the project (inventory/, stacks/, playbooks/) and its state directory are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from truckctl.errors import ExitCode, TruckctlError

PROJECT_ENV = "TRUCKCTL_PROJECT_DIR"
STATE_ENV = "TRUCKCTL_STATE_DIR"
RACE_FILE = Path("inventory") / "race.yaml"


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def inventory_dir(self) -> Path:
        return self.root / "inventory"

    @property
    def race_file(self) -> Path:
        return self.root / RACE_FILE

    @property
    def stages_dir(self) -> Path:
        return self.inventory_dir / "stages"

    @property
    def stacks_dir(self) -> Path:
        return self.root / "stacks"

    @property
    def playbooks_dir(self) -> Path:
        return self.root / "playbooks"

    @property
    def state_dir(self) -> Path:
        """Runs, locks and Pulumi state; `.truckctl/` in the project unless TRUCKCTL_STATE_DIR says."""
        override = os.environ.get(STATE_ENV)
        return Path(override).resolve() if override else self.root / ".truckctl"

    def display(self, path: Path) -> str:
        """A path as users should see it: relative to the project when inside it."""
        try:
            text = str(path.relative_to(self.root))
        except ValueError:
            text = str(path)
        # A hostile file name (newline, escape sequence) must not break a one-line error.
        return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def find_project(explicit: Path | None = None, cwd: Path | None = None) -> Project:
    """--project-dir, then TRUCKCTL_PROJECT_DIR, then the current directory and its parents."""
    chosen = explicit or (Path(os.environ[PROJECT_ENV]) if os.environ.get(PROJECT_ENV) else None)
    if chosen is not None:
        root = chosen.expanduser().resolve()
        if not (root / RACE_FILE).is_file():
            raise TruckctlError.single(
                "no-configuration",
                f"no race file at {root / RACE_FILE}: expected a truckctl project with inventory/race.yaml",
                str(root / "inventory"),
                ExitCode.INVALID_CONFIG,
            )
        return Project(root)
    start = (cwd or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if (candidate / RACE_FILE).is_file():
            return Project(candidate)
    raise TruckctlError.single(
        "no-configuration",
        f"no truckctl project found: looked for {RACE_FILE} in {start} and its parents "
        f"(use --project-dir or {PROJECT_ENV})",
        str(start),
        ExitCode.INVALID_CONFIG,
    )
