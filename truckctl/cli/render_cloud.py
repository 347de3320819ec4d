"""Human rendering of cloud plans: a table per component, counts, the policy result."""

from __future__ import annotations

import json
from typing import Any

from truckctl.cli.dispatch import Outcome
from truckctl.cli.output import Env
from truckctl.cli.render import table
from truckctl.jsondoc import JsonObject


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_inputs(resource: JsonObject) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in resource.get("key_inputs", {}).items())


def _policy(env: Env, violations: list[dict[str, str]], rules: int, stage: str = "") -> None:
    where = f" ({stage})" if stage else ""
    if not violations:
        env.console().print(f"policy{where}: {rules} rules, no violation")
        return
    table(env, f"Policy violations{where}", ["rule", "resource", "message"],
           [[v["rule"], v["resource"], v["message"]] for v in violations])


def cloud_plan(env: Env, outcome: Outcome) -> None:
    result = outcome.result
    out = env.console()
    out.print(result["note"], markup=False)
    if result.get("race"):  # --all offline: the race stack once, then the 21 moves
        _stage_tables(env, result["race"], "the race stack between stages")
        _moves_summary(env, result)
        return
    for entry in result.get("stages") or [{"stage": result["stage"], "cloud": result["cloud"],
                                           "move": result.get("move")}]:
        if "changes" in entry["cloud"]:
            _preview(env, entry["stage"], entry["cloud"])
        elif entry.get("move") and entry["move"]["from"] is not None:
            _move(env, entry["move"], entry["cloud"])
        elif result.get("stages"):
            continue  # --all: the summary table below, not 21 x 7 tables
        else:
            _stage_tables(env, entry["cloud"])
    if result.get("stages"):
        _all_summary(env, result)


def _move(env: Env, move: JsonObject, cloud: JsonObject) -> None:
    """Only the day's differences: the race stack's other resources stay as they are."""
    rows = [[c["op"], c["type"].rsplit(":", 1)[-1], c["name"],
             ", ".join(c["keys"]) + (f" (replaced on {', '.join(c['replaced_on'])})" if c["replaced_on"] else ""),
             c["holds"]] for c in move["changes"]]
    if rows:
        table(env, f"Move {move['from']} -> {move['stage']}", ["op", "type", "name", "inputs that differ", "holds"],
              rows)
    counts = ", ".join(f"{op} {n}" for op, n in move["counts"].items())
    env.console().print(f"{move['stage']} ({cloud['region']}): the race stack of {cloud['counts']['total']} "
                        f"resources, moved from {move['from']}: {counts}", markup=False)
    _policy(env, cloud["policy"] + move["policy"], len(cloud["policy_rules"]) + 1)


def _moves_summary(env: Env, result: JsonObject) -> None:
    rows = []
    for entry in result["stages"]:
        move = entry["move"]
        counts = move["counts"]
        rows.append([entry["stage"], str(move["from"]), *(str(counts[op]) for op in ("create", "update", "replace",
                                                                                     "delete")),
                     ", ".join(sorted({c["name"] for c in move["changes"]})) or "-",
                     str(len(entry["cloud"]["policy"]) + len(move["policy"]))])
    table(env, "Moves (the day's differences)", ["stage", "from", "create", "update", "replace", "delete",
                                                 "resources", "violations"], rows)
    violations = [{**v, "resource": f"{e['stage']}:{v['resource']}"} for e in result["stages"]
                  for v in e["cloud"]["policy"] + e["move"]["policy"]]
    _policy(env, violations, len(result["race"]["policy_rules"]) + 1, f"race and {len(result['stages'])} moves")


def _stage_tables(env: Env, cloud: JsonObject, what: str = "") -> None:
    out = env.console()
    by_component: dict[str, list[JsonObject]] = {}
    for resource in cloud["resources"]:
        by_component.setdefault(resource["component"], []).append(resource)
    for component, resources in by_component.items():
        rows = []
        for r in resources:
            flags = " [protect, retain]" if r["protect"] and r["retain_on_delete"] else ""
            rows.append([r["type"].rsplit(":", 1)[-1] + flags, r["name"], _key_inputs(r), ", ".join(r["depends_on"])])
        table(env, f"{component} ({len(resources)})", ["type", "name", "key inputs", "depends on"], rows)
    counts = cloud["counts"]
    parts = ", ".join(f"{name} {n}" for name, n in counts["by_component"].items())
    out.print(f"{what or cloud['stage']} ({cloud['region']}): {counts['total']} resources to create: {parts}",
              markup=False)
    _policy(env, cloud["policy"], len(cloud["policy_rules"]))


def _all_summary(env: Env, result: JsonObject) -> None:
    rows = []
    for entry in result["stages"]:
        cloud = entry["cloud"]
        if "counts" in cloud:
            rows.append([entry["stage"], str(cloud.get("region", "")), str(cloud["counts"]["total"]),
                         str(len(cloud["policy"]))])
    if rows:
        table(env, "Offline plan", ["stage", "region", "resources", "violations"], rows)
    violations = [{**v, "resource": f"{e['stage']}:{v['resource']}"} for e in result["stages"]
                  for v in e["cloud"].get("policy", [])]
    rules = len(result["stages"][0]["cloud"].get("policy_rules", [])) if result["stages"] else 0
    _policy(env, violations, rules, f"{len(result['stages'])} stages")


def _preview(env: Env, stage: str, cloud: JsonObject) -> None:
    changes = ", ".join(f"{op} {n}" for op, n in cloud["changes"].items()) or "no changes"
    env.console().print(f"{stage}: aws preview: {changes}", markup=False)
