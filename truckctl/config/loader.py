"""Load the race file and the stage files into a validated `Stage` (or raise every problem found)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from truckctl.config.model import Defaults, NetworkOverride, Race, Stage, StageFile, Truck
from truckctl.config.names import STAGE_NAME, inventory_group_problems
from truckctl.config.rules import network_rules, race_rules, suggest
from truckctl.config.schema_errors import schema_problems
from truckctl.config.yamlfile import FieldPath, YamlDoc, YamlProblems, read_yaml
from truckctl.errors import Problem, TruckctlError, config_error
from truckctl.jsondoc import JsonObject
from truckctl.project import Project


@dataclass(frozen=True)
class LoadedRace:
    race: Race
    doc: YamlDoc


def check_stage_name(name: str) -> str:
    """Stage names reach file paths, lock names and node commands: allow only `stage-N`."""
    if not STAGE_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise config_error([Problem("bad-stage-name", f"expected a stage name like stage-1, got {shown!r}",
                                    "STAGE")])
    return name


def load_race(project: Project) -> LoadedRace:
    doc = _read(project, project.race_file)
    try:
        race = Race.model_validate(doc.data)
    except ValidationError as exc:
        raise config_error(schema_problems(exc, Race, doc.where)) from None
    problems = race_rules(race, doc.where) + inventory_group_problems(race, doc.where)
    if problems:
        raise config_error(problems)
    return LoadedRace(race, doc)


def stage_names(project: Project) -> list[str]:
    """The stages defined under inventory/stages/, in race order."""
    if not project.stages_dir.is_dir():
        raise config_error([Problem("no-stages", "no stages directory, expected one YAML file per stage",
                                    project.display(project.stages_dir))])
    names = [p.stem for p in project.stages_dir.glob("*.yaml")]
    if not names:
        raise config_error([Problem("no-stages", "no stage files, expected files like stage-1.yaml",
                                    project.display(project.stages_dir))])
    bad = sorted(n for n in names if not STAGE_NAME.fullmatch(n))
    if bad:
        raise config_error([Problem("bad-stage-file", "expected a file name like stage-1.yaml",
                                    project.display(project.stages_dir / f"{n}.yaml")) for n in bad])
    return sorted(names, key=lambda n: int(n.split("-")[1]))


def load_stage(project: Project, name: str, loaded: LoadedRace | None = None) -> Stage:
    check_stage_name(name)
    loaded = loaded or load_race(project)
    path = project.stages_dir / f"{name}.yaml"
    if not _present(path):
        known = stage_names(project) if project.stages_dir.is_dir() else []
        raise config_error([Problem("unknown-stage", f"no stage {name!r}" + (suggest(name, known) if known else ""),
                                    project.display(path))])
    doc = _read(project, path)
    try:
        stage_file = StageFile.model_validate(doc.data)
    except ValidationError as exc:
        raise config_error(schema_problems(exc, StageFile, doc.where)) from None
    return _resolve(name, loaded, stage_file, doc)


def load_stages(project: Project, names: list[str] | None = None) -> list[Stage]:
    """Load several stages, reporting every problem of every file (each once)."""
    loaded = load_race(project)
    problems: list[Problem] = []
    stages: list[Stage] = []
    for name in names if names is not None else stage_names(project):
        try:
            stages.append(load_stage(project, name, loaded))
        except TruckctlError as exc:
            problems += exc.problems
    problems += _race_order(stages, project) if names is None else []
    if problems:
        raise config_error(list(dict.fromkeys(problems)))
    return stages


def _present(path: Path) -> bool:
    """There is something at this name (a dangling link or a FIFO too: reading it says what is wrong)."""
    return path.exists() or path.is_symlink()


def _read(project: Project, path: Path) -> YamlDoc:
    """Read a configuration file; never one outside inventory/, even through a link."""
    if not _present(path):
        raise config_error([Problem("missing-file", "file not found", project.display(path))])
    try:
        return read_yaml(path, project.display(path), inside=project.inventory_dir)
    except YamlProblems as exc:
        raise config_error(exc.problems) from None


def _resolve(name: str, loaded: LoadedRace, sf: StageFile, doc: YamlDoc) -> Stage:
    race, race_doc = loaded.race, loaded.doc
    problems: list[Problem] = []
    number = int(name.split("-")[1])
    if sf.stage.number != number:
        problems.append(Problem("stage-number", f"expected {number} to match the file name {name}.yaml, "
                                f"got {sf.stage.number}", doc.where(("stage", "number"))))
    by_name = {t.name: (i, t) for i, t in enumerate(race.trucks)}
    trucks: list[Truck] = []
    overridden: set[str] = set()
    for ti, truck_name in enumerate(sf.tech_zone.trucks):
        if truck_name not in by_name:
            problems.append(Problem("unknown-truck", f"truck {truck_name!r} is not defined in "
                                    f"{race_doc.display}" + suggest(truck_name, by_name),
                                    doc.where(("tech_zone", "trucks", ti))))
        elif truck_name in sf.tech_zone.trucks[:ti]:
            problems.append(Problem("duplicate-name", f"truck {truck_name!r} is listed twice",
                                    doc.where(("tech_zone", "trucks", ti))))
        else:
            truck = by_name[truck_name][1]
            override = sf.tech_zone.networks.get(truck_name)
            if override is not None:
                overridden.add(truck_name)
                truck, bad = _apply_network(truck, override, lambda p, t=truck_name: doc.where(
                    ("tech_zone", "networks", t, *p)))
                problems += bad
            trucks.append(truck)
    for truck_name in sf.tech_zone.networks:
        if truck_name not in sf.tech_zone.trucks:
            problems.append(Problem("unknown-truck", f"network choice for truck {truck_name!r}, which is not "
                                    f"in this stage's tech_zone.trucks",
                                    doc.where(("tech_zone", "networks", truck_name))))
    defaults, bad = _merge_defaults(race_doc, doc, sf.overrides)
    problems += bad

    def where(truck_name: str, path: FieldPath) -> str:
        # Point at the stage file when it overrides that part of the truck's network.
        override = sf.tech_zone.networks.get(truck_name)
        if truck_name in overridden and override is not None:
            if path[0] == "lan" and override.lan is not None:
                return doc.where(("tech_zone", "networks", truck_name, "lan"))
            if path[0] == "vlans" and override.vlans is not None:
                return doc.where(("tech_zone", "networks", truck_name, *path))
            if path[0] == "nodes":
                node = next(t for t in trucks if t.name == truck_name).nodes[int(path[1])]
                if node.name in override.addresses:
                    return doc.where(("tech_zone", "networks", truck_name, "addresses", node.name))
        return race_doc.where(("trucks", by_name[truck_name][0], *path))

    problems += network_rules(race, trucks, where)
    if problems or defaults is None:
        raise config_error(problems)
    return Stage(
        name=name, info=sf.stage, tech_zone=sf.tech_zone.name, race=race.race, cloud=race.cloud,
        alerts=race.alerts, secrets=race.secrets, ops_users=race.ops_users, defaults=defaults,
        roles=race.roles, trucks=trucks, lab=race.lab, management=race.management,
    )


def _apply_network(truck: Truck, override: NetworkOverride, where: Any) -> tuple[Truck, list[Problem]]:
    problems = []
    node_names = {n.name for n in truck.nodes}
    for node_name in override.addresses:
        if node_name not in node_names:
            problems.append(Problem("unknown-node", f"node {node_name!r} is not in truck {truck.name!r}"
                                    + suggest(node_name, node_names), where(("addresses", node_name))))
    nodes = [n.model_copy(update={"address": override.addresses[n.name]}) if n.name in override.addresses else n
             for n in truck.nodes]
    update: JsonObject = {"nodes": nodes}
    if override.lan is not None:
        update["lan"] = override.lan
    if override.vlans is not None:
        update["vlans"] = override.vlans
    return truck.model_copy(update=update), problems


def _merge_defaults(race_doc: YamlDoc, doc: YamlDoc, overrides: JsonObject) -> tuple[Defaults | None,
                                                                                      list[Problem]]:
    merged = _deep_merge(race_doc.data.get("defaults") or {}, overrides)

    def locate(path: FieldPath) -> str:
        inner = path[1:]
        if _has_path(overrides, inner):
            return doc.where(("overrides", *inner))
        return race_doc.where(path)

    try:
        return Defaults.model_validate(merged), []
    except ValidationError as exc:
        return None, schema_problems(exc, Defaults, locate, ("defaults",))


def _deep_merge(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for key, value in top.items():
            out[key] = _deep_merge(base.get(key), value) if key in base else value
        return out
    return top


def _has_path(data: Any, path: FieldPath) -> bool:
    for part in path:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_dict or in_list):
            return False
        data = data[part]
    return True


def _race_order(stages: list[Stage], project: Project) -> list[Problem]:
    problems = []
    for before, after in itertools.pairwise(stages):
        if after.info.date < before.info.date:
            problems.append(Problem("stage-order", f"date {after.info.date} is before {before.name}'s "
                                    f"{before.info.date}", project.display(project.stages_dir / f"{after.name}.yaml")
                                    + ":1: stage.date"))
    return problems
