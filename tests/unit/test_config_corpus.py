"""Every malformed configuration in the corpus fails fast with its own clear, one-line error, and
changes nothing: no file written, none read outside inventory/, no state directory created."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from truckctl.config.loader import load_stage, load_stages
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project

CORPUS = yaml.safe_load((Path(__file__).parent.parent / "corpus" / "bad_config.yaml").read_text())
# Generous, and in CPU time: the machine may be shared, so wall-clock time says little; the
# slowest case takes about a third of this.
REFUSED_WITHIN_CPU_S = 2.0


def _content(spec: dict[str, Any], inventory: Path) -> bytes:
    """A `write`'s bytes: `bytes` (latin-1 code points), or text (`from` an existing file, then `text`,
    `repeat` segments and `tail`) encoded with `encoding` (UTF-8 by default)."""
    if "bytes" in spec:
        return str(spec["bytes"]).encode("latin-1")
    text = (inventory / spec["from"]).read_text() if "from" in spec else ""
    text += spec.get("text", "")
    text += "".join(part["text"] * part["times"] for part in spec.get("repeat", []))
    text += spec.get("tail", "")
    return text.encode(spec.get("encoding", "utf-8"))


def _replace(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def apply_case(root: Path, case: dict[str, Any], outside: Path) -> None:
    """Break a copy of the example as the case says. `outside` is a directory beside the project."""
    inventory = root / "inventory"
    for item in case.get("outside", []):  # files a link will point at, outside the project
        source, target = inventory / item["copy_of"], outside / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)
    for edit in case.get("edits", []):
        path = inventory / edit["file"]
        text = path.read_text()
        assert edit["old"] in text, f"corpus case {case['name']}: {edit['old']!r} not in {edit['file']}"
        pad = edit.get("pad", {"text": "", "times": 0})
        path.write_text(text.replace(edit["old"], edit["new"] + pad["text"] * pad["times"] + edit.get("tail", ""), 1))
    writes = case.get("write", [])
    for spec in writes if isinstance(writes, list) else [writes]:
        data = _content(spec, inventory)
        path = inventory / spec["file"]
        _replace(path) if spec.get("fresh") else None
        path.write_bytes(data)
    generate = case.get("generate")
    if generate:
        for n in range(generate["first"], generate["last"] + 1):
            (inventory / generate["pattern"].format(n=n)).write_text(generate["text"].format(n=n))
    for item in case.get("sparse", []):
        os.truncate(inventory / item["file"], item["size"])
    for item in case.get("symlink", []):
        path = inventory / item["file"]
        _replace(path)
        path.symlink_to(item["to"].replace("{outside}", str(outside)))
    for name in case.get("fifo", []):
        _replace(inventory / name)
        os.mkfifo(inventory / name)
    for name in case.get("mkdir", []):
        _replace(inventory / name)
        (inventory / name).mkdir()
    for name in case.get("remove", []):
        _replace(inventory / name)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under root, without following links or opening anything (a FIFO would block,
    a sparse 10 GB file would take minutes): kind, size, modification time, link target."""
    entries: dict[str, tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            info = path.lstat()
            link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
            entries[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns, link)
    return entries


@pytest.fixture
def opened(outside: Path) -> Iterator[list[str]]:
    """Every path Python opens while the test runs (audit events), to prove nothing outside is read."""
    paths: list[str] = []
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active[0] and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            paths.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)  # audit hooks cannot be removed: this one goes quiet after the test
    yield paths
    active[0] = False


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    place = tmp_path / "outside"
    place.mkdir()
    return place


def test_corpus_is_large_enough_and_covers_hostile_input() -> None:
    assert len(CORPUS) >= 60
    assert len({c["name"] for c in CORPUS}) == len(CORPUS)
    codes = {c["expect"]["code"] for c in CORPUS}
    assert {"file-too-large", "not-utf8", "outside-inventory", "not-a-file", "duplicate-key",
            "yaml-syntax"} <= codes


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_bad_configuration_is_refused_clearly(example_project: Path, outside: Path, opened: list[str],
                                              case: dict[str, Any]) -> None:
    apply_case(example_project, case, outside)
    before, outside_before = snapshot(example_project), snapshot(outside)
    opened.clear()
    started = time.process_time()
    with pytest.raises(TruckctlError) as caught:
        load_stages(Project(example_project))
    took = time.process_time() - started
    error = caught.value
    assert error.exit_code == ExitCode.INVALID_CONFIG
    first = error.problems[0]
    expect = case["expect"]
    assert first.code == expect["code"], str(error)
    assert expect["location"] in (first.location or ""), str(error)
    assert expect["message"] in first.message, str(error)
    for problem in error.problems:
        line = problem.line()
        assert "\n" not in line and "\r" not in line and "\x1b" not in line and "Traceback" not in line
        assert len(line) < 400, f"an error line of {len(line)} characters"
    assert took < REFUSED_WITHIN_CPU_S, f"refused after {took:.1f} s of CPU time"
    # Bad input changes nothing: no file written, no state directory created...
    assert snapshot(example_project) == before
    assert snapshot(outside) == outside_before
    assert not (example_project / ".truckctl").exists()
    # ...and nothing outside inventory/ is even opened (links are resolved before anything is opened).
    inventory = Path(os.path.realpath(example_project / "inventory"))
    real = [Path(os.path.realpath(p)) for p in opened]
    foreign = [p for p in real if p.is_relative_to(os.path.realpath(outside))
               or str(p) in ("/etc/passwd", "/etc/hostname", "/dev/zero")]
    assert foreign == []
    config_files = [p for p in real if p.name.endswith(".yaml")]
    assert all(p.is_relative_to(inventory) for p in config_files), config_files


@pytest.mark.parametrize("swap", ["file", "directory"])
def test_a_link_swapped_between_the_check_and_the_open_is_refused(example_project: Path, outside: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, swap: str) -> None:
    """The race window of a symlinked file: the path resolved inside inventory/ when it was checked,
    then the attacker swaps the file (or its directory) for a link to the outside before the open.
    A swapped file is not opened (O_NOFOLLOW); through a swapped directory, the opened file itself
    is checked (/proc/self/fd) and refused before anything is read."""
    project = Project(example_project)
    (outside / "stages").mkdir()
    (outside / "stages" / "stage-2.yaml").write_text("stage: {number: 2}\n")
    checked = project.stages_dir / "stage-2.yaml"
    real_realpath = os.path.realpath
    swapped: list[bool] = []

    def realpath_then_swap(path: Any, *args: Any, **kwargs: Any) -> str:
        resolved = real_realpath(path, *args, **kwargs)
        if os.fspath(path) == str(checked) and not swapped:  # the attacker wins the race right after the check
            moved, target = (checked, outside / "stages" / "stage-2.yaml") if swap == "file" else (
                project.stages_dir, outside / "stages")
            os.replace(moved, moved.with_name(moved.name + ".away"))
            os.symlink(target, moved)
            swapped.append(True)
        return resolved

    monkeypatch.setattr(os.path, "realpath", realpath_then_swap)
    with pytest.raises(TruckctlError) as caught:
        load_stage(project, "stage-2")
    assert swapped, "the swap did not happen"
    problem = caught.value.problems[0]
    expected = {"file": "file-unreadable", "directory": "outside-inventory"}[swap]
    assert problem.code == expected, problem.line()
    assert (problem.location or "").startswith("inventory/stages/stage-2.yaml")


def test_links_inside_inventory_are_followed(example_project: Path) -> None:
    """Only links that leave inventory/ are refused: a stage file may be a link to another one there."""
    stages = example_project / "inventory" / "stages"
    (stages / "shared").mkdir()
    (stages / "stage-21.yaml").rename(stages / "shared" / "palermo.yaml")
    (stages / "stage-21.yaml").symlink_to(Path("shared") / "palermo.yaml")
    assert load_stage(Project(example_project), "stage-21").info.start == "Palermo"


def test_a_utf8_byte_order_mark_is_accepted(example_project: Path) -> None:
    path = example_project / "inventory" / "race.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_stage(Project(example_project), "stage-1").race.id == "gdf27"
