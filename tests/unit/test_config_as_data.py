"""Every string of the configuration is data (DESIGN section 10, issue 11 item 1).

The model is walked programmatically (a new field is covered without touching this file): each string
field and each mapping key gets hostile values written as YAML escapes, and each is either refused by
`validate` with one-line problems naming file:line and the field, or kept literally in the rendered
inventory with every string marked `!unsafe`, and no key the configuration did not define.
"""

from __future__ import annotations

import copy
import re
import shutil
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from tests.helpers import REPO
from truckctl import ansible_data
from truckctl.config.loader import load_stage
from truckctl.config.model import Race, StageFile
from truckctl.config.yamlfile import FieldPath, format_path
from truckctl.errors import TruckctlError
from truckctl.project import Project
from truckctl.truck.inventory import inventory_yaml, render_inventory

STAGE = "stage-7"  # overrides two trucks' networks: the stage's network fields exist in the base

TEMPLATES = [
    "{{ lookup('pipe', 'touch /tmp/PWNED-config-as-data') }}",
    "{% set x = lookup('file', '/etc/shadow') %}x",
    "{# comment #}x",
    "{{ 7 * 7 }}",
]
# Each must be refused wherever it appears: written as YAML escapes ("\e", "\n", "\u2028", ...).
CONTROLS = [
    "a\nb", "a\nnew_key: injected", "a\rb", "a\tb", "a\x00b", "a\x1bb", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07",
    "a\x7fb", "a\x85b", "a\u2028b", "a\u2029b", "a\u202eb", "a\u2066b", "a\u200fb", "a\ufeffb", "a\u200bb",
]
HOSTILE = TEMPLATES + CONTROLS
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _unwrap(tp: Any) -> Any:
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            return tp


def string_fields(model: type[BaseModel], data: Any, path: FieldPath = ()) -> Iterator[tuple[str, FieldPath]]:
    """("value", path) for every scalar field and ("key", path) for every mapping key, at the first item of
    each list and mapping of `data` (the shipped example, which fills every part of the model)."""
    tp = _unwrap(model)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            sub = data.get(name) if isinstance(data, dict) else None
            if sub is None and isinstance(_unwrap(field.annotation), type) and \
                    issubclass(_unwrap(field.annotation), BaseModel):
                continue  # optional part absent from the example: covered where the example has it
            yield from string_fields(field.annotation, sub, (*path, name))
    elif get_origin(tp) is list:
        if data:
            yield from string_fields(get_args(tp)[0], data[0], (*path, 0))
    elif get_origin(tp) is dict:
        if data:
            key = next(iter(data))
            yield "key", (*path, key)
            yield from string_fields(get_args(tp)[1], data[key], (*path, key))
    else:  # text, and every other scalar (numbers, addresses, dates, choices): all arrive as text too
        yield "value", path


def base_documents() -> tuple[dict[str, Any], dict[str, Any]]:
    race = yaml.safe_load((REPO / "inventory" / "race.yaml").read_text())
    stage = yaml.safe_load((REPO / "inventory" / "stages" / f"{STAGE}.yaml").read_text())
    stage["overrides"] = {"uplink": {"kind": "satellite"}}
    return race, stage


RACE, STAGE_DOC = base_documents()
CASES = [("race.yaml", kind, path) for kind, path in string_fields(Race, RACE)] + \
        [(f"stages/{STAGE}.yaml", kind, path) for kind, path in string_fields(StageFile, STAGE_DOC)]


def test_the_walk_covers_the_free_text_and_the_keys() -> None:
    paths = {format_path(path) for _, _, path in CASES}
    assert {"race.name", "race.timezone", "ops_users[0].ssh_public_key", "ops_users[0].name",
            "alerts.email[0]", "roles.gateway.description", "stage.start", "stage.finish", "tech_zone.name",
            "tech_zone.trucks[0]", "trucks[0].nodes[0].name"} <= paths
    keys = {format_path(path) for _, kind, path in CASES if kind == "key"}
    assert {"secrets.pulumi-passphrase", "roles.gateway", "tech_zone.networks.truck-a", "overrides.uplink"} <= keys
    assert len(CASES) >= 50


def _set(doc: dict[str, Any], kind: str, path: FieldPath, value: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    if kind == "key":
        parent[value] = parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return doc


def _write(root: Path, race: dict[str, Any], stage: dict[str, Any]) -> Project:
    shutil.rmtree(root, ignore_errors=True)
    (root / "inventory" / "stages").mkdir(parents=True)
    for name, doc in (("race.yaml", race), (f"stages/{STAGE}.yaml", stage)):
        # PyYAML writes every control and non-ASCII character as a YAML escape: "\e", "\L", "\u202E"...
        text = yaml.dump(doc, Dumper=DUMPER, allow_unicode=False, sort_keys=False, width=10_000)
        (root / "inventory" / name).write_text(text, encoding="ascii")
    return Project(root)


def _key_paths(data: Any, path: FieldPath = ()) -> set[FieldPath]:
    if isinstance(data, dict):
        return {(*path, k) for k in data} | {p for k, v in data.items() for p in _key_paths(v, (*path, k))}
    if isinstance(data, list):
        return {p for i, v in enumerate(data) for p in _key_paths(v, (*path, i))}
    return set()


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)
    elif isinstance(data, str):
        yield data


# Free text: Jinja is text like any other there; what reaches Ansible is checked there literally.
REACHES_ANSIBLE = {"race.name", "ops_users[0].ssh_public_key"}
FREE_TEXT = {"roles.gateway.description", "stage.start", "stage.finish", "tech_zone.name"}
BASE_KEYS = _key_paths(render_inventory(load_stage(Project(REPO), STAGE)))
# Every string scalar of the rendered inventory that can hold a template: `!unsafe "..."` (keys are plain or
# double-quoted; a text YAML would read as a date, number... is just "...", see ansible_data).
_UNTAGGED_STRING = re.compile(r'(:\s+|^\s*-\s+)["\'].*\{', re.MULTILINE)


@pytest.mark.parametrize(("file", "kind", "path"), CASES, ids=[f"{f}:{format_path(p)}:{k}" for f, k, p in CASES])
def test_hostile_text_is_refused_with_one_line_or_kept_literally(tmp_path: Path, file: str, kind: str,
                                                                 path: FieldPath) -> None:
    key_text = path[-1] == "ssh_public_key"  # the free text there is the key's comment
    prefix = RACE["ops_users"][0]["ssh_public_key"] + " " if key_text else ""
    accepted = []
    for value in (prefix + text for text in HOSTILE):
        race, stage = (_set(RACE, kind, path, value), STAGE_DOC) if file == "race.yaml" else \
            (RACE, _set(STAGE_DOC, kind, path, value))
        project = _write(tmp_path / "p", race, stage)
        try:
            loaded = load_stage(project, STAGE)
        except TruckctlError as exc:
            lines = [problem.line() for problem in exc.problems]
            assert all(line.isprintable() and "\n" not in line for line in lines), lines
            field = format_path(path[:-1]) if kind == "key" else format_path(path)
            where = re.escape(f"inventory/{file}:") + r"[0-9]+: " + re.escape(field)
            assert any(re.match(where, str(problem.location)) for problem in exc.problems), (value, lines)
            continue
        assert value.removeprefix(prefix) in TEMPLATES, f"{value!r} accepted at {format_path(path)}"
        accepted.append(value.removeprefix(prefix))
        rendered = inventory_yaml(loaded)
        assert rendered.isascii() and not _UNTAGGED_STRING.search(rendered)
        inventory = render_inventory(loaded)
        assert ansible_data.load(rendered) == inventory  # one value each, nothing else
        assert _key_paths(inventory) == BASE_KEYS  # no key the configuration did not define
        if format_path(path) in REACHES_ANSIBLE:
            assert value in _strings(inventory)  # literally
    if format_path(path) in REACHES_ANSIBLE | FREE_TEXT:
        assert accepted == TEMPLATES  # free text: accepted, and data all the way


def test_reserved_user_and_group_names_are_refused(example_project: Path) -> None:
    race_file = example_project / "inventory" / "race.yaml"
    text = race_file.read_text()
    for name in ("root", "mosquitto", "_chrony", "nobody", "daemon", "sshd", "dnsmasq", "systemd-network", "sudo"):
        race_file.write_text(text.replace("- name: raceops", f"- name: {name}"))
        with pytest.raises(TruckctlError) as caught:
            load_stage(Project(example_project), "stage-1")
        (problem,) = caught.value.problems
        assert re.match(r"inventory/race\.yaml:[0-9]+: ops_users\[0\]\.name$", str(problem.location))
        assert "account or group of the nodes' base system" in problem.message, problem.line()


def test_trucks_and_roles_never_share_an_inventory_group(example_project: Path) -> None:
    race_file = example_project / "inventory" / "race.yaml"
    text = race_file.read_text()
    for old, new, where in (("  - name: truck-b\n", "  - name: compute\n", r"trucks\[1\]\.name"),
                            ("  storage:\n    description", "  trucks:\n    description", r"roles\.trucks"),
                            ("  - name: truck-a\n", "  - name: all\n", r"trucks\[0\]\.name")):
        race_file.write_text(text.replace(old, new).replace("stage-x", ""))
        with pytest.raises(TruckctlError) as caught:
            load_stage(Project(example_project), "stage-1")
        assert any(p.code == "reserved-name" and re.match(r"inventory/race\.yaml:[0-9]+: " + where + "$",
                                                          str(p.location)) for p in caught.value.problems), \
            [p.line() for p in caught.value.problems]


def test_human_output_never_passes_markup_or_escape_sequences(example_project: Path) -> None:
    """Accepted text that looks like rich markup prints as written (it raised MarkupError before); control
    characters from any source (a node's diff, a journal) are shown as escapes, in tables too."""
    import io

    from tests.unit.test_cli_config import invoke
    from truckctl.cli.output import Env
    from truckctl.cli.render import table

    race_file = example_project / "inventory" / "race.yaml"
    race_file.write_text(race_file.read_text().replace("  name: Giro di Finzione 2027", '  name: "Giro [/] [bold]x"'))
    code, out = invoke("-C", str(example_project), "validate")
    assert code == 0 and "Giro [/] [bold]x: 21 stage(s) valid" in out

    stream = io.StringIO()
    env = Env(stdout=stream, stderr=stream, no_color=True)
    table(env, "t", ["cell"], [["a\x1b[2Jb\u202ec\x07"]])
    env.console().print("d\x1b]0;title\x07e", markup=False)
    from rich.text import Text

    env.console().print(Text("f\x1b]0;pwn\x07\x1b[2J\x9b2Jg"))  # a Text does not pass through render_str
    shown = stream.getvalue()
    assert "\x1b" not in shown and "\u202e" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "f\\x1b]0;pwn\\x1b[2J\\x9b2Jg" in shown  # shown as escapes (rich itself drops the BEL)
    assert "a\\x1b[2Jb\\u202ec\\x07" in shown and "d\\x1b]0;title\\x07e" in shown


# Text that plain YAML 1.1 reads as something else; Ansible's `!unsafe` resolves it so (issue: ops user
# "null" reached the `user` module as None, a race named "No" as False, "=" broke the load).
NOT_PLAIN_STRINGS = ["on", "yes", "No", "off", "true", "False", "y", "null", "Null", "~", "", "0123", "0x1f", "0o17",
                     "12:30", "1_000", "-1", "+1", "2027-05-09", "2027-05-09 10:30:00", "1e3", "1.5e+3", "-.5", ".inf",
                     "-.Inf", ".nan", "=", "<<"]


def test_ansible_reads_every_value_with_its_type_and_no_template(tmp_path: Path, example_project: Path) -> None:
    """Loaded by Ansible's own DataLoader (trusting the file, as for an inventory or vars file), every value
    `dump` wrote keeps its type and value, and every string that holds a template stays untrusted."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import is_trusted_as_template

    strings = NOT_PLAIN_STRINGS + TEMPLATES + ["{x}", "a: b", "#c", "plain", "10.31.1.1"]
    data: dict[str, Any] = {"strings": strings, "each": {f"k{i}": text for i, text in enumerate(strings)},
                            "ints": [0, 83, 1000, -1], "bools": [True, False], "none": None, "float": 1.5}
    race_file = example_project / "inventory" / "race.yaml"
    race_file.write_text(race_file.read_text().replace("  name: Giro di Finzione 2027", '  name: "No"')
                         .replace("- name: raceops", "- name: \"null\"\n    ssh_public_key: "
                                  + RACE["ops_users"][0]["ssh_public_key"] + "\n  - name: \"yes\""))
    stage = load_stage(Project(example_project), "stage-1")
    assert stage.race.name == "No" and [u.name for u in stage.ops_users][:2] == ["null", "yes"]

    for name, expected in (("vars.yml", data), ("inventory.yml", render_inventory(stage))):
        path = tmp_path / name
        path.write_text(ansible_data.dump(expected), encoding="ascii")
        loaded = DataLoader().load_from_file(str(path), trusted_as_template=True)
        assert loaded == expected
        assert _typed(loaded) == _typed(expected)  # True is not "on", 83 is not "0123", None is not "null"
        for text in _strings(loaded):
            assert not ("{" in text and is_trusted_as_template(text)), text


def _typed(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _typed(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_typed(value) for value in data]
    kind = next(t for t in (bool, int, float, str, type(None)) if isinstance(data, t))  # Ansible's own subclasses
    return kind.__name__, data
