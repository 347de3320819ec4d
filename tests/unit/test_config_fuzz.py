"""Hypothesis: no input, however strange, makes the loader raise anything but TruckctlError."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import REPO
from truckctl.config.loader import load_race, load_stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["10.31.1.0/24", "10.31.1.11", "stage-1", "gateway"]))
keys = st.one_of(st.sampled_from(["race", "cloud", "alerts", "trucks", "nodes", "name", "lan", "address",
                                  "stage", "tech_zone", "trucks", "networks", "overrides", "roles", "id"]),
                 st.text(max_size=8))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=5)),
                         max_leaves=30)


def _write_and_load(root: Path, race_text: str | None, stage_text: str | None) -> None:
    if race_text is not None:
        (root / "inventory" / "race.yaml").write_text(race_text)
    if stage_text is not None:
        (root / "inventory" / "stages" / "stage-1.yaml").write_text(stage_text)
    project = Project(root)
    try:
        load_race(project)
        load_stage(project, "stage-1")
    except TruckctlError as exc:
        assert exc.exit_code == ExitCode.INVALID_CONFIG
        assert exc.problems and all("\n" not in p.line() for p in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_arbitrary_yaml_documents(tmp_path_factory, doc) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "inventory", root / "inventory")
    text = yaml.safe_dump(doc)
    _write_and_load(root, text, None)
    _write_and_load(root, None, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text(tmp_path_factory, text: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "inventory", root / "inventory")
    _write_and_load(root, text, None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_example(tmp_path_factory, data: st.DataObject) -> None:
    """Replace one value of the real example with something arbitrary."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "inventory", root / "inventory")
    race = yaml.safe_load((root / "inventory" / "race.yaml").read_text())
    node: object = race
    path: list[object] = []
    while isinstance(node, dict | list) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(list(node.keys()) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]  # type: ignore[index]
    if not path:
        return
    parent: object = race
    for key in path[:-1]:
        parent = parent[key]  # type: ignore[index]
    parent[path[-1]] = data.draw(documents)  # type: ignore[index]
    _write_and_load(root, yaml.safe_dump(race), None)
