"""Drift as Markdown, for a pull-request or CI job summary."""

from __future__ import annotations

from typing import Any


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


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
        lines += ["| tier | node | item |", "|---|---|---|"]
        lines += [f"| {i['tier']} | {_cell(i['node'] or '-')} | {_cell(i['item'])} |" for i in items]
        lines.append("")
        for item in items:
            if item["diff"]:
                lines += [f"<details><summary>{_cell(item['node'] or 'cloud')}: {_cell(item['item'])}</summary>",
                          "", "```diff", item["diff"].rstrip(), "```", "", "</details>", ""]
    cloud = result.get("cloud", {})
    if not cloud.get("checked", True):
        lines += [f"_Cloud tier: {cloud['note']}_", ""]
    if result.get("run_id"):
        lines += [f"Run `{result['run_id']}` (`truckctl runs show {result['run_id']}`).", ""]
    return "\n".join(lines)
