"""What every changing command shares: the stage locks, the run journal, notifications on failure,
and a clean end on Ctrl-C (exit 130, locks released, journal closed).

Two locks: the local one (this machine's state directory: it covers what only touches this machine,
the lab itself) for the whole run, and the team lock on the stage's gateways (`teamlock`), which
every operator meets, taken before the first step that reaches the trucks (on the lab target the
nodes exist only after the `lab` step) and renewed until the run ends. The run's summary is then
also recorded on the gateways (the shared history) before the team lock is released."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import teamlock
from truckctl.lifecycle.journal import Journal, Redactor
from truckctl.lifecycle.lock import stage_lock
from truckctl.lifecycle.notify import Channel, Delivery, channels, notify
from truckctl.lifecycle.steps import StepResult
from truckctl.lifecycle.teamlock import TeamLock, gateways, this_holder
from truckctl.lifecycle.webhttp import secret_parts
from truckctl.project import Project

if TYPE_CHECKING:
    from truckctl.target import Target
    from truckctl.truck.events import HostEvent, TruckRunResult
    from truckctl.truck.plan import RunPlan
    from truckctl.truck.tier import Runner, UpCallbacks

# Steps that touch only this machine (building the lab): no team lock needed, the local one covers them.
MACHINE_STEPS = frozenset({"lab"})

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
    notifications: list[Delivery] = field(default_factory=list)
    team: TeamLock | None = None  # the team lock, once taken

    def lock_trucks(self) -> None:
        """Take the team lock on the stage's gateways (once), and keep renewing it."""
        if self.team is not None:
            self.team.check()
            return
        holder = this_holder(f"{self.command} {self.stage.name} --target {self.target.kind.value}",
                             self.journal.run_id)
        transport = teamlock.held_transport(teamlock.transport(self.target, self.stage))
        team = TeamLock(self.stage.name, gateways(self.stage), transport, holder, on_lost=self._lost)
        try:
            team.take()
        except BaseException:  # refused (exit 4) or interrupted: nothing is held, no connection kept
            teamlock.close_transport(transport)
            raise
        self.team = team
        self.journal.event("lock", "run", **team.as_dict())
        team.start_renewing()

    def _lost(self, reason: str) -> None:
        """The renewer found the lock gone: journal it and stop the run (as Ctrl-C would, where Python
        handles SIGINT; otherwise at the next step boundary and at the end of the run)."""
        import _thread

        self.journal.event("lock-lost", "run", message=reason)
        _thread.interrupt_main()

    def step(self, name: str, action: Step, **fields: Any) -> JsonObject:
        """Run one step, journaled with its timing; a failure names the step. Every step but `lab`
        reaches the trucks: the team lock is taken before the first one. Returns the step's part of the
        command's result (its detail, as the JSON envelope shows it under the step's name)."""
        if name not in MACHINE_STEPS:
            self.lock_trucks()
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
        if self.team is not None:
            self.team.check()
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
        self.recap(result)
        return result

    def recap(self, result: TruckRunResult) -> None:
        """Each node's recap of a truck run, journaled."""
        for host, stats in result.hosts.items():
            self.journal.event("node", "truck", node=host, state=stats.state, ok=stats.ok, changed=stats.changed,
                               failed=stats.failed, unreachable=stats.unreachable)

    def secret(self, value: str) -> None:
        self.journal.redactor.add(value)

    def notify(self, kind: str, message: str, **details: Any) -> list[Delivery]:
        """Notify every channel; never raises: the run keeps its own outcome whatever the channels do."""
        try:
            tls = self.target.receiver_tls() if self.lab_receiver else None
            targets: list[Channel] = channels(self.stage, self.lab_receiver, tls)
            sent = notify(targets, self.stage, kind, message, scrub=self.journal.redactor.scrub,
                          run_id=self.journal.run_id, target=self.target.kind.value, **details)
        except Exception as exc:  # a bug here must not cost the run its record
            sent = [Delivery("all", False, error=f"notification not sent ({type(exc).__name__})")]
        sent = [delivery.scrubbed(self.journal.redactor.scrub) for delivery in sent]
        self.notifications += sent
        self.journal.event("notification", "notify", notification=kind, deliveries=[d.to_json() for d in sent])
        return sent

    def outcome(self) -> JsonObject:
        """What every result of the run says of it, however it ended: its id and its notifications."""
        return {"run_id": self.journal.run_id, "notifications": [d.to_json() for d in self.notifications]}


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
            if run.team is not None:
                run.team.check()
        except TruckctlError as exc:
            if exc.exit_code == ExitCode.INTERRUPTED and run.team is not None and run.team.lost is not None:
                # the renewer stopped the run (the truck tier reports it as interrupted): say why
                exc.problems[:] = [Problem("lock-lost", f"{run.team.lost}; this run stopped so as not to "
                                           "converge beside another")]
                exc.exit_code = ExitCode.ERROR
            incomplete = journal.incomplete()
            if incomplete is not None and incomplete not in exc.problems:
                exc.problems.append(incomplete)
            failed = exc.result.get("failed_step")
            if exc.exit_code not in (ExitCode.INTERRUPTED, ExitCode.USAGE, ExitCode.LOCKED):
                reason = exc.problems[0].message if exc.problems else "failed"
                where = f" at step {failed}" if failed else ""
                run.notify("run-failed", f"{command} {stage.name} on {target.kind.value} failed{where}: {reason}")
            exc.result.update(run.outcome())
            journal.finish(exc.exit_code, exc.problems, exc.result)
            raise
        except KeyboardInterrupt:
            if run.team is not None and run.team.lost is not None:  # the renewer stopped the run
                lost = Problem("lock-lost", f"{run.team.lost}; this run stopped so as not to converge beside another")
                problems = [lost, *filter(None, [journal.incomplete()])]
                journal.finish(ExitCode.ERROR, problems, {"run_id": journal.run_id})
                raise TruckctlError(problems, ExitCode.ERROR, {"run_id": journal.run_id}) from None
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
        finally:
            end_team_lock(run)


def end_team_lock(run: Run) -> None:
    """Record the run on the gateways (the shared history), then release the team lock there. Never
    raises: the run keeps its outcome; a gateway out of reach lets its lease run out."""
    team = run.team
    if team is None:
        return
    team.stop_renewing()
    try:
        summary = run.journal.brief()
        if summary is not None:
            unrecorded = team.record(summary)
            if unrecorded:
                run.journal.note("history", f"run not recorded on {', '.join(unrecorded)} (unreachable)")
    except Exception as exc:  # a bug here must not keep the lock: the release below still runs
        run.journal.note("history", f"run not recorded on the gateways ({type(exc).__name__})")
    try:
        kept = team.release()
    except Exception:
        kept = [g.node for g in team.held]
    if kept:
        run.journal.note("lock", f"lock not released on {', '.join(kept)} (unreachable): it expires within "
                         f"{team.lease} s")
    teamlock.close_transport(team.transport)


def finish_run(run: Run, exit_code: ExitCode, result: JsonObject, problems: list[Problem] | None = None
               ) -> JsonObject:
    """End a run that did what it was asked, with `result` (the command's, as the JSON envelope shows it;
    the run's id and notifications are added). If its journal could not be written to the end, the run
    fails (exit 1) all the same: an unrecorded run must not look like a clean one."""
    incomplete = run.journal.incomplete()
    if incomplete is not None:
        raise TruckctlError([*(problems or []), incomplete], ExitCode.ERROR, result)
    result.update(run.outcome())
    run.journal.finish(exit_code, problems or [], result)
    return result
