"""Result parsing from canned ansible-runner events: stats, changes with diffs, failures, progress."""

from __future__ import annotations

from typing import Any

from truckctl.truck.events import Change, EventCollector, HostEvent, HostStats, render_diff


def ev(name: str, **data: Any) -> dict[str, Any]:
    return {"event": name, "event_data": data}


DIFF = {"before_header": "/etc/chrony/chrony.conf", "after_header": "/etc/chrony/chrony.conf",
        "before": "server a\n", "after": "server b\n"}

EVENTS = [
    ev("playbook_on_start"),
    ev("runner_on_start", host="gw", task="Configure chrony"),
    ev("runner_on_ok", host="gw", task="Configure chrony", res={"changed": True, "diff": [DIFF]}),
    ev("runner_on_start", host="hv1", task="Configure chrony"),
    ev("runner_on_ok", host="hv1", task="Configure chrony", res={"changed": False}),
    ev("runner_on_ok", host="hv1", task="Create users", res={"changed": True, "results": [
        {"changed": True, "diff": {"before": {"state": "absent"}, "after": {"state": "directory"},
                                   "before_header": "/home/ops", "after_header": "/home/ops"}},
        {"changed": False, "diff": {"before": "x", "after": "x"}}]}),
    ev("runner_on_failed", host="hv1", task="Probe", ignore_errors=True, res={"msg": "expected"}),
    ev("runner_on_failed", host="hv2", task="Run chrony", res={"msg": "cannot start chrony: boom\nmore"}),
    ev("runner_on_unreachable", host="gw2", task="Gathering", res={"msg": "ssh: connect timed out"}),
    ev("runner_on_skipped", host="hv2", task="Gateway only"),
    ev("playbook_on_stats", ok={"gw": 3, "hv1": 4, "hv2": 1}, changed={"gw": 1, "hv1": 1},
       failures={"hv2": 1}, dark={"gw2": 1}, skipped={"hv2": 1}),
]


def collect() -> tuple[EventCollector, list[HostEvent]]:
    seen: list[HostEvent] = []
    collector = EventCollector(seen.append)
    for event in EVENTS:
        assert collector(event) is True  # events stay in the artifacts
    return collector, seen


def test_stats_come_from_the_recap() -> None:
    collector, _ = collect()
    assert collector.recap_seen
    assert collector.hosts == {
        "gw": HostStats(ok=3, changed=1), "hv1": HostStats(ok=4, changed=1),
        "hv2": HostStats(ok=1, failed=1, skipped=1), "gw2": HostStats(unreachable=1)}
    assert [collector.hosts[h].state for h in ("gw", "hv2", "gw2")] == ["changed", "failed", "unreachable"]


def test_changes_carry_task_host_and_unified_diff() -> None:
    collector, _ = collect()
    assert [(c.host, c.task) for c in collector.changes] == [("gw", "Configure chrony"), ("hv1", "Create users")]
    chrony = collector.changes[0].diff
    assert "--- /etc/chrony/chrony.conf" in chrony and "-server a" in chrony and "+server b" in chrony
    users = collector.changes[1].diff
    assert "-state: absent" in users and "+state: directory" in users
    assert users.count("--- /home/ops") == 1  # the unchanged loop item leaves no diff


def test_failures_and_unreachables_are_reported_ignored_errors_are_not() -> None:
    collector, _ = collect()
    assert [(f.host, f.status, f.task, f.message) for f in collector.failures] == [
        ("hv2", "failed", "Run chrony", "cannot start chrony: boom"),
        ("gw2", "unreachable", "Gathering", "ssh: connect timed out")]


def test_progress_callbacks_follow_every_host_step() -> None:
    _, seen = collect()
    assert [(e.host, e.status) for e in seen] == [
        ("gw", "started"), ("gw", "changed"), ("hv1", "started"), ("hv1", "ok"), ("hv1", "changed"),
        ("hv1", "ok"), ("hv2", "failed"), ("gw2", "unreachable"), ("hv2", "skipped")]


def test_a_handler_held_back_is_known_by_the_fact_it_sets_not_counted_as_a_change() -> None:
    """A skipped event does not say why (ansible-runner sends no result with it): the held handler's fact does."""
    collector = EventCollector()
    for event in (ev("runner_on_skipped", host="gw", task="Restart mosquitto"),
                  ev("runner_on_ok", host="gw", task="Say that the mosquitto restart is held back",
                     res={"changed": False, "ansible_facts": {"telemetry_held_back": "Restart mosquitto"}}),
                  ev("runner_on_ok", host="gw", task="Another fact", res={"ansible_facts": {"telemetry_port": 1}})):
        collector(event)
    assert collector.held == [Change("gw", "Restart mosquitto", action="set_fact", handler=True)]
    assert collector.changes == []


def test_prepared_diffs_are_passed_through() -> None:
    assert render_diff({"prepared": "+ new line"}) == "+ new line"
    assert render_diff([]) == ""


def test_a_module_drift_item_keeps_its_fields_and_gets_its_diff_as_unified_text() -> None:
    """truck_files gives each file's diff in Ansible's before/after form; truck_live_state gives text."""
    file_item = {"kind": "file", "item": "/etc/chrony/chrony.conf", "expected": "as the role renders it",
                 "found": "differs", "diff": DIFF}
    live_item = {"kind": "sshd", "item": "passwordauthentication", "expected": "no", "found": "yes", "diff": "-no\n"}
    collector = EventCollector(lambda event: None)
    collector(ev("runner_on_ok", host="gw", task="Configure chrony", resolved_action="truck_files",
                 res={"changed": True, "drift": [file_item, "not an item"]}))
    collector(ev("runner_on_ok", host="gw", task="Compare", resolved_action="truck_live_state",
                 res={"changed": True, "drift": [live_item]}))
    (rendered,), (live,) = (change.items for change in collector.changes)
    assert {k: v for k, v in rendered.items() if k != "diff"} == {k: v for k, v in file_item.items() if k != "diff"}
    assert rendered["diff"] == render_diff(DIFF) and "+server b" in rendered["diff"]
    assert live == live_item


def test_a_no_log_task_that_changed_is_a_change_though_its_result_is_censored() -> None:
    """ansible-runner replaces a no_log result (a secret file's task) with {"censored": ...}, `changed`
    included: a world-readable key put back, or found in check mode, must still count as a change."""
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified"}
    collector = EventCollector(lambda event: None)
    for host, line in (("gw", "changed: [gw]"), ("gw2", "ok: [gw2]")):
        collector({"event": "runner_on_ok", "stdout": f"\r\nTASK [telemetry : Install the truck's private key] ***\r\n"
                   f"{line}", "event_data": {"host": host, "task": "Install the truck's private key",
                                             "resolved_action": "truck_secret_file", "res": censored}})
    assert [(c.host, c.task, c.action, c.diff, c.items) for c in collector.changes] == [
        ("gw", "Install the truck's private key", "truck_secret_file", "", ())]
