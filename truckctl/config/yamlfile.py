"""Safe YAML reading that remembers where every value came from (file and line).

Hostile input is refused before it costs anything: a file is opened only where it really is
(links followed, and refused when they lead outside the directory the caller allows), only if it
is a regular file (a FIFO or a device would block or never end), and read only up to the size
limit; the text must be UTF-8; nesting, aliases and the number of values are bounded while the
document is composed, before anything is built from it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from truckctl.errors import Problem
from truckctl.jsondoc import JsonObject

MAX_FILE_BYTES = 1_000_000  # a race file is a few KiB; anything this big is a mistake or hostile
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_NODES = 10_000  # values, counted with aliases expanded as the model will see them (16 trucks
# of 64 nodes, the model's maximum, are about 5,000)
MAX_COMPOSED = 2 * MAX_NODES  # keys and values as written, bounded while composing
_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"), (b"\xfe\xff", "UTF-16"),
         (b"\xff\xfe", "UTF-16"))
_UTF8_BOM = b"\xef\xbb\xbf"

FieldPath = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")  # fullmatch


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML mapping plus the line of every field path in it."""

    path: Path
    display: str
    data: JsonObject
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
    """SafeLoader that bounds aliases (no 'billion laughs'), nesting depth and size while composing:
    a hostile document is refused before it is built (and before Python's recursion limit)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        line = self.peek_event().start_mark.line + 1
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (line {line})")
        self._composed += 1
        if self._composed > MAX_COMPOSED:
            raise yaml.YAMLError(f"more than {MAX_COMPOSED} keys and values (line {line})")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels (line {line})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Dates stay text until the model parses them, so a bad date is reported with its field path.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)  # type: ignore[type-var]


def format_path(field: FieldPath) -> str:
    """`trucks[0].nodes[1].address`; odd keys quoted so a location is always one line."""
    out = ""
    for part in field:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part[:40]!r}]"
    return out


def _problem(code: str, message: str, display: str) -> YamlProblems:
    return YamlProblems([Problem(code, message, display)])


def _printable(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


def read_bounded(path: Path, display: str, inside: Path | None = None) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES, opened where it really is.

    With `inside`, a path that resolves (through any link) outside that directory is refused without
    being opened; the opened file is checked again through /proc, so a link swapped between the
    check and the open is refused too.
    """
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(inside)) if inside is not None else None
    if root is not None and not real.is_relative_to(root):
        raise _problem("outside-inventory", f"resolves to {_printable(real)}, outside {_printable(root)}: "
                       "configuration files must be inside it (nothing was read)", display)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        reason = ("a link that does not resolve (a link loop, or a link put in its place while it was being "
                  "opened)" if exc.errno == errno.ELOOP else exc.strerror)
        raise _problem("file-unreadable", f"cannot read file: {reason}", display) from None
    try:
        opened = _opened_path(fd)
        if root is not None and opened is not None and not opened.is_relative_to(root):
            raise _problem("outside-inventory", f"changed while being opened and now resolves to "
                           f"{_printable(opened)}, outside {_printable(root)} (nothing was read)", display)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "special file")
            raise _problem("not-a-file", f"expected a regular file, found a {kind}", display)
        if info.st_size > MAX_FILE_BYTES:
            raise _problem("file-too-large", f"file is {info.st_size} bytes, expected at most {MAX_FILE_BYTES}",
                           display)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:  # the size from fstat can lie (/proc files say 0)
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _problem("file-unreadable", f"cannot read file: {exc.strerror}", display) from None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _problem("file-too-large", f"file is more than {MAX_FILE_BYTES} bytes", display)
    return b"".join(chunks)


def _opened_path(fd: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None  # no /proc: the check before the open stands alone


def decode_utf8(raw: bytes, display: str) -> str:
    """UTF-8 text (a UTF-8 byte-order mark is dropped); anything else refused, saying what it looks like."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            raise _problem("not-utf8", f"expected UTF-8 text, found a {encoding} byte-order mark: save the file "
                           "as UTF-8", display)
    nul = raw.find(b"\0")
    if nul >= 0:
        raise _problem("not-utf8", f"expected UTF-8 text, found a NUL byte at offset {nul} (UTF-16/32 text or "
                       "binary data?)", display)
    try:
        return raw.removeprefix(_UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem("not-utf8", f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x} at offset "
                       f"{exc.start}", display) from None


def read_yaml(path: Path, display: str, inside: Path | None = None) -> YamlDoc:
    """Read one YAML mapping, or raise a list of Problems (as `YamlProblems`).

    `inside`: refuse a file that is, through links, outside this directory (see `read_bounded`).
    """
    text = decode_utf8(read_bounded(path, display, inside), display)
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
        node = loader.get_single_node()
        lines: dict[FieldPath, int] = {}
        if node is not None:
            _record_lines(node, (), lines, 0, [0])
        data = loader.construct_document(node) if node is not None else None
    except _DuplicateKey as exc:
        raise YamlProblems([Problem("duplicate-key", f"key {exc.key!r} is given twice (first on line {exc.first}): "
                                    "the second would silently replace the first", exc.where(display))]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = exc.problem or exc.context or "malformed YAML"
        if exc.context and what.startswith("but "):  # "expected a single document..., but found another"
            what = f"{exc.context}, {what}"
        what = " ".join(what.split())
        raise YamlProblems([Problem("yaml-syntax", f"malformed YAML: {what}", f"{display}{line}")]) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as exc:
        what = " ".join(str(exc).split())[:200]  # one line, whatever the parser said
        if "integer string conversion" in what:
            what = "a number with more than 4300 digits"
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
    node: yaml.Node, here: FieldPath, lines: dict[FieldPath, int], depth: int, seen: list[int],
    path: tuple[int, ...] = (),
) -> None:
    if id(node) in path:
        raise yaml.YAMLError(f"an alias refers to a value that contains it (line {node.start_mark.line + 1})")
    path = (*path, id(node))
    if depth > MAX_DEPTH:
        raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels (line {node.start_mark.line + 1})")
    seen[0] += 1
    if seen[0] > MAX_NODES:
        raise yaml.YAMLError(f"more than {MAX_NODES} values once aliases are expanded")
    lines.setdefault(here, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        keys: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = (*here, key.value)
                line = key.start_mark.line + 1
                if (key.tag, key.value) in keys and key.tag != "tag:yaml.org,2002:merge":
                    raise _DuplicateKey(key.value[:60], keys[(key.tag, key.value)], line, child)
                keys[(key.tag, key.value)] = line
                lines[child] = line
                _record_lines(value, child, lines, depth + 1, seen, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*here, index), lines, depth + 1, seen, path)


class _DuplicateKey(yaml.YAMLError):
    """PyYAML keeps the last of two equal keys without a word: a typo'd copy would win silently."""

    def __init__(self, key: str, first: int, line: int, field: FieldPath) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.line, self.field = key, first, line, field

    def where(self, display: str) -> str:
        return f"{display}:{self.line}: {format_path(self.field)}"


class YamlProblems(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].line())
        self.problems = problems
