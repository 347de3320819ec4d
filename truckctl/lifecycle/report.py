"""Drift as Markdown, for a pull-request or CI job summary."""

from __future__ import annotations

import re
from typing import Any


def _cell(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("`", "&#96;").replace("\n", " "))


def fence(text: str) -> str:
    """A code fence the text cannot close: longer than any run of backticks in it (CommonMark
    closes a backtick fence only with at least as many backticks; tildes never close it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def drift_markdown(result: dict[str, Any]) -> str:
    items = result.get("items", [])
    if result.get("fixed"):
        verdict = f"drift found on {len(items)} item(s) and **fixed** (a re-check finds none)"
    elif items:
        verdict = f"**drift found** on {len(items)} item(s)"
    else:
        verdict = "no drift"
    lines = [f"## truckctl drift: {result['stage']} ({result['target']})", "", verdict, ""]
    if items:
        lines += ["| tier | node | kind | item | expected | found |", "|---|---|---|---|---|---|"]
        lines += [f"| {i['tier']} | {_cell(i['node'] or '-')} | {_cell(i['kind'])} | {_cell(i['item'])} | "
                  f"{_cell(i['expected'])} | {_cell(i['found'])} |" for i in items]
        lines.append("")
        for item in items:
            if item["diff"]:
                diff = item["diff"].rstrip()
                lines += [f"<details><summary>{_cell(item['node'] or 'cloud')}: {_cell(item['item'])}</summary>",
                          "", fence(diff) + "diff", diff, fence(diff), "", "</details>", ""]
    cloud = result.get("cloud", {})
    if not cloud.get("checked", True):
        lines += [f"_Cloud tier: {cloud['note']}_", ""]
    if result.get("run_id"):
        lines += [f"Run `{result['run_id']}` (`truckctl runs show {result['run_id']}`).", ""]
    return "\n".join(lines)
