"""The fast path of drift and up (truck.fastcheck): what a node's fingerprint covers, read from a run's module
arguments; the inputs key; the baselines; the node-side fingerprint on real files; and when a baseline is recorded.
The fast path on real nodes, with hand changes, is tests/lab/test_drift_fast_path.py."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO, FakeConnection
from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.truck import fastcheck, fingerprint_node
from truckctl.truck.events import Change, HostStats, TruckRunResult
from truckctl.truck.plan import HOLD_CUTS_VAR, build_plan

LIVE_ARGS = {"ops_users": [{"name": "raceops"}], "sshd_conf": "/etc/ssh/sshd_config", "units": ["ssh"],
             "hold_cuts": True}


def write_events(directory: Path, events: list[tuple[str, str, str, str, dict[str, Any]]]) -> Path:
    """Canned ansible-runner events: (event, host, role, action, res)."""
    job_events = directory / "job_events"
    job_events.mkdir(parents=True, exist_ok=True)
    for counter, (name, host, role, action, res) in enumerate(events, start=1):
        (job_events / f"{counter}-x.json").write_text(json.dumps({"event": name, "event_data": {
            "host": host, "role": role, "task_action": action, "resolved_action": action, "res": res}}))
    return job_events


def ok(host: str, role: str, action: str, args: dict[str, Any]) -> tuple[str, str, str, str, dict[str, Any]]:
    return ("runner_on_ok", host, role, action, {"changed": False, "invocation": {"module_args": args}})


RUN = [
    ok("gw", "common", "ansible.builtin.command", {"argv": ["dpkg-query", "--show", "chrony"]}),
    ("runner_on_skipped", "gw", "common", "ansible.builtin.apt", {}),
    ("runner_on_ok", "gw", "common", "ansible.builtin.user", {"results": [
        {"invocation": {"module_args": {"name": "raceops"}}}, {"invocation": {"module_args": {"name": "pit"}}}]}),
    ok("gw", "time", "truck_files", {"dirs": [{"path": "/etc/chrony"}], "files": [{"path": "/etc/chrony/chrony.conf"}],
                                     "prune": [{"path": "/etc/systemd/network"}], "services": ["chrony"]}),
    ok("gw", "telemetry", "ansible.builtin.assert", {"that": ["x"]}),
    ok("gw", "telemetry", "truck_secret_file", {"path": "/etc/mosquitto/bridge/truck.key"}),
    ok("gw", "vpn", "ansible.builtin.shell", {"cmd": "wg genkey > k", "creates": "/etc/wireguard/k"}),
    ok("gw", "hardening", "ansible.builtin.shell", {"cmd": "nft list chain inet truckctl input"}),
    ok("gw", "live_state", "truck_live_state", LIVE_ARGS),
]


def test_a_nodes_spec_is_read_from_the_module_arguments_of_a_run(tmp_path: Path) -> None:
    specs = fastcheck.spec_from_run(write_events(tmp_path, RUN), ["gw"])
    assert specs is not None
    assert specs["gw"] == fastcheck.NodeSpec(
        paths=("/etc/chrony", "/etc/chrony/chrony.conf", "/etc/mosquitto/bridge/truck.key", "/etc/mosquitto/bridge",
               "/etc/wireguard/k"),
        listed=("/etc/systemd/network",), deep=(), units=("chrony", "nftables"), users=("raceops", "pit"),
        live_args={k: v for k, v in LIVE_ARGS.items() if k != "hold_cuts"})  # measured only, never fixed
    assert fastcheck.NodeSpec.from_dict(json.loads(json.dumps(specs["gw"].as_dict()))) == specs["gw"]


@pytest.mark.parametrize("uncovered", [
    ok("gw", "time", "ansible.builtin.lineinfile", {"path": "/etc/x"}),  # a module the fingerprint knows nothing of
    ok("gw", "monitoring", "ansible.builtin.command", {"argv": ["true"]}),  # a command of another role
])
def test_a_task_the_fingerprint_does_not_cover_means_no_fast_path(tmp_path: Path, uncovered: Any) -> None:
    assert fastcheck.spec_from_run(write_events(tmp_path, [*RUN, uncovered]), ["gw"]) is None


def test_handlers_do_not_count(tmp_path: Path) -> None:
    """A converge whose handlers ran (a reload command of another role) still leaves its spec."""
    reload = ok("gw", "network", "ansible.builtin.command", {"argv": ["networkctl", "reload"]})
    job_events = write_events(tmp_path, [*RUN, reload])
    last = max(job_events.iterdir(), key=lambda p: int(p.name.split("-", 1)[0]))
    event = json.loads(last.read_text())
    event["event_data"]["task_path"] = "/work/playbooks/roles/network/handlers/main.yml:3"
    last.write_text(json.dumps(event))
    assert fastcheck.spec_from_run(job_events, ["gw"]) is not None


CENSORED = ("runner_on_ok", "gw", "telemetry", "truck_secret_file", {"changed": False, "censored": "hidden"})
BRIDGE = ok("gw", "telemetry", "truck_files", {"dirs": [{"path": "/etc/mosquitto/bridge"}], "files": []})


def test_a_no_log_secret_file_is_covered_by_its_roles_directories(tmp_path: Path) -> None:
    """truck_secret_file runs under no_log: its result has no arguments. Its role's directories then count
    entry by entry (the key's mode, owner and content among them)."""
    specs = fastcheck.spec_from_run(write_events(tmp_path, [*RUN, CENSORED, BRIDGE]), ["gw"])
    assert specs is not None and specs["gw"].deep == ("/etc/mosquitto/bridge",)
    assert fastcheck.spec_from_run(write_events(tmp_path / "alone", [*RUN, CENSORED]), ["gw"]) is None


def test_a_covered_task_without_its_arguments_means_no_fast_path(tmp_path: Path) -> None:
    blind = ("runner_on_ok", "gw", "time", "truck_files", {"changed": False})
    assert fastcheck.spec_from_run(write_events(tmp_path, [*RUN, blind]), ["gw"]) is None
    (tmp_path / "job_events" / "99-x.json").write_text("{cut short")
    assert fastcheck.spec_from_run(tmp_path / "job_events", ["gw"]) is None


def test_every_secret_file_lives_in_a_directory_its_role_manages() -> None:
    """What lets a no_log secret file be covered: each truck_secret_file task's path is in a directory the same
    role's truck_files task lists under dirs."""
    tasks = 0
    for path in sorted((REPO / "playbooks" / "roles").glob("*/tasks/main.yml")):
        plays = yaml.safe_load(path.read_text()) or []
        listed = [(task.get("truck_files") or {}).get("dirs") for task in plays]
        dirs = {d["path"] for entries in listed if isinstance(entries, list) for d in entries}
        for task in plays:
            if "truck_secret_file" in task:
                tasks += 1
                assert task.get("no_log") is True, (path, task["name"])
                assert task["truck_secret_file"]["path"].rsplit("/", 1)[0] in dirs, (path, task["name"])
    assert tasks == 2


@pytest.mark.parametrize(("code", "stdout"), [
    (0, '{"fingerprint": "ab", "live": [1]}'), (0, '{"fingerprint": 5, "live": []}'), (0, '["ab"]'),
    (0, ""), (0, "[" * 100000), (255, '{"fingerprint": "ab", "live": []}'), (0, '{"fingerprint": "ab"}'),
])
def test_only_a_well_formed_answer_counts(code: int, stdout: str) -> None:
    assert fastcheck.read_answer(code, stdout).fingerprint is None
    assert fastcheck.read_answer(0, 'motd\n{"fingerprint": "ab", "live": []}').fingerprint == "ab"


def test_a_node_without_its_live_state_check_means_no_fast_path(tmp_path: Path) -> None:
    assert fastcheck.spec_from_run(write_events(tmp_path, RUN[:-1]), ["gw"]) is None
    assert fastcheck.spec_from_run(write_events(tmp_path / "two", RUN), ["gw", "hv1"]) is None


def test_every_task_of_the_roles_is_one_the_fingerprint_covers() -> None:
    """A new kind of task in a role must come with its reads in the fingerprint (fingerprint_node.py), or drift's
    fast path would miss what it reads: this fails until COVERED_ACTIONS or COMMAND_ROLES says how it is covered.
    (Handlers run only after a change, and a check with a change records no baseline.)"""
    for path in sorted((REPO / "playbooks" / "roles").glob("*/tasks/main.yml")):
        role = path.parent.parent.name
        for task in yaml.safe_load(path.read_text()) or []:
            module = next(k for k in task if k not in {"name", "vars", "register", "notify", "when", "loop",
                                                        "loop_control", "check_mode", "changed_when", "failed_when",
                                                        "tags", "listen", "no_log", "become", "ignore_errors"})
            action = module.rsplit(".", 1)[-1]
            if action in ("command", "shell"):
                assert role in fastcheck.COMMAND_ROLES, (path, task["name"])
            else:
                assert action in fastcheck.COVERED_ACTIONS | {"meta"}, (path, task["name"], module)


def plan_of(stage: Stage, cloud: CloudOutputs, **kwargs: Any) -> Any:
    return build_plan(REPO / "playbooks", stage, cloud, FakeConnection(), "lab", **kwargs)


def test_the_inputs_key_follows_the_configuration_and_the_playbooks(stage: Stage, cloud: CloudOutputs,
                                                                    tmp_path: Path) -> None:
    plan = plan_of(stage, cloud)
    key = fastcheck.inputs_key(plan)
    assert fastcheck.inputs_key(plan_of(stage, cloud, check=True)) == key
    assert fastcheck.inputs_key(plan_of(stage, cloud, hold_cuts=True)) == key  # a converge's choice
    assert HOLD_CUTS_VAR in plan_of(stage, cloud, hold_cuts=True).extravars
    changed = dataclasses.replace(plan, extravars={**plan.extravars, "cloud_ingest_port": 8884})
    assert fastcheck.inputs_key(changed) != key
    secret = dataclasses.replace(plan, secret_vars={"cloud_truck_keys": {"truck-a": "another key"}})
    assert fastcheck.inputs_key(secret) != key
    copy = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert fastcheck.inputs_key(dataclasses.replace(plan, project_dir=copy)) == key
    chrony = copy / "roles" / "time" / "templates" / "chrony.conf.j2"
    chrony.write_text(chrony.read_text() + "# one more line\n")
    assert fastcheck.inputs_key(dataclasses.replace(plan, project_dir=copy)) != key


def test_baselines_are_private_and_belong_to_their_inputs(tmp_path: Path) -> None:
    baselines = fastcheck.Baselines(tmp_path, "stage-1")
    spec = fastcheck.NodeSpec(("/etc/a",), (), ("/etc/a",), ("chrony",), ("raceops",), {"units": ["ssh"]})
    assert baselines.load("k1") is None
    baselines.save("k1", {"gw": spec}, {"gw": "f" * 64})
    assert baselines.load("k1") == ({"gw": spec}, {"gw": "f" * 64})
    assert baselines.load("k2") is None
    assert baselines.path.stat().st_mode & 0o777 == 0o600
    baselines.path.write_text("{not json")
    assert baselines.load("k1") is None
    baselines.forget()
    assert not baselines.path.exists()


def fingerprint(spec: dict[str, Any]) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        fingerprint_node.main({"paths": [], "listed": [], "deep": [], "units": [], "users": [], "live_args": None,
                               **spec})
    answer = json.loads(out.getvalue())
    assert answer["live"] is None
    return str(answer["fingerprint"])


def test_the_node_fingerprint_moves_with_what_site_yml_reads_and_nothing_else(tmp_path: Path) -> None:
    managed, listed, other = tmp_path / "managed.conf", tmp_path / "network", tmp_path / "motd"
    managed.write_text("server a\n")
    listed.mkdir()
    other.write_text("welcome\n")
    spec = {"paths": [str(managed), str(tmp_path / "absent")], "listed": [str(listed)]}
    first = fingerprint(spec)
    assert fingerprint(spec) == first
    other.write_text("hello, race engineers\n")
    assert fingerprint(spec) == first  # what the configuration does not decide
    seen = {first}
    for change in (lambda: managed.write_text("server b\n"), lambda: managed.chmod(0o666),
                   lambda: (listed / "20-truckctl-vlan9.network").write_text("[Match]\n"),
                   lambda: (tmp_path / "absent").write_text("now here\n")):
        change()
        now = fingerprint(spec)
        assert now not in seen  # each change moves it, and nothing brings an earlier one back
        seen.add(now)
    stamp = managed.stat()
    managed.write_text("server a\n")  # the old bytes and time again: its ctime still says it moved
    os.utime(managed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert fingerprint(spec) not in seen


def test_a_deep_directory_counts_every_entry_and_a_change_set_back_still_moved(tmp_path: Path) -> None:
    secrets = tmp_path / "bridge"
    secrets.mkdir()
    key = secrets / "truck.key"
    key.write_text("k\n")
    key.chmod(0o600)
    shallow, deep = {"paths": [str(secrets)]}, {"paths": [str(secrets)], "deep": [str(secrets)]}
    before = fingerprint(shallow), fingerprint(deep)
    key.chmod(0o644)
    assert fingerprint(shallow) == before[0] and fingerprint(deep) != before[1]
    key.chmod(0o600)  # set back: its ctime still says it moved
    assert fingerprint(deep) != before[1]


def test_the_live_state_module_loads_where_ansible_is_not_installed() -> None:
    """The fast path runs truck_live_state's Node on the node itself, where there is no Ansible."""
    program = ("import sys, json\nsys.modules['ansible'] = None\n"  # `import ansible...` raises ImportError
               "sys.path.insert(0, sys.argv[1])\nimport fingerprint_node as f\nimport types\n"
               "m = types.ModuleType('truck_live_state'); sys.modules['truck_live_state'] = m\n"
               "exec(compile(open(sys.argv[2]).read(), 'truck_live_state.py', 'exec'), m.__dict__)\n"
               "print(json.dumps([m.AnsibleModule is None, callable(m.Node), callable(m.configured_accounts)]))\n")
    proc = subprocess.run([sys.executable, "-c", program, str(Path(fingerprint_node.__file__).parent),
                           str(REPO / "playbooks" / "library" / "truck_live_state.py")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [True, True, True]


class Nodes:
    """A stand-in for the SSH calls: each call answers the next fingerprint of every node."""

    def __init__(self, *rounds: dict[str, str | None], live: list[dict[str, Any]] | None = None) -> None:
        self.rounds = list(rounds)
        self.live = live or []
        self.calls = 0

    def __call__(self, connection: Any, addresses: dict[str, str], specs: Any, playbooks: Path
                 ) -> dict[str, fastcheck.FastAnswer]:
        answer = self.rounds[min(self.calls, len(self.rounds) - 1)]
        self.calls += 1
        return {h: fastcheck.FastAnswer(answer[h], self.live) for h in addresses}


def converge_run(directory: Path, changes: list[Change] | None = None, held: list[Change] | None = None
                 ) -> TruckRunResult:
    write_events(directory, RUN)
    return TruckRunResult("successful", 0, True, {"gw": HostStats(ok=9)}, changes or [], [], 8.0, str(directory),
                          held or [])


@pytest.fixture
def fast(stage: Stage, cloud: CloudOutputs, tmp_path: Path) -> fastcheck.FastPath:
    plan = plan_of(stage, cloud, check=True)
    return fastcheck.FastPath(tmp_path / "state", stage.name, plan, FakeConnection(), {"gw": "10.31.1.11"})


def establish(fast: fastcheck.FastPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: Nodes) -> None:
    monkeypatch.setattr(fastcheck, "ask_nodes", nodes)
    fastcheck.remember_spec(fast.baselines.path.parent.parent.parent, "stage-1", dataclasses.replace(
        fast.plan, check=False, hosts=["gw"]), converge_run(tmp_path / "up"))


def test_a_clean_check_with_the_nodes_unmoved_becomes_the_baseline(fast: fastcheck.FastPath, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    establish(fast, tmp_path, monkeypatch, Nodes({"gw": "a"}))
    first = fast.try_clean()
    assert not first.clean and "no clean run recorded yet" in first.reason
    fast.after_full_run(converge_run(tmp_path / "check"))
    again = fastcheck.FastPath(fast.baselines.path.parent.parent.parent, "stage-1", fast.plan, fast.connection,
                               fast.addresses)
    outcome = again.try_clean()
    assert outcome.clean and outcome.as_dict()["method"] == "fingerprint"
    assert outcome.run_result(["gw"], check=True).ok and outcome.run_result(["gw"], check=True).changes == []


HELD = Change("gw", "Restart mosquitto", "", "systemd_service", handler=True)


@pytest.mark.parametrize(("nodes", "changes", "held"), [
    (Nodes({"gw": "a"}, {"gw": "b"}), [], []),  # a node moved while the check ran
    (Nodes({"gw": "a"}), [Change("gw", "Configure chrony", "-a\n+b\n", "truck_files")], []),  # it found drift
    (Nodes({"gw": "a"}, live=[{"kind": "sshd", "item": "passwordauthentication"}]), [], []),  # live drift
    (Nodes({"gw": None}), [], []),  # a node gave no fingerprint
    (Nodes({"gw": "a"}), [], [HELD]),  # a converge held a restart back (the race is live): not converged
])
def test_no_baseline_from_a_run_that_is_not_clean_or_a_node_that_moved(
        fast: fastcheck.FastPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: Nodes,
        changes: list[Change], held: list[Change]) -> None:
    establish(fast, tmp_path, monkeypatch, nodes)
    fast.try_clean()
    fast.after_full_run(converge_run(tmp_path / "check", changes, held))
    loaded = fast.baselines.load(fast.key)
    assert loaded is not None and loaded[1] is None
    assert not fast.try_clean().clean


def test_a_node_that_moved_since_the_baseline_sends_drift_to_the_full_check(
        fast: fastcheck.FastPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    establish(fast, tmp_path, monkeypatch, Nodes({"gw": "a"}))
    fast.try_clean()
    fast.after_full_run(converge_run(tmp_path / "check"))
    monkeypatch.setattr(fastcheck, "ask_nodes", Nodes({"gw": "b"}))
    outcome = fast.try_clean()
    assert not outcome.clean and outcome.reason == "changed since the last clean run on gw: full check"


def test_a_node_that_does_not_answer_is_said_so(fast: fastcheck.FastPath, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    establish(fast, tmp_path, monkeypatch, Nodes({"gw": "a"}))
    fast.try_clean()
    fast.after_full_run(converge_run(tmp_path / "check"))
    monkeypatch.setattr(fastcheck, "ask_nodes", Nodes({"gw": None}))
    assert fast.try_clean().reason == "no fingerprint from gw: full check"


def test_an_error_in_the_fast_path_means_the_full_check(fast: fastcheck.FastPath, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    establish(fast, tmp_path, monkeypatch, Nodes({"gw": "a"}))

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(fastcheck, "ask_nodes", broken)
    outcome = fast.try_clean()
    assert not outcome.clean and outcome.reason == "fast path not available (RuntimeError): full check"
    fast.after_full_run(converge_run(tmp_path / "check"))  # no fingerprints before it: the spec only
    monkeypatch.setattr(fastcheck, "spec_from_run", broken)
    fast.after_full_run(converge_run(tmp_path / "check2"))
    assert not fast.baselines.path.exists()


def test_inputs_changed_while_the_check_ran_record_no_baseline(fast: fastcheck.FastPath, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    establish(fast, tmp_path, monkeypatch, Nodes({"gw": "a"}))
    fast.try_clean()
    keys = iter(["another key"])
    monkeypatch.setattr(fastcheck, "inputs_key", lambda plan: next(keys))  # playbooks/ edited meanwhile
    fast.after_full_run(converge_run(tmp_path / "check"))
    assert not fast.baselines.path.exists()


def test_a_converge_that_changed_nothing_records_the_baseline_and_the_next_up_takes_the_fast_path(
        stage: Stage, cloud: CloudOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` on a converged stage: its run of site.yml changed nothing, so the next one would not either."""
    monkeypatch.setattr(fastcheck, "ask_nodes", Nodes({"gw": "a"}))
    up = fastcheck.FastPath(tmp_path / "state", stage.name, plan_of(stage, cloud), FakeConnection(), {"gw": "x"})
    fastcheck.remember_spec(tmp_path / "state", stage.name, dataclasses.replace(up.plan, hosts=["gw"]),
                            converge_run(tmp_path / "first"))
    assert up.try_clean().reason == "no clean run recorded yet for these inputs: playbook run"
    up.after_full_run(converge_run(tmp_path / "second"))
    again = fastcheck.FastPath(tmp_path / "state", stage.name, up.plan, FakeConnection(), {"gw": "x"})
    outcome = again.try_clean()
    assert outcome.clean and not outcome.run_result(["gw"], check=False).check
    forced = again.try_clean(full=True)
    assert not forced.clean and forced.reason == "not used: --full" and again.before is not None
    drift = fastcheck.FastPath(tmp_path / "state", stage.name, plan_of(stage, cloud, check=True), FakeConnection(),
                               {"gw": "x"})
    assert drift.try_clean().clean  # drift's check shares the baseline: the same inputs
