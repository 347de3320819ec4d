"""docs/SECURITY.md maps every promise to a test: each test it names must exist (a renamed or removed
test would otherwise leave a promise that nothing checks)."""

from __future__ import annotations

import re

from tests.helpers import REPO

REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?(?:\[[^\]`]*\])?`")


def named_tests(text: str) -> list[tuple[str, str | None]]:
    """(file, test name or None) for every backticked reference; `::name` continues the last file."""
    found: list[tuple[str, str | None]] = []
    last_file: str | None = None
    for match in REFERENCE.finditer(text):
        path, name = match.groups()
        if path:
            last_file = path
            found.append((path, name))
        elif name and last_file:
            found.append((last_file, name))
    return found


def test_every_test_named_in_security_md_exists() -> None:
    references = named_tests((REPO / "docs" / "SECURITY.md").read_text())
    assert len(references) > 40
    missing = []
    for path, name in references:
        file = REPO / path
        if not file.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", file.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, missing
