"""The team lock: the stage lock every operator meets, kept on the stage's trucks (their gateways).

Several operators (the engineer's laptop on the truck LAN, CI outside, the ops lead at home) have
no state directory in common; the trucks are what they all must reach. So a run that changes the
trucks takes the stage's lock on every truck's gateway (`teamlock_node` says how, on the node):

- **All or none.** Gateways are taken one after the other in a fixed order (by truck name); if one
  is held by another run, the ones already taken are released and the run stops with exit 4 naming
  the holder (host, user, command, run), where (which gateway) and since when. A gateway that does
  not answer is not locked (nobody reaches that truck through it either); the run says so.
- **A lease, renewed.** The lock holds for LEASE_S seconds of the node's clock; a background thread
  of the running truckctl renews it every RENEW_S. A holder that died (SIGKILL, power loss) or lost
  its link stops renewing, and its lock expires within LEASE_S: never for ever, never at once.
  30 s: three renewals may fail (2 s connect timeouts, a loaded machine, a blip of the link)
  before a live run loses its lock; a dead holder keeps the others out for at most half a minute.
- **Lost means stop.** When a renewal finds the lock taken (it expired and someone took it, or an
  operator forced it), or no renewal succeeded for a whole lease, the run is told (`lost`) and the
  main thread is interrupted: the run ends instead of converging beside another.
- **Forced release** (`truckctl unlock`) is confirmed by the user and recorded: in the local
  journal (an `unlock` run) and on each gateway (its record in the shared history).

The shared history: each run's summary (the fields `truckctl runs` lists; never a secret) is also
recorded on the gateways (at most KEEP_RUNS per stage, 8 KiB each), so `runs` and `status` on any
machine see every operator's runs. What a node returns is data: bounded, parsed as JSON, validated,
and handed on as typed records (`GatewayLock`, `ForcedRelease`, `TakeOver`, `SharedRun`); each says
itself as JSON (`to_json`) only where it becomes the command's result or a journal line.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from truckctl.errors import ExitCode, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.teamlock_node import (
    HOLDER_MAX,
    KEEP_RUNS,
    NODE_ROOT,
    REPLY_MAX,
    RUN_MAX,
    node_argv,
    node_command,
)
from truckctl.remote import Connection, KeptConnections, read_bounded, ssh_argv
from truckctl.text import hidden

if TYPE_CHECKING:
    from truckctl.config.model import Stage
    from truckctl.target import Target

LEASE_S = 30
RENEW_S = 10
CALL_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class Gateway:
    truck: str
    node: str
    address: str


def gateways(stage: Stage, trucks: Sequence[str] | None = None) -> list[Gateway]:
    """The stage's gateways in the fixed order locks are taken in (by truck name)."""
    chosen = [t for t in stage.trucks if trucks is None or t.name in trucks]
    return sorted((Gateway(t.name, stage.gateway(t).name, str(stage.gateway(t).address)) for t in chosen),
                  key=lambda g: g.truck)


# ---- what a node says -----------------------------------------------------------------------------

def _text(limit: int) -> Any:
    return Field(max_length=limit, pattern=r"^[^\x00-\x1f\x7f]*$")


class Holder(BaseModel):
    """Who holds (or held) a lock, as written by the truckctl that took it: data, never trusted."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    host: str = _text(255)
    user: str = _text(64)
    command: str = _text(200)
    run_id: str = Field(default="", max_length=80, pattern=r"^[0-9A-Za-z-]*$")
    started: float = Field(ge=0, le=2**40)
    pid: int = Field(default=0, ge=0, le=2**31)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return _visible(f"{self.user}@{self.host} ({self.command!r}, run {self.run_id or '?'}, since {when})")


class RunRecord(BaseModel):
    """A run as the shared history keeps it: the fields `truckctl runs` lists, and its origin."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    run_id: str = Field(max_length=80, pattern=r"^[0-9A-Za-z-]+$")
    stage: str = Field(max_length=20, pattern=r"^stage-[0-9]{1,2}$")
    command: str = _text(30)
    target: str | None = _text(10)
    status: str = Field(max_length=20, pattern=r"^[a-z-]+$")
    exit_code: int | None = Field(default=None, ge=0, le=255)
    started: float | None = Field(default=None, ge=0, le=2**40)
    duration_s: float | None = Field(default=None, ge=0, le=2**32)
    failed_step: str | None = _text(40)
    host: str = _text(255)
    user: str = _text(64)

    def body(self) -> bytes:
        """The record as the node keeps it: one line of JSON."""
        return json.dumps(self.model_dump(), separators=(",", ":")).encode()


@dataclass(frozen=True)
class SharedRun:
    """A run of the shared history, and the gateways that hold its record."""

    record: RunRecord
    seen_on: tuple[str, ...]

    @property
    def origin(self) -> str:
        """Who ran it, as `truckctl runs` says it: user@host of the operator."""
        return f"{self.record.user}@{self.record.host}"

    def to_json(self) -> JsonObject:
        return {**self.record.model_dump(), "seen_on": list(self.seen_on)}

    @classmethod
    def from_json(cls, document: JsonObject) -> SharedRun:
        """Back from `to_json` (the status document's `shared_runs`, as the portal holds it)."""
        return cls(RunRecord.model_validate(document), tuple(document.get("seen_on") or ()))


@dataclass(frozen=True)
class Reply:
    """One gateway's answer: state (taken, held, renewed, lost, ...), node time, expiry, holder."""

    state: str
    now: int = 0
    expires: int = 0
    holder: Holder | None = None
    lines: tuple[str, ...] = ()
    error: str | None = None  # unreachable, or what went wrong

    @property
    def remaining(self) -> int:
        return max(0, self.expires - self.now)


def parse_reply(rc: int, text: str) -> Reply:
    """A node's bounded output as a Reply; anything malformed is an error, never an exception."""
    if rc == 255:
        return Reply("unreachable", error=_visible(" ".join(text.split())[:200]) or "SSH failed")
    lines = text.split("\n")
    head = lines[0].split()
    if len(head) != 3 or not head[1].isdigit() or not head[2].isdigit() or rc != 0:
        return Reply("error", error=f"unexpected answer (exit {rc}): {_visible(lines[0][:80])}")
    state, now, expires = head[0], int(head[1]), int(head[2])
    if state == "error":
        return Reply("error", now, error=f"the node refused: {_visible(head[1][:40])}")
    holder = parse_holder(lines[1]) if len(lines) > 1 and state != "history" else None
    return Reply(state, now, expires, holder, tuple(lines[1:]) if state == "history" else ())


def parse_holder(line: str) -> Holder | None:
    if not line.strip():
        return None
    try:
        return Holder.model_validate_json(line[:HOLDER_MAX])
    except (ValidationError, ValueError):
        return Holder(host="?", user="?", command="(unreadable lock record)", started=0)


def _visible(text: str) -> str:
    return "".join(c if not hidden(c) else c.encode("unicode_escape").decode("ascii") for c in text)


def _holder_json(holder: Holder | None) -> JsonObject | None:
    return holder.model_dump() if holder is not None else None


@dataclass(frozen=True)
class GatewayState:
    """What one gateway said of the stage's lock: its state, who holds (or held) it, what went wrong."""

    gateway: str
    state: str
    holder: Holder | None = None
    error: str | None = None

    @property
    def description(self) -> str | None:
        return self.holder.describe() if self.holder is not None else None


@dataclass(frozen=True)
class GatewayLock(GatewayState):
    """A gateway's lock as a read found it (held, expired, free, or unreachable)."""

    expires_in_s: int = 0

    @classmethod
    def from_reply(cls, gateway: Gateway, reply: Reply) -> GatewayLock:
        return cls(gateway.node, reply.state, reply.holder, reply.error, reply.remaining)

    def to_json(self) -> JsonObject:
        return {"gateway": self.gateway, "state": self.state, "expires_in_s": self.expires_in_s,
                "holder": _holder_json(self.holder), "description": self.description, "error": self.error}


@dataclass(frozen=True)
class ForcedRelease(GatewayState):
    """A gateway's answer to a forced release: `forced` (its holder shown), `free`, or not reached."""

    @classmethod
    def from_reply(cls, gateway: Gateway, reply: Reply) -> ForcedRelease:
        return cls(gateway.node, reply.state, reply.holder, reply.error)

    @property
    def reached(self) -> bool:
        return self.state in ("forced", "free")

    def to_json(self) -> JsonObject:
        return {"gateway": self.gateway, "state": self.state, "error": self.error,
                "holder": _holder_json(self.holder), "description": self.description}


@dataclass(frozen=True)
class TakeOver:
    """A gateway whose lock this run took once its holder's lease had run out, and that holder."""

    gateway: str
    holder: Holder

    def to_json(self) -> JsonObject:
        return {"gateway": self.gateway, "holder": self.holder.model_dump()}


# ---- how a gateway is called ----------------------------------------------------------------------

class Transport(Protocol):
    """Runs the node script on a gateway with `stdin`; returns (exit code, output), 255 if unreachable."""

    def __call__(self, gateway: Gateway, argv: list[str], stdin: bytes) -> tuple[int, str]: ...


@dataclass(frozen=True)
class SshTransport:
    """The gateway over truckctl's SSH (the same path and pinned host keys as every node command).

    With `kept`, a held lock's calls share one SSH connection per gateway (remote.KeptConnections):
    the take opens it, renewals, the history record and the release ride on it; it closes with
    `close()` or by itself KEPT_PERSIST_S after its last use, and within 10 s of a dead link."""

    connection: Connection
    kept: KeptConnections | None = None

    def __call__(self, gateway: Gateway, argv: list[str], stdin: bytes) -> tuple[int, str]:
        op, stage, arg, lease, root = argv[4:9]
        command = node_command(op, stage, arg, int(lease), root, sudo=self.connection.user != "root")
        return bounded_run(self._ssh(gateway, command), stdin)

    def connect(self, gateways: Sequence[Gateway]) -> dict[str, str]:
        """Open this lock's SSH masters to every gateway at once, so that the take, one gateway after
        the other, pays no handshake; returns the gateways that could not be reached, with why."""
        if self.kept is None:
            return {}

        def one(gateway: Gateway) -> tuple[str, int, str]:
            return (gateway.node, *bounded_run(self._ssh(gateway, "true"), b""))
        with ThreadPoolExecutor(max_workers=max(1, len(gateways))) as pool:
            return {node: text for node, rc, text in pool.map(one, gateways) if rc == 255}

    def _ssh(self, gateway: Gateway, command: str) -> list[str]:
        """truckctl's ssh command line to the gateway, riding on this lock's master when it keeps one."""
        return ssh_argv(self.kept.over(self.connection) if self.kept else self.connection, gateway.address, command)

    def close(self) -> None:
        """End this lock's SSH masters and remove their directory."""
        if self.kept is not None:
            self.kept.close()


def close_transport(transport: object) -> None:
    """End a held lock's SSH masters (a transport that keeps none has nothing to close)."""
    close = getattr(transport, "close", None)
    if close is not None:
        close()


def held_transport(base: Transport) -> Transport:
    """The transport a held lock uses: the same, with SSH connections kept open for its calls."""
    if isinstance(base, SshTransport) and base.kept is None:
        return SshTransport(base.connection, KeptConnections())
    return base


def transport(target: Target, stage: Stage) -> Transport:
    """How the stage's gateways are reached: the target's SSH connection (its path, its pinned keys)."""
    return SshTransport(target.connection(stage))


def bounded_run(argv: list[str], stdin: bytes, limit: int = REPLY_MAX, timeout: float = CALL_TIMEOUT_S
                ) -> tuple[int, str]:
    """Run a command, reading at most `limit` bytes of its output for at most `timeout` seconds: (exit code,
    output), or ssh's complaint with 255."""
    said = read_bounded(argv, stdin, limit, timeout)
    if said.too_long:
        return 1, "answer too long"
    if said.rc is None:
        return 255, "timed out"
    return said.rc, said.stdout if said.rc != 255 else said.stderr


def local_transport(gateway: Gateway, argv: list[str], stdin: bytes) -> tuple[int, str]:
    """Runs the node script on this machine (tests: a temporary directory stands for each gateway)."""
    return bounded_run(argv, stdin)


# ---- the lock -------------------------------------------------------------------------------------

def this_holder(command: str, run_id: str) -> Holder:
    return Holder(host=socket.gethostname()[:255], user=_user()[:64], command=command[:200], run_id=run_id,
                  started=time.time(), pid=os.getpid())


@dataclass
class TeamLock:
    """The stage's lock on its gateways, held by this run. `take()`, then `start_renewing()`, `release()`."""

    stage: str
    gateways: list[Gateway]
    transport: Transport
    holder: Holder
    root: str = NODE_ROOT
    lease: int = LEASE_S
    renew_every: float = RENEW_S
    clock: Callable[[], int | None] = lambda: None  # the node's clock (tests): None = the node's own
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    held: list[Gateway] = field(default_factory=list)
    unreachable: list[Gateway] = field(default_factory=list)
    took_over: list[TakeOver] = field(default_factory=list)
    lost: str | None = None
    on_lost: Callable[[str], None] = lambda reason: None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last_ok: dict[str, float] = field(default_factory=dict)

    def call(self, gateway: Gateway, op: str, arg: str = "-", stdin: bytes = b"") -> Reply:
        rc, text = self.transport(gateway, node_argv(op, self.stage, arg, self.lease, self.root, self.clock()),
                                  stdin)
        return parse_reply(rc, text)

    def take(self) -> None:
        """All gateways or none: taken in order; one held by another run releases the others (exit 4)."""
        record = self.holder.model_dump_json().encode()
        connect = getattr(self.transport, "connect", None)
        unreachable: dict[str, str] = connect(self.gateways) if connect is not None else {}
        for gateway in self.gateways:
            if gateway.node in unreachable:  # (a second try in the loop would wait its connect timeout again)
                self.unreachable.append(gateway)
                continue
            reply = self.call(gateway, "take", self.token, record)
            if reply.state in ("taken", "taken-expired"):
                self.held.append(gateway)
                self._last_ok[gateway.node] = time.monotonic()
                if reply.state == "taken-expired" and reply.holder is not None:
                    self.took_over.append(TakeOver(gateway.node, reply.holder))
            elif reply.state == "unreachable":
                self.unreachable.append(gateway)
            else:
                self.release()
                raise locked_error(self.stage, gateway, reply)

    def release(self) -> list[str]:
        """Release what this run holds (in parallel); returns the gateways it could not reach."""
        self._stop.set()
        held, self.held = self.held, []
        with ThreadPoolExecutor(max_workers=max(1, len(held))) as pool:
            replies = list(pool.map(lambda g: (g, self.call(g, "release", self.token)), held))
        return [g.node for g, reply in replies if reply.state not in ("released", "not-held")]

    def renew_once(self) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(self.held))) as pool:
            replies = list(pool.map(lambda g: (g, self.call(g, "renew", self.token)), list(self.held)))
        now = time.monotonic()
        for gateway, reply in replies:
            if reply.state == "renewed":
                self._last_ok[gateway.node] = now
            elif reply.state == "lost":
                who = reply.holder.describe() if reply.holder else "nobody (it was released)"
                self._lose(f"the stage lock on {gateway.node} was taken away: now held by {who}")
            elif now - self._last_ok.get(gateway.node, now) > self.lease:
                self._lose(f"the stage lock on {gateway.node} could not be renewed for {self.lease} s "
                           f"({reply.error or reply.state}): its lease has lapsed")

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            self.on_lost(reason)

    def start_renewing(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.renew_every) and self.lost is None:
                self.renew_once()
        self._thread = threading.Thread(target=loop, name=f"teamlock-{self.stage}", daemon=True)
        self._thread.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=CALL_TIMEOUT_S + 2)

    def check(self) -> None:
        """Raise if the lock was lost: a run must not go on changing trucks it no longer holds."""
        if self.lost is not None:
            raise TruckctlError.single("lock-lost", f"{self.lost}; this run stopped so as not to converge beside "
                                       "another", exit_code=ExitCode.ERROR)

    def as_dict(self) -> JsonObject:
        """The lock as the run's journal records it (its `lock` event)."""
        return {"gateways": [g.node for g in self.held], "lease_s": self.lease,
                "unreachable": [g.node for g in self.unreachable], "took_over": [t.to_json() for t in self.took_over]}

    def record(self, summary: JsonObject) -> list[str]:
        """Record a run (its summary as the journal lists it) on every gateway; returns those that failed:
        all of them when the summary makes no valid record."""
        try:
            run = run_record(summary, self.holder)
        except ValidationError:
            return [g.node for g in self.gateways]
        return record_run(self.gateways, self.transport, self.stage, run, self.root, self.lease)


def locked_error(stage: str, gateway: Gateway, reply: Reply) -> TruckctlError:
    if reply.state == "held" and reply.holder is not None:
        message = (f"{stage} is locked by another operator: {reply.holder.describe()}, on {gateway.node}; "
                   f"its lease ends in {reply.remaining} s unless that run renews it")
        error = TruckctlError.single("lock-held", message, gateway.node, ExitCode.LOCKED)
        error.result["lock"] = {**reply.holder.model_dump(), "gateway": gateway.node, "expires_in_s": reply.remaining,
                                "where": "gateway"}
        return error
    if reply.state == "busy":
        return TruckctlError.single("lock-held", f"{stage}'s lock on {gateway.node} is being changed by another "
                                    "operator right now; try again", gateway.node, ExitCode.LOCKED)
    return TruckctlError.single("lock-failed", f"cannot take {stage}'s lock on {gateway.node}: "
                                f"{reply.error or reply.state}; nothing was changed", gateway.node)


# ---- reading and forcing --------------------------------------------------------------------------

def read_locks(stage: str, gws: list[Gateway], transport: Transport, root: str = NODE_ROOT) -> list[GatewayLock]:
    """Each gateway's lock as it stands (in parallel)."""
    def one(gateway: Gateway) -> GatewayLock:
        return GatewayLock.from_reply(gateway, parse_reply(*transport(
            gateway, node_argv("read", stage, "-", LEASE_S, root), b"")))
    with ThreadPoolExecutor(max_workers=max(1, len(gws))) as pool:
        return list(pool.map(one, gws))


def force_release(stage: str, gws: list[Gateway], transport: Transport, record: RunRecord,
                  root: str = NODE_ROOT) -> list[ForcedRelease]:
    """Remove the lock on every gateway whoever holds it, recording `record` (the unlock run) there."""
    body = record.body()

    def one(gateway: Gateway) -> ForcedRelease:
        return ForcedRelease.from_reply(gateway, parse_reply(*transport(
            gateway, node_argv("force", stage, record.run_id, LEASE_S, root), body)))
    with ThreadPoolExecutor(max_workers=max(1, len(gws))) as pool:
        return list(pool.map(one, gws))


# ---- the shared history ---------------------------------------------------------------------------

def run_record(summary: JsonObject, holder: Holder) -> RunRecord:
    """The fields of a run the gateways keep (as `truckctl runs` lists them, from the journal's summary),
    and who ran it. Raises ValidationError when the summary does not fit the record's bounds."""
    keep = ("run_id", "stage", "command", "target", "status", "exit_code", "started", "duration_s", "failed_step")
    return RunRecord.model_validate({**{k: summary.get(k) for k in keep}, "host": holder.host, "user": holder.user})


def record_run(gws: list[Gateway], transport: Transport, stage: str, run: RunRecord, root: str = NODE_ROOT,
               lease: int = LEASE_S) -> list[str]:
    """Record a run on each gateway (in parallel); returns those that did not record it."""
    body = run.body()
    with ThreadPoolExecutor(max_workers=max(1, len(gws))) as pool:
        replies = list(pool.map(lambda g: (g, parse_reply(*transport(
            g, node_argv("record", stage, run.run_id, lease, root), body))), gws))
    return [g.node for g, reply in replies if reply.state != "recorded"]


def remote_runs(stage: str, gws: list[Gateway], transport: Transport, root: str = NODE_ROOT
                ) -> tuple[list[SharedRun], dict[str, str]]:
    """The runs recorded on the gateways (one entry per run, whichever gateways hold it), and the
    gateways that could not be read with why."""
    def one(gateway: Gateway) -> tuple[Gateway, Reply]:
        return gateway, parse_reply(*transport(gateway, node_argv("history", stage, "-", LEASE_S, root), b""))
    with ThreadPoolExecutor(max_workers=max(1, len(gws))) as pool:
        return shared_runs_of(stage, list(pool.map(one, gws)))


def team_of(stage: str, answers: Sequence[tuple[Gateway, int, str]]
            ) -> tuple[list[GatewayLock], list[SharedRun], dict[str, str]]:
    """What `status` shows of the team from each gateway's answer to the `team` read (its exit code and
    output; 255 and ssh's reason when it could not be asked): each gateway's lock as `read_locks` gives
    it, and the runs and unread gateways as `remote_runs` gives them."""
    parsed: list[tuple[Gateway, Reply, Reply]] = []
    for gateway, rc, text in answers:
        if rc == 255:  # SSH's own failure: both answers are that
            parsed.append((gateway, parse_reply(rc, text), parse_reply(rc, text)))
            continue
        state, holder, runs = [*text.split("\n", 2), "", ""][:3]  # the lock's two lines, then the history
        parsed.append((gateway, parse_reply(rc, f"{state}\n{holder}"), parse_reply(rc, runs)))
    runs_seen, failed = shared_runs_of(stage, [(gateway, history) for gateway, _, history in parsed])
    return [GatewayLock.from_reply(gateway, lock) for gateway, lock, _ in parsed], runs_seen, failed


def shared_runs_of(stage: str, answers: list[tuple[Gateway, Reply]]) -> tuple[list[SharedRun], dict[str, str]]:
    """The gateways' `history` answers as one entry per run (whichever gateways hold it), and the
    gateways that could not be read with why."""
    runs: dict[str, tuple[RunRecord, list[str]]] = {}  # by run id, in the order first seen
    failed: dict[str, str] = {}
    for gateway, reply in answers:
        if reply.state != "history":
            failed[gateway.node] = reply.error or reply.state
            continue
        for line in reply.lines[:KEEP_RUNS]:
            try:
                item = RunRecord.model_validate_json(line[:RUN_MAX])
            except (ValidationError, ValueError):
                continue  # a damaged or forged record is left out, never shown raw
            if item.stage == stage:
                runs.setdefault(item.run_id, (item, []))[1].append(gateway.node)
    return [SharedRun(record, tuple(seen_on)) for record, seen_on in runs.values()], failed


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
