"""The one test of which characters text must not carry raw: the configuration refuses them
(`config.model.printable_text`), human output shows them as escapes (`cli.output.visible`)."""

from __future__ import annotations

import unicodedata


def hidden(char: str) -> bool:
    """A control, format (bidi, zero-width), surrogate, private-use or unassigned character, or a line or
    paragraph separator: it would end a line, drive a terminal or reorder what is shown."""
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")
