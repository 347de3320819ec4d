"""Every malformed configuration in the corpus fails with its own clear, one-line error."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from truckctl.config.loader import load_stages
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project

CORPUS = yaml.safe_load((Path(__file__).parent.parent / "corpus" / "bad_config.yaml").read_text())


def apply_case(root: Path, case: dict[str, Any]) -> None:
    inventory = root / "inventory"
    for edit in case.get("edits", []):
        path = inventory / edit["file"]
        text = path.read_text()
        assert edit["old"] in text, f"corpus case {case['name']}: {edit['old']!r} not in {edit['file']}"
        path.write_text(text.replace(edit["old"], edit["new"], 1))
    if "write" in case:
        path = inventory / case["write"]["file"]
        if "bytes" in case["write"]:
            path.write_bytes(case["write"]["bytes"].encode("latin-1"))
        else:
            path.write_text(case["write"]["text"])
    for name in case.get("remove", []):
        target = inventory / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30
    assert len({c["name"] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_bad_configuration_is_refused_clearly(example_project: Path, case: dict[str, Any]) -> None:
    apply_case(example_project, case)
    before = {p: p.read_bytes() for p in example_project.rglob("*") if p.is_file()}
    with pytest.raises(TruckctlError) as caught:
        load_stages(Project(example_project))
    error = caught.value
    assert error.exit_code == ExitCode.INVALID_CONFIG
    first = error.problems[0]
    expect = case["expect"]
    assert first.code == expect["code"], str(error)
    assert expect["location"] in (first.location or ""), str(error)
    assert expect["message"] in first.message, str(error)
    for problem in error.problems:
        assert "\n" not in problem.line() and "Traceback" not in problem.line()
    # Bad input changes nothing: no file written, no state directory created.
    after = {p: p.read_bytes() for p in example_project.rglob("*") if p.is_file()}
    assert after == before
    assert not (example_project / ".truckctl").exists()
