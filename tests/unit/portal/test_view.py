"""What the page shows, assembled from status: problems on the right truck, the topology's colours,
the plots' bounded history, and one poll for every viewer (the hub's fan-out)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from tests.unit.portal.support import FakeLab, stage1
from truckctl.lifecycle.status_model import NodeRow, StreamView
from truckctl.portal import view
from truckctl.portal.hub import MAX_VIEWERS, Hub


def snapshot(lab: FakeLab, history: view.History | None = None) -> dict[str, Any]:
    return view.snapshot(lab.project, "stage-1", "lab", lab.measure, history or view.History(2.0))


def test_healthy_stage_has_no_problems_and_a_green_topology(lab: FakeLab) -> None:
    snap = snapshot(lab)
    assert snap["problems"] == [] and snap["errors"] == [] and snap["exit_code"] == 0
    topo = snap["topology"]
    assert [t["name"] for t in topo["trucks"]] == ["truck-a", "truck-b"]
    assert all(t["state"] == "ok" and t["uplink"]["state"] == "ok" for t in topo["trucks"])
    gateway = topo["trucks"][0]["nodes"][0]
    assert gateway == {"name": "truck-a-gw", "role": "gateway", "address": "10.31.1.11", "gateway": True,
                       "state": "ok", "heartbeat": "ok"}
    assert topo["cloud"]["state"] == "ok" and topo["trucks"][0]["lan"] == "10.31.1.0/24"


def test_a_silent_truck_shows_its_problems_on_that_truck_only(lab: FakeLab) -> None:
    lab.pulled.add("truck-a")
    snap = snapshot(lab)
    trucks = {p["truck"] for p in snap["problems"]}
    assert trucks == {"truck-a"}
    kinds = sorted(p["kind"] for p in snap["problems"])
    # one incident for the silent truck (its four stale streams under it), and the cloud side's alarms
    assert kinds == ["alarm"] * 4 + ["incident"]
    (incident,) = snap["incidents"]["open"]
    assert (incident["kind"], incident["truck"], incident["hop"]) == ("uplink-down", "truck-a", "truck-a-gw→uplink")
    assert {s["node"] for s in incident["symptoms"]} == {None, "truck-a-gw", "truck-a-hv1", "truck-a-hv2"}
    assert [p["incident"] for p in snap["problems"] if p["kind"] == "incident"] == [incident["id"]]
    # every unhealthy line of status is there, word for word (the problems panel is status's own list)
    assert set(snap["status"]["unhealthy"]) <= {p["text"] for p in snap["problems"]}
    topo = {t["name"]: t for t in snap["topology"]["trucks"]}
    assert topo["truck-a"]["state"] == "down" and topo["truck-a"]["uplink"]["state"] == "down"
    assert topo["truck-b"]["state"] == "ok"


def test_node_states_for_the_picture() -> None:
    row = NodeRow("truck-a-gw", "gateway", "10.31.1.11", True, "ok", {"ssh": "active"}, StreamView("ok"))
    assert view._node_state(row) == "ok"
    assert view._node_state(replace(row, services={"ssh": "failed"})) == "degraded"
    assert view._node_state(replace(row, heartbeat=StreamView("stale"))) == "degraded"
    assert view._node_state(replace(row, reachable=False, detail="unreachable")) == "down"
    assert view._node_state(replace(row, reachable=False, detail="not probed")) == "unknown"
    assert view._node_state(None) == "unknown"


def test_rates_come_from_count_deltas_and_the_history_is_bounded(lab: FakeLab) -> None:
    history = view.History(2.0)
    first = history.add(1000.0, lab.measure())
    assert first["trucks"]["truck-a"] == {"telemetry": None, "heartbeat": None}  # no earlier count yet
    second = history.add(1002.0, lab.measure())
    assert second["trucks"]["truck-a"]["telemetry"] == 5.0  # +10 messages in 2 s
    assert second["trucks"]["truck-a"]["heartbeat"] == 3.0  # 3 nodes, +2 each, in 2 s
    assert history.samples.maxlen is not None and history.samples.maxlen * 2.0 >= view.HISTORY_S
    for i in range(5000):
        history.add(1004.0 + 2 * i, None)
    assert len(history.samples) == history.samples.maxlen
    assert view._rate(3, 10, 2.0) is None  # a restarted stand-in counts from zero again: a gap, not a dip


def test_drift_and_plan_views_read_the_journal(lab: FakeLab) -> None:
    from truckctl.errors import ExitCode
    from truckctl.lifecycle.journal import Journal

    up = Journal(lab.project, "stage-1", "up", "lab", run_id="20270508T070000Z-stage-1-up-0001")
    up.finish(ExitCode.OK, [], {"cloud": {"mode": "offline plan (lab target)", "resources": 42,
                                          "by_component": {"ingest": 9}, "policy_violations": 0,
                                          "policy_rules": ["a", "b"]}})
    drift = Journal(lab.project, "stage-1", "drift", "lab", run_id="20270508T080000Z-stage-1-drift-0001")
    drift.finish(ExitCode.CHANGES, [], {"drift": True, "fixed": False, "items": [
        {"tier": "truck", "node": "truck-a-gw", "item": "sshd_config", "diff": "- a\n+ b"}]})
    snap = snapshot(lab)
    assert snap["drift"]["drift"] is True and snap["drift"]["items"] == [
        {"tier": "truck", "node": "truck-a-gw", "item": "sshd_config"}]
    assert snap["cloud"]["plan"]["resources"] == 42 and snap["cloud"]["plan"]["run_id"] == up.run_id
    assert [r["run_id"] for r in snap["runs"]] == [drift.run_id, up.run_id]


def test_stage_of_the_day(lab: FakeLab) -> None:
    assert view.stage_of_the_day(lab.project, "2027-05-08") == stage1(lab.project).name
    assert view.stage_of_the_day(lab.project, "1999-01-01") is None


def test_one_poll_serves_every_viewer() -> None:
    polls: list[int] = []

    def poll() -> dict[str, Any]:
        polls.append(1)
        return {"n": len(polls)}

    async def scenario() -> tuple[int, list[bytes]]:
        hub = Hub(poll, interval_s=0.05)
        queues = [hub.subscribe() for _ in range(50)]
        task = asyncio.create_task(hub.run())
        while hub.polls < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        latest = [q.get_nowait() for q in queues if q is not None]
        return hub.polls, latest

    count, latest = asyncio.run(scenario())
    assert len(polls) == count  # one measure per poll, whatever the number of viewers
    assert len(latest) == 50 and len(set(latest)) == 1  # everyone holds the newest snapshot, and only that
    assert latest[0].startswith(b"event: snapshot\ndata: {")


def test_viewers_are_bounded() -> None:
    hub = Hub(lambda: {}, 1.0)
    queues = [hub.subscribe() for _ in range(MAX_VIEWERS)]
    assert all(queues) and hub.subscribe() is None
    for queue in queues:
        assert queue is not None
        hub.unsubscribe(queue)
    assert hub.viewers == 0


def test_a_failed_measure_logs_its_type_only(lab: FakeLab) -> None:
    """An exception's text may quote what it failed on (a URL, an answer): the log gets its type only."""
    lines: list[str] = []

    def broken() -> dict[str, Any]:
        raise RuntimeError("https://hooks.example/planted-9d2b1e answered 500")

    snap = view.snapshot(lab.project, "stage-1", "lab", broken, view.History(2.0), lines.append)
    assert lines == ["status failed: RuntimeError"]
    assert snap["errors"][0]["code"] == "internal" and "planted" not in str(snap)
