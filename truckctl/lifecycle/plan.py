"""`truckctl plan`: what the cloud tier would do for one stage or every stage.

Offline: the real stack program under Pulumi mocks, with the policy rules (the cloud tier's plan on
the lab target). aws: a real `pulumi preview` through the engine, one stage after another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from truckctl.errors import Problem
from truckctl.project import Project

if TYPE_CHECKING:
    from truckctl.cloud.engine import CloudEvent

LAB_NOTE = ("offline plan: the stack program evaluated under Pulumi mocks, nothing is created "
            "(on the lab target this is the cloud tier's plan: the lab's cloud stand-in replaces AWS)")
AWS_NOTE = "aws preview: Pulumi's preview of the stage's stack against AWS"


def violation_problems(plan: dict[str, Any], location: Callable[[str], str] = str) -> list[Problem]:
    """A plan's policy violations as problems; `location` places the violating resource."""
    return [Problem("policy-violation", f"{v['rule']}: {v['message']}", location(v["resource"]))
            for v in plan["policy"]]


def offline_plan(project: Project, names: Sequence[str] | None, jobs: int | None) -> tuple[dict[str, Any],
                                                                                             list[Problem]]:
    """One stage (names given) or every stage (None) planned offline; the problems are the violations."""
    from truckctl.cloud.offline import plan_offline

    plans = plan_offline(project, names, jobs)
    problems = [problem for p in plans for problem in violation_problems(p, f"{p['stage']}: {{}}".format)]
    result: dict[str, Any] = {"target": "lab", "mode": "offline", "note": LAB_NOTE}
    if names is not None:
        result.update(stage=plans[0]["stage"], cloud=plans[0])
    else:
        result["stages"] = [{"stage": p["stage"], "cloud": p} for p in plans]
        result["totals"] = {"stages": len(plans), "resources": sum(p["counts"]["total"] for p in plans),
                            "violations": len(problems)}
    return result, problems


def aws_plan(project: Project, names: Sequence[str] | None, backend: str | None, secrets_provider: str | None,
             on_event: Callable[[CloudEvent], None]) -> dict[str, Any]:
    """Pulumi's preview of each stage's stack against AWS."""
    from truckctl.cloud.engine import AwsEngine
    from truckctl.config.loader import load_stages

    previews = []
    for stage in load_stages(project, list(names) if names is not None else None):
        engine = AwsEngine(project, stage, backend=backend, secrets_provider=secrets_provider, on_event=on_event)
        previews.append({"stage": stage.name, "cloud": {"mode": "preview", **engine.preview().as_dict()}})
    result: dict[str, Any] = {"target": "aws", "mode": "preview", "note": AWS_NOTE}
    if names is not None:
        result.update(stage=previews[0]["stage"], cloud=previews[0]["cloud"])
    else:
        result["stages"] = previews
    return result
