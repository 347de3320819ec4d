"""The team lock's protocol: the real node script, run here with a temporary directory per gateway.

Each fake gateway is a directory standing for a node's /var/lib/truckctl; the node's clock is a
number the test moves (the script takes it as an argument only in tests), so lease expiry is tested
without waiting. What is faked is only the SSH hop.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.lifecycle.fakes import GatewayDirs
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle.teamlock import (
    LEASE_S,
    Gateway,
    Holder,
    RunRecord,
    SharedRun,
    TeamLock,
    bounded_run,
    force_release,
    read_locks,
    record_run,
    remote_runs,
    team_of,
)
from truckctl.lifecycle.teamlock_node import KEEP_RUNS, node_argv, node_command

GATEWAYS = [Gateway("truck-a", "truck-a-gw", "10.0.0.1"), Gateway("truck-b", "truck-b-gw", "10.0.1.1")]


class Nodes(GatewayDirs):
    """The gateways as directories, one node clock for all (moved by the tests)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.now = int(time.time())

    def __call__(self, gateway: Gateway, argv: list[str], stdin: bytes) -> tuple[int, str]:
        # calls that pass no clock (reads, records) get the test's too: a second ticking between the
        # take and the read must not change a lease's remaining time
        return super().__call__(gateway, argv if len(argv) > 9 else [*argv, str(self.now)], stdin)

    def lock(self, who: str, command: str = "up stage-1 --target lab", **kwargs: Any) -> TeamLock:
        holder = Holder(host=f"{who}-host", user=who, command=command, run_id=f"20270501T070000Z-stage-1-up-{who}",
                        started=1_700_000_000.0, pid=42)
        return TeamLock("stage-1", list(GATEWAYS), self, holder, root="/unused", clock=lambda: self.now, **kwargs)

    def lock_dir(self, node: str) -> Path:
        return self.dir(node) / "locks" / "stage-1"


@pytest.fixture
def nodes(tmp_path: Path) -> Nodes:
    return Nodes(tmp_path)


def test_taken_on_every_gateway_in_order_and_released(nodes: Nodes) -> None:
    lock = nodes.lock("engineer")
    lock.take()
    assert [g.node for g in lock.held] == ["truck-a-gw", "truck-b-gw"]
    assert [c for c in nodes.calls if c[1] == "take"] == [("truck-a-gw", "take"), ("truck-b-gw", "take")]
    for gateway in GATEWAYS:
        holder = json.loads((nodes.lock_dir(gateway.node) / "holder.json").read_text())
        assert (holder["host"], holder["user"], holder["run_id"]) == ("engineer-host", "engineer",
                                                                     "20270501T070000Z-stage-1-up-engineer")
        assert int((nodes.lock_dir(gateway.node) / "expires").read_text()) == nodes.now + 30
        assert oct(os.stat(nodes.dir(gateway.node) / "locks").st_mode & 0o777) == "0o700"
    assert lock.release() == []
    assert not nodes.lock_dir("truck-a-gw").exists() and not nodes.lock_dir("truck-b-gw").exists()


def test_a_second_operator_gets_exit_4_naming_holder_host_user_run_and_since(nodes: Nodes) -> None:
    nodes.lock("engineer").take()
    with pytest.raises(TruckctlError) as caught:
        nodes.lock("ci", "drift stage-1 --target lab").take()
    error = caught.value
    assert error.exit_code == ExitCode.LOCKED
    message = error.problems[0].message
    for part in ("engineer@engineer-host", "'up stage-1 --target lab'", "run 20270501T070000Z-stage-1-up-engineer",
                 "since 20", "truck-a-gw", "lease ends in 30 s"):
        assert part in message, message
    assert error.result["lock"]["user"] == "engineer"


def test_all_or_none_a_held_second_gateway_releases_the_first(nodes: Nodes) -> None:
    """CI holds only truck-b's gateway (say it raced in there first): the engineer takes truck-a's,
    meets CI on truck-b, and gives truck-a's back: nothing of the engineer's stays."""
    ci = nodes.lock("ci")
    ci.gateways = [GATEWAYS[1]]
    ci.take()
    with pytest.raises(TruckctlError) as caught:
        nodes.lock("engineer").take()
    assert caught.value.exit_code == ExitCode.LOCKED and caught.value.problems[0].location == "truck-b-gw"
    assert not nodes.lock_dir("truck-a-gw").exists()  # released
    assert json.loads((nodes.lock_dir("truck-b-gw") / "holder.json").read_text())["user"] == "ci"


def test_the_lease_expires_not_never_not_at_once(nodes: Nodes) -> None:
    nodes.lock("engineer").take()  # then the engineer's truckctl dies: nobody renews
    nodes.now += 29
    with pytest.raises(TruckctlError):
        nodes.lock("ci").take()  # not at once
    nodes.now += 2
    ci = nodes.lock("ci")
    ci.take()  # not never: after the lease, the next operator proceeds
    assert [(t.gateway, t.holder.user) for t in ci.took_over] == [("truck-a-gw", "engineer"),
                                                                 ("truck-b-gw", "engineer")]
    assert ci.as_dict()["took_over"][0] == {"gateway": "truck-a-gw", "holder": ci.took_over[0].holder.model_dump()}


def test_renewal_keeps_the_lock_past_its_first_lease(nodes: Nodes) -> None:
    lock = nodes.lock("engineer")
    lock.take()
    for _ in range(5):
        nodes.now += 20
        lock.renew_once()
    assert lock.lost is None
    with pytest.raises(TruckctlError):
        nodes.lock("ci").take()


def test_a_holder_that_lost_its_lock_is_told_and_stops(nodes: Nodes) -> None:
    told: list[str] = []
    lock = nodes.lock("engineer", on_lost=told.append)
    lock.take()
    nodes.now += 31  # the engineer's link was down for longer than the lease; CI took over
    nodes.lock("ci").take()
    lock.renew_once()
    assert len(told) == 1 and "taken away" in told[0] and "ci@ci-host" in told[0]
    with pytest.raises(TruckctlError) as caught:
        lock.check()
    assert caught.value.problems[0].code == "lock-lost"
    lock.release()  # a lost lock is not released from under its new holder
    assert json.loads((nodes.lock_dir("truck-a-gw") / "holder.json").read_text())["user"] == "ci"


def test_renewals_failing_for_a_whole_lease_lose_the_lock(nodes: Nodes) -> None:
    told: list[str] = []
    lock = nodes.lock("engineer", on_lost=told.append, lease=0)
    lock.take()
    nodes.down.add("truck-b-gw")
    lock.renew_once()
    assert told and "could not be renewed" in told[0] and "truck-b-gw" in told[0]


def test_an_unreachable_gateway_is_said_not_locked(nodes: Nodes) -> None:
    nodes.down.add("truck-b-gw")
    lock = nodes.lock("engineer")
    lock.take()
    assert lock.as_dict()["gateways"] == ["truck-a-gw"] and lock.as_dict()["unreachable"] == ["truck-b-gw"]


class Connecting(Nodes):
    """A transport that opens its connections to every gateway before the take (SSH masters in a real run)."""

    def connect(self, gateways: list[Gateway]) -> dict[str, str]:
        self.calls += [(g.node, "connect") for g in gateways]
        return {g.node: "ssh: connect to host: No route to host" for g in gateways if g.node in self.down}


def test_the_connections_are_opened_at_once_and_an_unreachable_gateway_is_not_tried_twice(tmp_path: Path) -> None:
    nodes = Connecting(tmp_path)
    nodes.down.add("truck-a-gw")
    lock = nodes.lock("engineer")
    lock.take()
    assert nodes.calls == [("truck-a-gw", "connect"), ("truck-b-gw", "connect"), ("truck-b-gw", "take")]
    assert lock.as_dict()["gateways"] == ["truck-b-gw"] and lock.as_dict()["unreachable"] == ["truck-a-gw"]
    assert lock.release() == []


def test_forced_release_removes_a_live_lock_and_is_recorded_on_the_gateways(nodes: Nodes) -> None:
    nodes.lock("engineer").take()
    record = RunRecord(run_id="20270501T071000Z-stage-1-unlock-ab12", stage="stage-1", command="unlock",
                       target="lab", status="ok", exit_code=0, started=1_700_000_100.0, duration_s=0.2,
                       failed_step=None, host="lead-host", user="lead")
    released = force_release("stage-1", list(GATEWAYS), nodes, record, root="/unused")
    assert [(r.gateway, r.state, r.reached, r.to_json()["holder"]["user"]) for r in released] == [
        ("truck-a-gw", "forced", True, "engineer"), ("truck-b-gw", "forced", True, "engineer")]
    assert list(released[0].to_json()) == ["gateway", "state", "error", "holder", "description"]
    nodes.lock("ci").take()  # free again
    runs, failed = remote_runs("stage-1", list(GATEWAYS), nodes, root="/unused")
    assert failed == {} and [(r.record.command, r.origin, r.seen_on) for r in runs] == [
        ("unlock", "lead@lead-host", ("truck-a-gw", "truck-b-gw"))]
    assert runs[0].to_json() == {**record.model_dump(), "seen_on": ["truck-a-gw", "truck-b-gw"]}
    assert SharedRun.from_json(runs[0].to_json()) == runs[0]


@pytest.mark.parametrize("content", [
    "not json at all", '{"host": "x\\u001b[2J", "user": "u", "command": "c", "started": 1}',
    '{"host": "' + "h" * 5000 + '"}', "\x00\xff" * 100, '{"host": "a", "user": "b", "command": "$(reboot)", '
    '"started": 1e300}'])
def test_malicious_or_oversized_lock_content_is_data_never_code(nodes: Nodes, content: str) -> None:
    directory = nodes.lock_dir("truck-a-gw")
    directory.mkdir(parents=True)
    (directory / "holder.json").write_text(content, errors="surrogateescape")
    (directory / "token").write_text("someone-else\n")
    (directory / "expires").write_text("$(touch /tmp/pwned)" if "reboot" in content else str(nodes.now + 100))
    state = read_locks("stage-1", [GATEWAYS[0]], nodes, root="/unused")[0]
    if "reboot" in content:  # a non-number expiry proves nothing alive: the lock is taken over
        assert state.state == "expired"
        nodes.lock("ci").take()
        assert not Path("/tmp/pwned").exists()
        return
    assert state.state == "held" and state.to_json()["holder"]["command"] == "(unreadable lock record)"
    with pytest.raises(TruckctlError) as caught:
        nodes.lock("ci").take()
    assert "unreadable lock record" in caught.value.problems[0].message
    assert all(c.isprintable() for c in caught.value.problems[0].message)


def test_history_is_bounded_in_count_and_size_and_forged_records_are_left_out(nodes: Nodes) -> None:
    gateway = [GATEWAYS[0]]
    runs_dir = nodes.dir("truck-a-gw") / "runs" / "stage-1"

    def record(n: int) -> dict[str, Any]:
        return {"run_id": f"20270501T07{n // 60:02d}{n % 60:02d}Z-stage-1-up-{n:04x}", "stage": "stage-1",
                "command": "up", "target": "lab", "status": "ok", "exit_code": 0, "started": 1.0 + n,
                "duration_s": 1.0, "failed_step": None, "host": "h", "user": "u"}
    assert record_run(gateway, nodes, "stage-1", RunRecord(**record(0)), root="/unused") == []
    for n in range(1, KEEP_RUNS + 3):  # as if recorded one by one, then two more through the node
        (runs_dir / f"{record(n)['run_id']}.json").write_text(json.dumps(record(n)) + "\n")
    for n in (KEEP_RUNS + 3, KEEP_RUNS + 4):
        assert record_run(gateway, nodes, "stage-1", RunRecord(**record(n)), root="/unused") == []
    assert len(list(runs_dir.iterdir())) == KEEP_RUNS
    assert not (runs_dir / f"{record(0)['run_id']}.json").exists()  # the oldest went
    (runs_dir / "zzzz.json").write_text('{"run_id": "x", "stage": "stage-1", "status": "\\u001b]0;pwn"}\n')
    (runs_dir / "zzzy.json").write_text("A" * 100_000)
    runs, _ = remote_runs("stage-1", gateway, nodes, root="/unused")
    assert len(runs) == KEEP_RUNS - 2 and all(r.record.command == "up" for r in runs)  # newest 50 names, 2 forged


def test_the_node_refuses_arguments_it_does_not_expect(nodes: Nodes) -> None:
    lock = nodes.lock("engineer")
    lock.stage = "stage-1; rm -rf /"
    with pytest.raises(TruckctlError) as caught:
        lock.take()
    assert "bad-stage" in caught.value.problems[0].message
    assert "'stage-1; rm -rf /'" in node_command("take", "stage-1; rm -rf /", "ab", 30)  # quoted, one word


def test_an_answer_too_long_is_cut_not_read_whole() -> None:
    code, text = bounded_run(["sh", "-c", "yes | head -c 10000000"], b"", limit=100_000)
    assert (code, text) == (1, "answer too long")


def test_operators_racing_for_the_lock_one_wins_every_gateway_the_others_hold_nothing(nodes: Nodes) -> None:
    import threading

    contenders = [nodes.lock(f"op{n}") for n in range(4)]
    outcomes: dict[str, str] = {}
    gate = threading.Barrier(len(contenders))

    def race(lock: TeamLock) -> None:
        gate.wait()
        try:
            lock.take()
            outcomes[lock.holder.user] = "won"
        except TruckctlError as exc:
            outcomes[lock.holder.user] = "locked" if exc.exit_code == ExitCode.LOCKED else str(exc)

    threads = [threading.Thread(target=race, args=(lock,)) for lock in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["locked", "locked", "locked", "won"], outcomes
    winner = next(user for user, outcome in outcomes.items() if outcome == "won")
    for gateway in GATEWAYS:
        assert json.loads((nodes.lock_dir(gateway.node) / "holder.json").read_text())["user"] == winner
    assert [lock.held for lock in contenders if lock.holder.user != winner] == [[], [], []]


def test_a_lock_read_is_a_typed_record_whose_json_keeps_the_envelopes_keys(nodes: Nodes) -> None:
    nodes.lock("engineer").take()
    nodes.down.add("truck-b-gw")
    held, unreachable = read_locks("stage-1", list(GATEWAYS), nodes, root="/unused")
    assert (held.state, held.expires_in_s, held.error) == ("held", 30, None) and held.holder is not None
    assert held.to_json() == {"gateway": "truck-a-gw", "state": "held", "expires_in_s": 30,
                              "holder": held.holder.model_dump(), "description": held.holder.describe(), "error": None}
    assert (unreachable.state, unreachable.holder, unreachable.description) == ("unreachable", None, None)
    assert unreachable.to_json()["error"] == "ssh: connect to host: No route to host"


@pytest.mark.parametrize("held", [False, True])
def test_the_team_read_says_what_read_and_history_say(nodes: Nodes, held: bool) -> None:
    for number in (1, 2):
        record_run(list(GATEWAYS), nodes, "stage-1", RunRecord(
            run_id=f"20270501T07000{number}Z-stage-1-up-ab1{number}", stage="stage-1", command="up", target="lab",
            status="ok", exit_code=0, started=1_700_000_000.0 + number, duration_s=1.0, failed_step=None,
            host="h", user="u"), root="/unused")
    if held:
        nodes.lock("engineer").take()
    nodes.down.add("truck-b-gw")
    team = node_argv("team", "stage-1", "-", LEASE_S, "/unused")
    locks, runs, failed = team_of("stage-1", [(g, *nodes(g, team, b"")) for g in GATEWAYS])
    separate_runs, separate_failed = remote_runs("stage-1", list(GATEWAYS), nodes, root="/unused")
    assert [lock.to_json() for lock in locks] == [
        lock.to_json() for lock in read_locks("stage-1", list(GATEWAYS), nodes, root="/unused")]
    assert (runs, failed) == (separate_runs, separate_failed)
    assert [r.record.run_id for r in runs] == ["20270501T070001Z-stage-1-up-ab11", "20270501T070002Z-stage-1-up-ab12"]
    assert locks[0].state == ("held" if held else "free") and locks[1].state == "unreachable"
    assert failed == {"truck-b-gw": "ssh: connect to host: No route to host"}


@pytest.mark.parametrize(("answer", "lock_state"), [
    ("", "error"), ("held 1 2", "held"), ("garbage\n{}\nmore garbage", "error"), ("error bad-stage\n", "error")])
def test_a_malformed_team_answer_is_an_error_for_both_never_an_exception(answer: str, lock_state: str) -> None:
    """A lock line alone (the history missing) is still that lock; the missing history is the gateway's error."""
    locks, runs, failed = team_of("stage-1", [(GATEWAYS[0], 0, answer)])
    assert locks[0].state == lock_state and runs == [] and list(failed) == ["truck-a-gw"]
    assert failed["truck-a-gw"].startswith(("unexpected answer", "the node refused"))
