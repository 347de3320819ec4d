"""Which project brought up each lab on this host, so a clash can name the command that clears it.

One file per lab id under /run/truckctl/labs holding the project directory. `up` records the file
in the lab's state (as a runtime file), so `down` removes it with everything else.
"""

from __future__ import annotations

from pathlib import Path

REGISTRY_DIR = Path("/run/truckctl/labs")


def entry(lab_id: str, registry: Path = REGISTRY_DIR) -> Path:
    return registry / lab_id


def register(lab_id: str, project_dir: Path, registry: Path = REGISTRY_DIR) -> None:
    registry.mkdir(parents=True, exist_ok=True)
    entry(lab_id, registry).write_text(f"{project_dir.resolve()}\n")


def other_labs(own_id: str, registry: Path = REGISTRY_DIR) -> dict[str, Path]:
    """Lab id -> project directory of every registered lab but ours."""
    labs: dict[str, Path] = {}
    try:
        files = sorted(registry.iterdir())
    except OSError:
        return labs
    for item in files:
        if item.name == own_id:
            continue
        try:
            labs[item.name] = Path(item.read_text().strip())
        except OSError:
            continue
    return labs
