"""Safe YAML reading that remembers where every value came from (file and line)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from truckctl.errors import Problem

MAX_FILE_BYTES = 1_000_000  # a race file is a few KiB; anything this big is a mistake or hostile
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_NODES = 50_000  # counted with aliases expanded, as the model will see them

FieldPath = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML mapping plus the line of every field path in it."""

    path: Path
    display: str
    data: dict[str, Any]
    lines: dict[FieldPath, int]

    def where(self, field: FieldPath) -> str:
        """`file:line: a.b[0].c` for the deepest known prefix of `field`."""
        for cut in range(len(field), -1, -1):
            line = self.lines.get(field[:cut])
            if line is not None:
                break
        dotted = format_path(field)
        return f"{self.display}:{line}" + (f": {dotted}" if dotted else "")


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds aliases (no 'billion laughs') and nesting depth."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (line {mark.line + 1})")
        return super().compose_node(parent, index)


# Dates stay text until the model parses them, so a bad date is reported with its field path.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)  # type: ignore[type-var]


def format_path(field: FieldPath) -> str:
    """`trucks[0].nodes[1].address`; odd keys quoted so a location is always one line."""
    out = ""
    for part in field:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part[:40]!r}]"
    return out


def read_yaml(path: Path, display: str) -> YamlDoc:
    """Read one YAML mapping, or raise a list of Problems (as `YamlProblems`)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlProblems([Problem("file-unreadable", f"cannot read file: {exc.strerror}", display)]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblems(
            [Problem("file-too-large", f"file is {len(raw)} bytes, expected at most {MAX_FILE_BYTES}", display)]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblems(
            [Problem("not-utf8", f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                     display)]
        ) from None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
        node = loader.get_single_node()
        lines: dict[FieldPath, int] = {}
        if node is not None:
            _record_lines(node, (), lines, 0, [0])
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = " ".join((exc.problem or exc.context or "malformed YAML").split())
        raise YamlProblems([Problem("yaml-syntax", f"malformed YAML: {what}", f"{display}{line}")]) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as exc:
        what = " ".join(str(exc).split())[:200]  # one line, whatever the parser said
        raise YamlProblems([Problem("yaml-syntax", f"malformed YAML: {what}", display)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise YamlProblems([Problem("empty-file", "file is empty, expected a mapping of settings", display)])
    if not isinstance(data, dict):
        raise YamlProblems(
            [Problem("not-a-mapping", f"expected a mapping of settings at the top, got {type(data).__name__}",
                     f"{display}:1")]
        )
    bad_key = next((k for k in data if not isinstance(k, str)), None)
    if bad_key is not None:
        raise YamlProblems([Problem("bad-key", f"expected text keys, got {bad_key!r}", f"{display}:1")])
    return YamlDoc(path, display, data, lines)


def _record_lines(
    node: yaml.Node, here: FieldPath, lines: dict[FieldPath, int], depth: int, seen: list[int]
) -> None:
    if depth > MAX_DEPTH:
        raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels (line {node.start_mark.line + 1})")
    seen[0] += 1
    if seen[0] > MAX_NODES:
        raise yaml.YAMLError(f"more than {MAX_NODES} values once aliases are expanded")
    lines.setdefault(here, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = (*here, key.value)
                lines[child] = key.start_mark.line + 1
                _record_lines(value, child, lines, depth + 1, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*here, index), lines, depth + 1, seen)


class YamlProblems(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].line())
        self.problems = problems
