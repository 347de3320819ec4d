"""The benchmark harness (bench/): its logic, cheaply, with a fake clock and no timing assertions.

Interleaving order, warm-up, sub-timings, before/after framing (after always runs), verdicts,
curves, the report and the raw results; the throwaway projects the lab benchmarks use (generated
configurations validate, networks stay clear of everyone else's) and the stock-Ansible playbook.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from truckctl.config.loader import load_stage, load_stages
from truckctl.project import Project

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import projects  # noqa: E402
from harness import Benchmark, Skip, Step, curve_verdict, schedule  # noqa: E402


class FakeClock:
    """Each call advances by the next duration of a step, so samples are known in advance."""

    def __init__(self) -> None:
        self.now = 0.0
        self.next = 1.0

    def __call__(self) -> float:
        self.now += self.next / 2  # two reads per sample: start and end
        return self.now


def recorder(log: list[str], name: str, clock: FakeClock | None = None, seconds: float = 1.0) -> Step:
    def call() -> None:
        log.append(name)
        if clock is not None:
            clock.next = seconds

    return Step(name, call=call)


def no_load() -> tuple[float, float, float]:
    return (0.5, 0.4, 0.3)


# ---- schedule and measure ------------------------------------------------------------------------------

def test_schedule_warms_up_then_interleaves() -> None:
    a, b = Step("a"), Step("b")
    order = [(timed, step.label) for timed, step in schedule([a, b], repeats=3, warmup=1)]
    assert order == [(False, "a"), (False, "b"),
                     (True, "a"), (True, "b"), (True, "a"), (True, "b"), (True, "a"), (True, "b")]


def test_schedule_without_warmup_and_single_step() -> None:
    assert [t for t, _ in schedule([Step("a")], repeats=2, warmup=0)] == [True, True]


def test_measure_runs_interleaved_and_records_only_timed_samples() -> None:
    log: list[str] = []
    frame: list[str] = []
    bench = Benchmark("x", "x", [recorder(log, "a"), recorder(log, "b")],
                      before=lambda: frame.append("before"), after=lambda: frame.append("after"))
    bench.measure(5, clock=FakeClock(), loadavg=no_load, idle_probe_s=0)
    assert log == ["a", "b"] * 6  # warm-up + 5 rounds, A B A B ...
    assert {k: len(v) for k, v in bench.samples.items()} == {"a": 5, "b": 5}
    assert frame == ["before", "after"]
    assert bench.load_before == bench.load_after == (0.5, 0.4, 0.3)
    assert bench.complete


def test_cpu_and_pressure_are_recorded_per_timed_sample() -> None:
    external = iter(float(n) for n in range(100))  # the probe's cumulative CPU: +1 s between reads
    waited = iter([10.0, 12.0])
    bench = Benchmark("x", "x", [Step("a", call=lambda: None, cpu_probe=lambda: next(external))])
    bench.measure(2, clock=FakeClock(), loadavg=no_load, pressure=lambda: next(waited), idle_probe_s=0)
    assert [round(c) for c in bench.cpu["a"]] == [1, 1]  # (our children used ~0 s here)
    assert bench.pressure is not None and bench.pressure >= 0


def test_idle_pressure_is_the_share_of_the_probe_something_else_waited_for_a_cpu() -> None:
    slept: list[float] = []
    waited = iter([100.0, 101.5])  # 1.5 s of waiting over a 3 s probe
    assert harness.idle_pressure(3.0, lambda: next(waited), slept.append) == 50.0
    assert slept == [3.0]
    assert harness.idle_pressure(3.0, lambda: None, slept.append) is None


def test_a_busy_machine_is_judged_by_idle_pressure_not_by_the_load_average() -> None:
    miss = measured({"plan": [2.5, 2.6, 2.4]}, goals={"plan": 2.0})
    miss.load_before, miss.idle = (9.0, 5.0, 4.0), 2.0  # high load left by our previous lab benchmark
    assert "busy" not in harness.report([miss], 5, "m").split("## Goals missed", 1)[1]


def test_setup_runs_before_every_sample_untimed() -> None:
    log: list[str] = []
    step = recorder(log, "a")
    step.setup = lambda: log.append("setup")
    Benchmark("x", "x", [step]).measure(2, clock=FakeClock(), loadavg=no_load, idle_probe_s=0)
    assert log == ["setup", "a"] * 3


def test_parts_recorded_during_warmup_are_dropped() -> None:
    bench = Benchmark("x", "x", [])
    bench.steps = [Step("a", call=lambda: bench.record("inner", 0.25))]
    bench.measure(3, clock=FakeClock(), loadavg=no_load, idle_probe_s=0)
    assert bench.parts == {"inner": [0.25, 0.25, 0.25]}


def test_after_runs_even_when_before_fails_and_the_error_is_kept() -> None:
    frame: list[str] = []

    def before() -> None:
        raise RuntimeError("lab up failed")

    bench = Benchmark("x", "x", [Step("a", call=lambda: frame.append("a"))], before=before,
                      after=lambda: frame.append("after"))
    bench.measure(3, clock=FakeClock(), loadavg=no_load, idle_probe_s=0)
    assert frame == ["after"]
    assert bench.error == "RuntimeError: lab up failed"
    text, met = bench.verdict()
    assert met is False and "lab up failed" in text


def test_skip_is_not_a_failure() -> None:
    def before() -> None:
        raise Skip("no headroom")

    bench = Benchmark("x", "x", [Step("a", call=lambda: None)], before=before)
    bench.measure(3, clock=FakeClock(), loadavg=no_load, idle_probe_s=0)
    assert bench.error is None and bench.skipped == "no headroom"
    assert bench.verdict() == ("skipped: no headroom", None)


def test_keyboard_interrupt_still_runs_after_and_propagates() -> None:
    frame: list[str] = []

    def step() -> None:
        raise KeyboardInterrupt

    bench = Benchmark("x", "x", [Step("a", call=step)], after=lambda: frame.append("after"))
    with pytest.raises(KeyboardInterrupt):
        bench.measure(3, clock=FakeClock(), loadavg=no_load, idle_probe_s=0)
    assert frame == ["after"]


# ---- verdicts --------------------------------------------------------------------------------------------

def measured(samples: dict[str, list[float]], **kwargs: object) -> Benchmark:
    goals = kwargs.pop("goals", {})
    assert isinstance(goals, dict)
    bench = Benchmark("b", "what", [Step(label, goal_s=goals.get(label)) for label in samples], **kwargs)
    bench.samples = samples
    bench.load_before = bench.load_after = (0.1, 0.1, 0.1)
    return bench


def test_step_goal_uses_the_median() -> None:
    bench = measured({"a": [0.1, 0.2, 9.0]}, goals={"a": 0.25})
    assert bench.verdict()[1] is True
    bench = measured({"a": [0.3, 0.3, 0.1]}, goals={"a": 0.25})
    assert bench.verdict()[1] is False


def test_ratio_goal_is_first_over_second() -> None:
    fast = measured({"truckctl": [10, 11, 12], "stock": [30, 31, 32]}, goal_ratio=0.5)
    text, met = fast.verdict()
    assert met is True and "ratio 0.35" in text and "2.8x faster" in text
    slow = measured({"truckctl": [20, 20, 20], "stock": [30, 30, 30]}, goal_ratio=0.5)
    assert slow.verdict()[1] is False


def test_no_goal_means_no_verdict() -> None:
    bench = measured({"a": [1.0, 2.0, 3.0]})
    assert bench.verdict() == ("", None)
    both = measured({"a": [1.0], "b": [2.0]})
    text, met = both.verdict()
    assert met is None and "no goal" in text


def test_all_goals_must_hold() -> None:
    bench = measured({"a": [1.0], "b": [3.0]}, goals={"a": 2.0, "b": 2.0})
    assert bench.verdict()[1] is False


def test_curve_verdict_sub_linear_and_not() -> None:
    text, met = curve_verdict([(3, 10.0), (6, 14.0), (12, 22.0)])
    assert met is True and "sub-linear" in text and "+1.33 s per added unit" in text
    text, met = curve_verdict([(3, 10.0), (6, 21.0)])
    assert met is False and "NOT sub-linear" in text
    assert curve_verdict([(3, 10.0)])[1] is None


# ---- the report and raw results ------------------------------------------------------------------------

def test_report_lists_figures_loads_curve_and_misses() -> None:
    ok = measured({"truckctl --help": [0.1, 0.12, 0.11], "bare": [0.2, 0.2, 0.2]}, goal_ratio=1.5,
                  goals={"truckctl --help": 0.15})
    ok.name = "cli-help"
    miss = measured({"plan": [2.5, 2.6, 2.4]}, goals={"plan": 2.0}, miss_reason="imports dominate.")
    miss.name, miss.load_before, miss.idle = "offline-plan-one", (9.0, 5.0, 4.0), 35.0
    points = []
    for nodes, seconds in ((3, 10.0), (6, 14.0), (12, 30.0)):
        point = measured({f"re-run {nodes}": [seconds] * 3}, series="scaling", x=nodes)
        point.name = f"scaling-{nodes}"
        points.append(point)
    failed = Benchmark("drift", "drift", [Step("drift", goal_s=20)])
    failed.error = "BenchError: lab up failed"
    text = harness.report([ok, miss, *points, failed], 5, "test machine", {"scaling": "curve goal"}, ["- a note"])
    assert "Machine: test machine" in text and ".venv/bin/python bench/run.py" in text
    assert "| truckctl --help | 0.11 | 0.10 | 0.12 | 3 |  | <= 0.15 s |" in text
    assert "0.10/0.10/0.10 -> 0.10/0.10/0.10; ? / ?" in text and "CPU pressure" in text
    assert "## Curve: scaling" in text and "curve goal" in text and "NOT sub-linear" in text
    missed = text.split("## Goals missed", 1)[1]
    assert "`offline-plan-one`: plan: 2.50 s, goal <= 2 s. imports dominate." in missed
    assert "busy with other work (CPU pressure 35% before it started" in missed
    assert "`scaling (curve)`" in missed and "`drift`: failed: BenchError: lab up failed" in missed
    assert "`cli-help`" not in missed
    assert "- a note" in text


def test_report_with_every_goal_met() -> None:
    bench = measured({"a": [0.1, 0.1, 0.1]}, goals={"a": 1.0})
    assert "None: every goal measured in this report is met." in harness.report([bench], 5, "m")


def test_results_round_trip_and_merge(tmp_path: Path) -> None:
    old = measured({"a": [1.0, 2.0]}, goals={"a": 5.0})
    old.name, old.notes, old.parts = "old", ["n"], {"inner": [0.5]}
    stale = measured({"a": [9.0]})
    stale.name = "new"
    path = tmp_path / "results.json"
    harness.save_results([old, stale], path)
    loaded = harness.load_results(path)
    assert [b.name for b in loaded] == ["old", "new"]
    assert loaded[0].samples == {"a": [1.0, 2.0]} and loaded[0].parts == {"inner": [0.5]}
    assert loaded[0].verdict() == old.verdict() and loaded[0].load_before == (0.1, 0.1, 0.1)
    fresh = measured({"a": [3.0]})
    fresh.name = "new"
    merged = harness.merge(loaded, [fresh], ["new", "old"])
    assert [b.name for b in merged] == ["new", "old"] and merged[0].samples == {"a": [3.0]}
    assert harness.load_results(tmp_path / "missing.json") == []


def test_a_rewritten_report_states_the_repeats_the_figures_were_measured_with() -> None:
    three, five = measured({"a": [1.0] * 3, "b": [2.0] * 3}), measured({"a": [1.0] * 5})
    assert harness.recorded_repeats([three, measured({"a": [1.0] * 3}), five]) == 3
    assert harness.recorded_repeats([measured({})]) is None


# ---- throwaway projects and the stock baseline --------------------------------------------------------

@pytest.fixture
def tmp_projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    for project in list(projects._open):  # no lab was built: just forget them
        projects._open.remove(project)


RESERVED = ("10.31.", "10.32.", "10.41.", "10.42.", "10.51.", "10.52.", "10.61.", "10.62.", "100.64.10.",
            "100.64.20.", "100.64.30.", "100.64.40.")


@pytest.mark.parametrize(("trucks", "per_truck"), [(1, 3), (2, 3), (4, 3), (3, 4), (16, 4)])
def test_scaled_projects_validate_with_their_own_networks(tmp_projects: Path, trucks: int, per_truck: int) -> None:
    project = projects.scaled(f"t{trucks}", trucks, 75, 55, per_truck)
    assert project.nodes == per_truck * trucks and project.root.parent == tmp_projects
    stage = load_stage(Project(project.root), "stage-1")
    assert len(stage.trucks) == trucks and sum(len(t.nodes) for t in stage.trucks) == per_truck * trucks
    assert all(len(t.nodes) == per_truck and sum(stage.roles[n.role].gateway for n in t.nodes) == 1
               for t in stage.trucks)
    networks = [str(t.lan) for t in stage.trucks] + [str(stage.lab.uplink_cidr)]
    assert len(set(networks)) == len(networks)
    assert not any(n.startswith(RESERVED) for n in networks)
    assert (project.root / "playbooks").resolve() == BENCH.parent / "playbooks"


def test_stage1_clone_moves_every_network(tmp_projects: Path) -> None:
    project = projects.stage1_clone("clone", 71, 51)
    stages = load_stages(Project(project.root), None)
    assert len(stages) == 21
    text = "".join(p.read_text() for p in (project.root / "inventory").rglob("*.yaml"))
    assert not any(prefix in text for prefix in ("10.31.", "10.32.", "100.64.10."))
    assert "10.71.1.11" in text and "100.64.51.0/24" in text


def test_close_removes_a_project_without_lab(tmp_projects: Path) -> None:
    project = projects.scaled("gone", 1, 73, 53)
    project.close()
    assert not project.root.exists() and project not in projects._open


def test_stock_playbook_turns_fact_gathering_back_on_in_the_first_play_only() -> None:
    import yaml

    site = (BENCH.parent / "playbooks" / "site.yml").read_text()
    stock = projects.stock_playbook(site)
    plays = yaml.safe_load(stock)
    assert [play["gather_facts"] for play in plays] == [True] + [False] * (len(plays) - 1)
    assert stock.replace("gather_facts: true", "gather_facts: false") == site
    with pytest.raises(projects.BenchError):
        projects.stock_playbook("- hosts: all\n  roles: []\n")


def test_module_cost_reads_the_module_runs_of_a_converge_and_spells_them_per_path_and_unit(tmp_path: Path) -> None:
    import json

    def event(counter: int, host: str, action: str, args: dict[str, object], kind: str = "runner_on_ok") -> None:
        (tmp_path / f"{counter}-x.json").write_text(json.dumps({"event": kind, "counter": counter, "event_data": {
            "host": host, "task_action": action, "res": {"invocation": {"module_args": args}}}}))

    event(2, "gw", "truck_files", {"dirs": [{"path": "/etc/a", "mode": "0750"}], "files": [
        {"path": "/etc/a/x.conf", "content": "{{ not a template }}\n", "validate": "check %s"},
        {"path": "/etc/a/old", "state": "absent"}, {"path": "/etc/a/link", "link_to": "x.conf"}],
        "prune": [{"path": "/etc/a", "patterns": ["*.conf"]}], "services": ["chrony"]})
    event(10, "gw", "truck_files", {"files": [], "services": ["nftables", "ssh"]})
    event(3, "gw", "ansible.builtin.command", {"argv": ["true"]})
    event(4, "gw", "truck_files", {"files": []}, kind="runner_on_failed")
    calls = projects.module_calls(tmp_path)
    assert list(calls) == ["gw"] and len(calls["gw"]) == 2
    work = projects.module_cost_vars(calls["gw"])
    assert work["dirs"] == [{"path": "/etc/a", "mode": "0750", "owner": "root", "group": "root"}]
    assert work["copies"] == [{"path": "/etc/a/x.conf", "content": "{{ not a template }}\n", "validate": "check %s",
                               "owner": "root", "group": "root", "mode": "0644"}]
    assert [f["path"] for f in work["links"]] == ["/etc/a/link"]
    assert [f["path"] for f in work["absent"]] == ["/etc/a/old"]
    assert work["prunes"] == [{"path": "/etc/a", "patterns": ["*.conf"], "wanted": ["/etc/a/x.conf", "/etc/a/link"]}]
    assert work["units"] == ["chrony", "nftables", "ssh"]
    assert work["file_calls"][0]["prune"] and work["file_calls"][1]["services"] == ["nftables", "ssh"]


def test_slowest_task_is_the_longest_result_of_an_action_over_the_nodes(tmp_path: Path) -> None:
    import json

    for counter, (host, action, duration, kind) in enumerate([
            ("a", "ansible.builtin.apt", 12.5, "runner_on_ok"), ("b", "ansible.builtin.apt", 29.2, "runner_on_ok"),
            ("c", "ansible.builtin.apt", 99.0, "runner_on_failed"), ("a", "truck_files", 50.0, "runner_on_ok")]):
        (tmp_path / f"{counter}-e.json").write_text(json.dumps({"event": kind, "event_data": {
            "host": host, "task_action": action, "duration": duration}}))
    assert projects.slowest_task(tmp_path, "ansible.builtin.apt") == 29.2
    assert projects.slowest_task(tmp_path, "ansible.builtin.user") is None


def test_parse_recap_sums_hosts() -> None:
    out = ("PLAY RECAP ****\n"
           "a : ok=10 changed=0 unreachable=0 failed=0 skipped=2 rescued=0 ignored=0\n"
           "b : ok=12 changed=1 unreachable=0 failed=0 skipped=0 rescued=0 ignored=0\n")
    assert projects.parse_recap(out) == {"ok": 22, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 2,
                                         "rescued": 0, "ignored": 0}
    assert projects.parse_recap("no recap") == {}


def test_on_tty_gives_the_program_a_terminal() -> None:
    import suites

    suites.on_tty([sys.executable, "-c", "import sys; sys.exit(0 if sys.stdout.isatty() else 3)"])()
    with pytest.raises(projects.BenchError):
        suites.on_tty([sys.executable, "-c", "import sys; sys.exit(3)"])()


def test_headroom_counts_the_limit_lab_up_sets_and_skips_when_other_labs_hold_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import suites

    monkeypatch.setattr(suites, "inotify_limit", lambda: 128)
    monkeypatch.setattr(suites, "inotify_in_use", lambda uid=None: 0)
    bench = Benchmark("x", "x", [])
    suites.wait_for_headroom(64, bench)  # 65 x 8 = 520 > 128, but `lab up` raises the limit to 1560 first
    monkeypatch.setattr(suites, "inotify_in_use", lambda uid=None: 1500)
    monkeypatch.setattr(suites, "HEADROOM_WAIT_S", 0.0)
    monkeypatch.setattr(suites.time, "sleep", lambda s: None)
    with pytest.raises(Skip, match="other labs are running"):
        suites.wait_for_headroom(64, bench)


def test_registry_names_are_unique_and_lab_ones_need_root() -> None:
    import run

    items = run.benchmarks()
    names = [b.name for b in items]
    assert len(names) == len(set(names))
    for bench in items:
        if bench.name.startswith(("lab-", "truck-", "drift", "scaling-")):
            assert bench.needs_root and bench.slow, bench.name
    assert [b.x for b in items if b.series == "scaling"] == [6, 12, 24, 48, 64]
    assert all(len(b.steps) >= 1 for b in items)
    assert projects._open == []  # registering builds nothing: projects are made when a benchmark runs


def test_mounted_under_sees_mounts_below_a_directory(tmp_path: Path) -> None:
    assert projects.mounted_under(Path("/sys"))  # /sys/fs/cgroup & co.
    assert not projects.mounted_under(tmp_path)


def test_lab_up_down_is_a_sequence_not_a_comparison() -> None:
    bench = measured({"up": [2.0], "down": [1.0]}, compare=False)
    assert bench.ratio() is None and "ratio" not in bench.verdict()[0]


def test_an_interrupted_run_keeps_the_figures_of_the_benchmarks_that_finished(tmp_path: Path) -> None:
    """SIGTERM after the first benchmark: its figures are in the results and the report, and the run
    says so (a long series once lost every figure to one signal)."""
    import json
    import signal
    import subprocess

    results, report = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    proc = subprocess.Popen([sys.executable, str(BENCH / "run.py"), "--only", "cli-help", "validate-all",
                             "--repeats", "1", "--results", str(results), "--report", str(report)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("cli-help:") and "->" in line:
            proc.send_signal(signal.SIGTERM)
            break
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "kept the figures of cli-help" in stderr
    kept = json.loads(results.read_text())["benchmarks"]
    assert [b["name"] for b in kept] == ["cli-help"] and kept[0]["samples"]
    assert "truckctl --help" in report.read_text() and not list(tmp_path.glob("*.partial"))
