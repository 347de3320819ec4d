"""What every changing command shares: the stage lock, the run journal, notifications on failure,
and a clean end on Ctrl-C (exit 130, lock released, journal closed)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle.journal import Journal, Redactor
from truckctl.lifecycle.lock import stage_lock
from truckctl.lifecycle.notify import Channel, channels, notify
from truckctl.lifecycle.steps import StepResult
from truckctl.lifecycle.webhttp import secret_parts
from truckctl.project import Project

if TYPE_CHECKING:
    from truckctl.target import Target
    from truckctl.truck.events import HostEvent, TruckRunResult
    from truckctl.truck.plan import RunPlan
    from truckctl.truck.tier import Runner, UpCallbacks

Step = Callable[[], StepResult]


def env_secrets(stage: Stage) -> list[str]:
    """Secret values the race references from the environment: never to be written anywhere (the
    webhook's URL also by its parts: its userinfo, path, query and fragment each on their own)."""
    values = [os.environ[ref.env] for ref in stage.secrets.values() if os.environ.get(ref.env)]
    webhook = stage.alerts.webhook
    if webhook is not None and os.environ.get(webhook.env):
        values += secret_parts(os.environ[webhook.env])
    return values


@dataclass
class Run:
    """One locked, journaled run of a command on a stage."""

    project: Project
    stage: Stage
    command: str
    target: Target
    journal: Journal
    lab_receiver: str | None = None  # the target's own alert receiver (the lab stand-in's), once known
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def step(self, name: str, action: Step, **fields: Any) -> dict[str, Any]:
        """Run one step, journaled with its timing; a failure names the step."""
        self.journal.step_start(name, **fields)
        try:
            detail = action()
        except TruckctlError as exc:
            status = "interrupted" if exc.exit_code == ExitCode.INTERRUPTED else "failed"
            self.journal.step_end(name, status, errors=[p.as_dict() for p in exc.problems])
            exc.result.setdefault("failed_step", name)
            raise
        except KeyboardInterrupt:
            self.journal.step_end(name, "interrupted")
            raise
        except Exception as exc:  # a bug: the step is recorded as failed, locked_run closes the run
            self.journal.step_end(name, "failed", errors=[{"code": "internal-error", "message": type(exc).__name__}])
            raise
        self.journal.step_done(name, detail)
        return dict(detail.detail)

    def truck(self, plan: RunPlan, callbacks: UpCallbacks, interrupted: str = "the truck run was interrupted",
              runner: Runner | None = None) -> TruckRunResult:
        """The truck tier's run of a plan inside this run: its changed, failed and unreachable tasks and
        each node's recap journaled (messages scrubbed), the caller's callbacks told as they come."""
        from truckctl.truck.tier import run_truck_plan

        def on_event(event: HostEvent) -> None:
            # Tasks with secrets are no_log; scrubbing here too keeps a mistake in a role off the screen.
            event = dataclasses.replace(event, message=self.journal.redactor.scrub(event.message))
            if event.status in ("changed", "failed", "unreachable"):
                self.journal.event("task", "truck", node=event.host, task=event.task, status=event.status,
                                   message=event.message)
            callbacks.on_host_event(event)

        result = run_truck_plan(self.project, plan, dataclasses.replace(callbacks, on_host_event=on_event),
                                interrupted, runner)
        for host, stats in result.hosts.items():
            self.journal.event("node", "truck", node=host, state=stats.state, ok=stats.ok, changed=stats.changed,
                               failed=stats.failed, unreachable=stats.unreachable)
        return result

    def secret(self, value: str) -> None:
        self.journal.redactor.add(value)

    def notify(self, kind: str, message: str, **details: Any) -> list[dict[str, Any]]:
        """Notify every channel; never raises: the run keeps its own outcome whatever the channels do."""
        try:
            tls = self.target.receiver_tls() if self.lab_receiver else None
            targets: list[Channel] = channels(self.stage, self.lab_receiver, tls)
            sent = notify(targets, self.stage, kind, message, scrub=self.journal.redactor.scrub,
                          run_id=self.journal.run_id, target=self.target.kind.value, **details)
        except Exception as exc:  # a bug here must not cost the run its record
            sent = [{"channel": "all", "ok": False, "error": f"notification not sent ({type(exc).__name__})"}]
        sent = self.journal.redactor.scrub(sent)
        self.notifications += sent
        self.journal.event("notification", "notify", notification=kind, deliveries=sent)
        return sent


@contextmanager
def locked_run(project: Project, stage: Stage, command: str, target: Target) -> Iterator[Run]:
    """Lock the stage, open the journal; on failure notify, journal it, and re-raise as TruckctlError.

    The caller ends a successful run with `finish_run`. KeyboardInterrupt becomes exit 130.
    """
    with stage_lock(project, stage.name, f"{command} {stage.name} --target {target.kind.value}"):
        journal = Journal(project, stage.name, command, target.kind.value, Redactor(env_secrets(stage)))
        run = Run(project, stage, command, target, journal)
        try:
            yield run
        except TruckctlError as exc:
            incomplete = journal.incomplete()
            if incomplete is not None and incomplete not in exc.problems:
                exc.problems.append(incomplete)
            failed = exc.result.get("failed_step")
            if exc.exit_code not in (ExitCode.INTERRUPTED, ExitCode.USAGE):
                reason = exc.problems[0].message if exc.problems else "failed"
                where = f" at step {failed}" if failed else ""
                run.notify("run-failed", f"{command} {stage.name} on {target.kind.value} failed{where}: {reason}")
            exc.result.update(run_id=journal.run_id, notifications=run.notifications)
            journal.finish(exc.exit_code, exc.problems, exc.result)
            raise
        except KeyboardInterrupt:
            problem = Problem("interrupted", f"{command} interrupted; the stage lock is released, re-run to resume")
            problems = [problem, *filter(None, [journal.incomplete()])]
            journal.finish(ExitCode.INTERRUPTED, problems)
            raise TruckctlError(problems, ExitCode.INTERRUPTED, {"run_id": journal.run_id}) from None
        except Exception as exc:
            # A bug must not leave the journal `running` nor print a traceback: its text may quote a
            # secret, so only its type is said.
            problems = [Problem("internal-error", f"{command} stopped on an unexpected {type(exc).__name__}; "
                                "the run journal records where"), *filter(None, [journal.incomplete()])]
            journal.finish(ExitCode.ERROR, problems, {"run_id": journal.run_id})
            raise TruckctlError(problems, ExitCode.ERROR, {"run_id": journal.run_id}) from None


def finish_run(run: Run, exit_code: ExitCode, result: dict[str, Any], problems: list[Problem] | None = None
               ) -> dict[str, Any]:
    """End a run that did what it was asked. If its journal could not be written to the end, the run
    fails (exit 1) all the same: an unrecorded run must not look like a clean one."""
    incomplete = run.journal.incomplete()
    if incomplete is not None:
        raise TruckctlError([*(problems or []), incomplete], ExitCode.ERROR, result)
    result.update(run_id=run.journal.run_id, notifications=run.notifications)
    run.journal.finish(exit_code, problems or [], result)
    return result
