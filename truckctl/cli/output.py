"""Where output goes: the JSON envelope or human output (rich on a TTY, plain otherwise)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from truckctl.errors import Problem
from truckctl.text import hidden

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text



@dataclass
class Env:
    """The injected environment: streams and how to write to them (tests swap these)."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    json: bool = False
    no_color: bool = False
    _console: Console | None = None
    _err_console: Console | None = None

    @property
    def rich(self) -> bool:
        return self.stdout.isatty() and not self.no_color and "NO_COLOR" not in os.environ

    def console(self) -> Console:
        if self._console is None:
            self._console = _make_console(self.stdout, self.rich)
        return self._console

    def err_console(self) -> Console:
        if self._err_console is None:
            self._err_console = _make_console(self.stderr, self.rich and self.stderr.isatty())
        return self._err_console


def visible(text: str) -> str:
    """Text safe for a terminal: control, format (bidi, zero-width) and line/paragraph separator characters,
    which could move the cursor, retitle the window or reorder what is shown, are shown as escapes
    (`\\x1b`, `\\u202e`); newlines and tabs stay."""
    if text.isprintable():
        return text
    return "".join(char if char in "\n\t" or not hidden(char) else char.encode("unicode_escape").decode("ascii")
                   for char in text)


def text(value: str, style: str = "") -> Text:
    """A rich Text of data (a node's answer, an error's message...): `visible` first, never markup. Every
    `Text` of the human output is built here (or by the console from a string): a `Text(...)` does not
    pass through the console's `render_str`."""
    from rich.text import Text

    return Text(visible(value), style=style)


def markup(value: str) -> Text:
    """A rich Text from markup the caller wrote (data in it `rich.markup.escape`d): `visible` first."""
    from rich.text import Text

    return Text.from_markup(visible(value))


def _make_console(stream: TextIO, rich: bool) -> Console:
    """A rich console whose every string (printed text, table cells) passes through `visible` first, and
    whose every rendered segment does again (a `Text` built elsewhere, a table, a panel): no text from
    the configuration, a node or a journal drives the terminal. Markup stays opt-in per call site."""
    from rich.console import Console
    from rich.segment import Segment

    class _Console(Console):
        def render_str(self, text: str, **kwargs: Any) -> Text:
            return super().render_str(visible(text), **kwargs)

        def render(self, renderable: Any, options: Any = None) -> Iterator[Segment]:
            for segment in super().render(renderable, options):
                # rich's own cursor and screen codes are control segments; every other text is shown
                yield segment if segment.control or segment.text.isprintable() else \
                    Segment(visible(segment.text), segment.style)

    if rich:
        return _Console(file=stream, highlight=False)
    return _Console(file=stream, no_color=True, highlight=False, force_terminal=False, width=200,
                    emoji=False, color_system=None)


def write_json(env: Env, document: dict[str, Any]) -> None:
    env.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    env.stdout.flush()


def write_problems(env: Env, problems: list[Problem]) -> None:
    console = env.err_console()
    for problem in problems:
        console.print(f"[bold red]error:[/] {_escape(problem.line())}" if env.rich else f"error: {problem.line()}",
                      markup=env.rich, soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
