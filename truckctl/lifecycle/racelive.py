"""Change control that knows the race is live (issue 14, DESIGN section 12).

While a stage is live, `up`, `drift --fix` and `down` do not apply what would interrupt telemetry
(broker or bridge restarts, the gateway's firewall reloads, anything that restarts the gateway's
networking) unless told to (`--interrupt-telemetry`); they apply the rest and report what they held
back and why.

A stage is live when
- the cloud side sees any of its trucks' telemetry fresh (younger than `stale_after_s`), or
- now is inside the stage's race window (`stage.live_from` .. `stage.live_until`, the race's time zone), or
- the cloud side cannot be read and the stage has no race window: truckctl cannot tell, so it holds
  back what it cannot prove safe (with a window, the window decides).

What cuts telemetry is marked in the plain playbooks, once: tasks and handlers tagged `cuts-telemetry`
(they cut it on a truck's gateway, where the broker, the bridge and the uplink are), and the live-state
items the `truck_live_state` module flags `cuts_telemetry`. With `hold_telemetry_cuts=true` the
playbooks skip those on the gateways (handlers ignore --skip-tags: the variable is what holds them).
`drift --fix` finds what it holds back in its own check-mode pass: each change on a gateway made by a
tagged task or handler, or flagged by the module, is held. `up` has no check pass: its run says what it
held back (a held handler sets a `<role>_held_back` fact naming itself; the module returns the flagged
items it did not fix), at no extra cost.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.steps import StepResult

if TYPE_CHECKING:
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage
    from truckctl.lifecycle.run import Run
    from truckctl.truck.events import Change, TruckRunResult

CUTS_TAG = "cuts-telemetry"
OPTION = "--interrupt-telemetry"  # the CLI's override (alias --during-race), declared once in cli/options.py


@dataclass(frozen=True)
class Liveness:
    """Whether the stage is live, and why (each reason one short line, shown and journaled)."""

    live: bool
    reasons: tuple[str, ...]
    telemetry: dict[str, float | None] | None  # truck -> age (s) of its last telemetry at the cloud side;
    #                                             None: the cloud side could not be read
    window: str | None  # "2027-05-08 11:00-17:30 Europe/Rome", or None when the stage has none
    checked_s: float = 0.0  # how long the check took

    def as_dict(self) -> JsonObject:
        return {**asdict(self), "reasons": list(self.reasons), "checked_s": round(self.checked_s, 3)}

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class NotChecked:
    """Liveness not asked (--interrupt-telemetry given): `live` is unknown, the reason says why."""

    reason: str
    live: None = None

    def as_dict(self) -> JsonObject:
        return {"live": self.live, "reasons": [self.reason]}


@dataclass(frozen=True)
class Seen:
    """What the cloud side says about the stage's telemetry: age per truck, or why it cannot say."""

    ages: dict[str, float | None] | None
    note: str = ""


def window_of(stage: Stage) -> tuple[dt.datetime, dt.datetime] | None:
    info = stage.info
    if info.live_from is None or info.live_until is None:
        return None
    zone = ZoneInfo(stage.race.timezone)
    return (dt.datetime.combine(info.date, info.live_from, zone), dt.datetime.combine(info.date, info.live_until, zone))


def decide(stage: Stage, seen: Seen, now: dt.datetime) -> Liveness:
    """The liveness decision (pure): fresh telemetry, the race window, or not knowing without a window."""
    stale_after = float(stage.defaults.telemetry.stale_after_s)
    window = window_of(stage)
    shown_window = None if window is None else (
        f"{stage.info.date.isoformat()} {window[0]:%H:%M}-{window[1]:%H:%M} {stage.race.timezone}")
    reasons: list[str] = []
    if seen.ages is not None:
        flowing = sorted(t for t, age in seen.ages.items() if age is not None and age <= stale_after)
        reasons += [f"telemetry of {truck} seen {seen.ages[truck]:g} s ago at the cloud side" for truck in flowing]
    if window is not None and window[0] <= now < window[1]:
        reasons.append(f"inside the race window {shown_window}")
    if seen.ages is None and window is None:
        reasons.append(f"cannot tell whether telemetry flows ({seen.note or 'the cloud side cannot be read'}) and "
                       f"{stage.name} has no race window (stage.live_from, stage.live_until)")
    return Liveness(bool(reasons), tuple(reasons), seen.ages, shown_window)


def seen_from_status(stage: Stage, status: JsonObject) -> Seen:
    """The stand-in's /status (its HTTP document) as ages per truck (a truck it does not know: nothing seen)."""
    trucks = status.get("trucks")
    trucks = trucks if isinstance(trucks, dict) else {}
    ages: dict[str, float | None] = {}
    for truck in stage.trucks:
        view = trucks.get(truck.name, {}).get("telemetry") if isinstance(trucks.get(truck.name), dict) else None
        age = view.get("age_s") if isinstance(view, dict) else None
        ages[truck.name] = float(age) if isinstance(age, int | float) and not isinstance(age, bool) else None
    return Seen(ages)


def observe(stage: Stage, target: str, cloud: CloudOutputs | None) -> Seen:
    """Ask the cloud side (lab: the stand-in's /status); never raises: not knowing is an answer."""
    from truckctl.target import TargetKind

    if target != TargetKind.lab:  # the Target object does not read the cloud side's telemetry view yet
        return Seen(None, "the cloud side's telemetry view on aws is CloudWatch, which truckctl does not read yet")
    if cloud is None:
        return Seen(None, "no cloud stand-in is up")
    from truckctl.lifecycle import cloudside

    try:
        return seen_from_status(stage, cloudside.fetch(cloud, "/status"))
    except TruckctlError as exc:
        return Seen(None, str(exc))


def check(stage: Stage, target: str, cloud: CloudOutputs | None,
          clock: Callable[[], float] = time.time) -> Liveness:
    started = time.monotonic()
    seen = observe(stage, target, cloud)
    decided = decide(stage, seen, dt.datetime.fromtimestamp(clock(), dt.UTC))
    return Liveness(decided.live, decided.reasons, decided.telemetry, decided.window, time.monotonic() - started)


def journaled_check(run: Run, stage: Stage, target: str, cloud: CloudOutputs | None) -> Liveness:
    """The check as the run's `liveness` step (its time and answer in the journal)."""
    holder: list[Liveness] = []

    def step() -> StepResult:
        holder.append(check(stage, target, cloud))
        return StepResult(holder[0].as_dict())

    run.step("liveness", step)
    run.journal.event("liveness", "liveness", live=holder[0].live, reasons=list(holder[0].reasons),
                      checked_s=round(holder[0].checked_s, 3))
    return holder[0]


# ---- what cuts telemetry ---------------------------------------------------------------------

def tagged_tasks(playbooks_dir: Path) -> frozenset[tuple[str, str]]:
    """(role, task name) of every task and handler of the roles tagged `cuts-telemetry`."""
    import yaml

    found: set[tuple[str, str]] = set()
    for path in sorted(playbooks_dir.glob("roles/*/*/*.yml")):
        if path.parent.name not in ("tasks", "handlers"):
            continue
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        for entry in entries if isinstance(entries, list) else []:
            tags = entry.get("tags", []) if isinstance(entry, dict) else []
            tags = [tags] if isinstance(tags, str) else tags
            if CUTS_TAG in tags and entry.get("name"):
                found.add((path.parent.parent.name, str(entry["name"])))
    return frozenset(found)


@dataclass(frozen=True)
class Held:
    """One change held back: where, which task, what would change, and why it waits."""

    node: str
    task: str
    change: str
    diff: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _task_name(task: str) -> str:
    return task.rsplit(" : ", 1)[-1]  # Ansible may prefix a role's task with "role : "


def held_changes(changes: Iterable[Change], gateways: Iterable[str],
                 tagged: frozenset[tuple[str, str]]) -> list[Held]:
    """The changes of a check-mode pass that a run holding back telemetry cuts does not apply: on a
    gateway, a tagged task or handler, or a flagged live-state item."""
    names = {name for _, name in tagged}
    gateway_set = set(gateways)
    held: list[Held] = []
    for change in changes:
        if change.host not in gateway_set:
            continue
        task = _task_name(change.task)
        cutting_items = [i for i in change.items if i.get("cuts_telemetry")]
        held += [Held(change.host, task, f"{i.get('kind', '')} {i.get('item', '')}: expected "
                      f"{i.get('expected', '')}, found {i.get('found', '')}", str(i.get("diff", "")))
                 for i in cutting_items]
        if not cutting_items and task in names:
            what = ("would run: a restart or reload that interrupts telemetry" if change.handler
                    else "would change")
            held.append(Held(change.host, task, what, change.diff))
    return held


def held_in_run(truck: TruckRunResult, gateways: Iterable[str], tagged: frozenset[tuple[str, str]]) -> list[Held]:
    """What a run holding back telemetry cuts did not apply on the gateways: each tagged handler it was
    notified to run and held (as the handler said), each flagged live-state item."""
    return held_changes([*truck.held, *truck.changes], gateways, tagged)


def gateways(stage: Stage) -> list[str]:
    return [stage.gateway(truck).name for truck in stage.trucks]


def refuse_down(stage: Stage, liveness: Liveness) -> TruckctlError:
    """`down` while live: nothing is torn down, the feed is not cut, exit 3."""
    return TruckctlError([Problem("race-live", f"{stage.name} is live ({liveness.why}): down would cut the telemetry "
                                  f"feed; nothing was changed. Wait for the stage to end, or give {OPTION} to cut it "
                                  "now", OPTION)], ExitCode.CHANGES, {"live": liveness.as_dict(), "held": ["down"]})


def held_line(stage: Stage, liveness: Liveness, held: list[Held]) -> str:
    return (f"held back {len(held)} change(s) that would interrupt telemetry while {stage.name} is live "
            f"({liveness.why}); re-run after the stage, or with {OPTION}")
