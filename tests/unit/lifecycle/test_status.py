"""`truckctl status` from fake probes and fake stand-in data: what is healthy, what is STALE, the
exit codes, --watch (plain blocks, Ctrl-C -> 130, refused with --json), and no secret in the output."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import KEY_BODY, REPO, FakeConnection, FakeLabTarget, make_cloud
from tests.unit.lifecycle.fakes import GatewayDirs
from truckctl.cli import cmd_status
from truckctl.cli.app import app
from truckctl.cli.output import Env
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle import probe
from truckctl.lifecycle import status as st
from truckctl.lifecycle.journal import Journal
from truckctl.lifecycle.lock import stage_lock
from truckctl.lifecycle.status_model import StageHealth, StatusReport
from truckctl.ops import evidence as ops_evidence
from truckctl.project import Project
from truckctl.remote import Bounded, KeptConnections, control_path
from truckctl.target import CloudTier, PublicOutputs
from truckctl.targets import for_kind
from truckctl.targets.aws import CLOUDSIDE_NOTE, AwsTarget
from truckctl.text import hidden

NODES = ["truck-a-gw", "truck-a-hv1", "truck-a-hv2", "truck-b-gw", "truck-b-hv1", "truck-b-hv2"]


def healthy_probes(nodes: list[st.NodeTarget], access: Any) -> list[st.NodeProbe]:
    return [st.NodeProbe(n.name, True, "ok", dict.fromkeys(n.services, "active")) for n in nodes]


def seen(age: float | None = 1.0, heartbeat_age: dict[str, float | None] | None = None) -> dict[str, Any]:
    """A stand-in /status document: every truck's telemetry `age` s old, heartbeats 2 s old by default."""
    ages = {name: 2.0 for name in NODES} | (heartbeat_age or {})

    def view(value: float | None) -> dict[str, Any]:
        return {"last_seen": None if value is None else "2027-05-08T10:00:00Z", "age_s": value,
                "count": 0 if value is None else 40, "alarm": value is not None and value > 20}

    return {"stale_after_s": 20, "mqtt_connected": True, "alerts": 0, "trucks": {
        truck: {"telemetry": view(age), "heartbeats": {n: view(ages[n]) for n in NODES if n.startswith(truck)},
                "counts": {"telemetry": 40, "heartbeat": 12}}
        for truck in ("truck-a", "truck-b")}}


def lab_side(document: dict[str, Any] | None) -> st.CloudSide:
    return st.CloudSide(CloudTier("offline plan + cloud stand-in", standin="answering"), document,
                        None if document else "the stand-in does not answer")


def health(stage: Stage, probes: list[st.NodeProbe] | None, cloud: st.CloudSide, target: str = "lab",
           note: str | None = None) -> StageHealth:
    return st.assemble(stage, for_kind(target, Project(REPO)), st.node_targets(stage), probes, note, cloud)


def assemble(stage: Stage, probes: list[st.NodeProbe] | None, cloud: st.CloudSide, target: str = "lab",
             note: str | None = None) -> dict[str, Any]:
    """The measured part of the document, as `status --json` shows it."""
    return health(stage, probes, cloud, target, note).to_json()


def reported(measured: StageHealth) -> StatusReport:
    """The report the CLI renders: no lock, no run, no drift check yet."""
    return StatusReport(measured, lock=None, team_lock=(), last_run=None, shared_runs=(), drift=None, checked_at=0,
                        took_s=0.1)


# ---- what gets probed ------------------------------------------------------------------------

def test_every_node_gets_its_role_services(stage: Stage) -> None:
    nodes = {n.name: n for n in st.node_targets(stage)}
    assert sorted(nodes) == NODES
    assert nodes["truck-a-gw"].services == ("ssh", "nftables", "chrony", "prometheus-node-exporter",
                                            "truck-heartbeat", "mosquitto", "dnsmasq")
    assert nodes["truck-b-hv1"].services == ("ssh", "nftables", "chrony", "prometheus-node-exporter",
                                             "truck-heartbeat")


def bounded(run: Any) -> Any:
    """A stand-in for subprocess.run as the probe's read_bounded sees it: a timeout is a call it ended."""
    def read(argv: list[str], stdin: bytes, limit: int, timeout: float) -> Bounded:
        try:
            done = run(argv, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Bounded(None, "", "")
        return Bounded(done.returncode, done.stdout, done.stderr)
    return read


def test_probe_makes_one_short_ssh_call_per_node_with_pinned_host_keys(stage: Stage,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        assert kwargs["timeout"] <= 5
        address = argv[-2].split("@")[1]
        if address == "10.32.1.13":
            return subprocess.CompletedProcess(argv, 255, "", "ssh: connect to host 10.32.1.13 port 22: "
                                                               "Connection timed out")
        units = argv[-1].split("; true")[0].removeprefix("systemctl is-active ").split()
        states = ["inactive" if unit == "dnsmasq" and address == "10.31.1.11" else "active" for unit in units]
        return subprocess.CompletedProcess(argv, 0, "\n".join(states) + "\n", "")

    monkeypatch.setattr(probe, "read_bounded", bounded(fake_run))
    probes = {p.name: p for p in st.probe_nodes(st.node_targets(stage), FakeConnection())}
    assert len(calls) == 6
    assert all("StrictHostKeyChecking=yes" in argv and "ConnectTimeout=2" in argv for argv in calls)
    assert probes["truck-a-gw"].services["dnsmasq"] == "inactive"
    assert probes["truck-a-gw"].services["mosquitto"] == "active"
    assert (probes["truck-b-hv2"].reachable, probes["truck-b-hv2"].detail) == (False, "unreachable")


def _kept_ssh(answers: dict[str, list[str]], calls: list[tuple[str, str, float]]) -> Any:
    """A stand-in for subprocess.run over kept masters: `-O check` says a master is there, `-O exit` is
    recorded, and a node's calls answer in turn from its list: "silent" (times out), "255" or "ok"."""
    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "-O" in argv:
            calls.append((argv[-1].split("@")[1], argv[argv.index("-O") + 1], 0.0))
            return subprocess.CompletedProcess(argv, 0, "", "")
        address = argv[-2].split("@")[1]
        assert "ControlMaster=auto" in argv and any(a.startswith("ControlPath=") for a in argv)
        calls.append((address, "call", kwargs["timeout"]))
        answer = answers[address].pop(0) if answers.get(address) else "ok"
        if answer == "silent":
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
        if answer == "255":
            return subprocess.CompletedProcess(argv, 255, "", f"ssh: connect to host {address} port 22: "
                                                              "Connection timed out")
        units = argv[-1].split("; true")[0].removeprefix("systemctl is-active ").split()
        return subprocess.CompletedProcess(argv, 0, "\n".join("active" for _ in units) + "\n", "")
    return run


def test_a_kept_master_that_goes_silent_is_ended_and_the_node_asked_again_on_a_fresh_connection(
        stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = Path(tempfile.mkdtemp(prefix="k"))  # short: a socket's path has at most 107 bytes
    master = socket.socket(socket.AF_UNIX)
    master.bind(str(directory / "m"))  # the masters are there (the stand-in of ssh below says which)
    calls: list[tuple[str, str, float]] = []
    kept_ssh = _kept_ssh({"10.31.1.12": ["silent", "ok"], "10.31.1.13": ["255", "ok"], "10.32.1.13": ["silent", "255"]},
                         calls)
    monkeypatch.setattr(subprocess, "run", kept_ssh)  # ssh -O check / exit
    monkeypatch.setattr(probe, "read_bounded", bounded(kept_ssh))
    kept = replace(FakeConnection(), kept_in=directory)
    probes = {p.name: p for p in st.probe_nodes(st.node_targets(stage), kept)}
    assert all(p.reachable and p.detail == "ok" for name, p in probes.items() if name != "truck-b-hv2")
    # a cut link reads as it does without kept connections: ssh's own reason, from a fresh connection
    assert (probes["truck-b-hv2"].reachable, probes["truck-b-hv2"].detail) == (False, "unreachable")
    for address in ("10.31.1.12", "10.31.1.13", "10.32.1.13"):
        mine = [(what, timeout) for where, what, timeout in calls if where == address]
        assert mine == [("check", 0.0), ("call", probe.KEPT_ANSWER_S), ("exit", 0.0),
                        ("call", probe.SERVICES_TIMEOUT_S)], (address, mine)
    answered = [(what, timeout) for where, what, timeout in calls if where == "10.31.1.11"]
    assert answered == [("check", 0.0), ("call", probe.KEPT_ANSWER_S)]  # a live master: one quick call, kept
    master.close()
    shutil.rmtree(directory)
    calls.clear()  # no master kept at all (the first status in half a minute): none is asked after
    st.probe_nodes(st.node_targets(stage)[:1], kept)
    assert calls == [("10.31.1.11", "call", probe.SERVICES_TIMEOUT_S)]


def test_kept_connections_carry_the_probes_and_the_gateways_team_reads_with_them(
        project: Project, gateway_dirs: GatewayDirs) -> None:
    """The team reads ride on the gateways' probes: one SSH call per node, kept or not."""
    given: list[Any] = []

    def prober(nodes: list[st.NodeTarget], access: Any) -> list[st.NodeProbe]:
        given.append((access.kept_in, [node.name for node in nodes if node.team_read is not None]))
        return gateway_dirs.answering_team(healthy_probes)(nodes, access)

    with KeptConnections() as kept:
        report = st.status(FakeLabTarget(project), "stage-1", prober=prober, cloud_reader=lambda s: lab_side(seen()),
                           kept=kept)
        assert given == [(kept.directory, ["truck-a-gw", "truck-b-gw"])]
    assert [lock.state for lock in report.team_lock] == ["free", "free"]
    assert gateway_dirs.calls == [("truck-a-gw", "team"), ("truck-b-gw", "team")]
    assert not kept.directory.exists()


# ---- assembly --------------------------------------------------------------------------------

def test_all_nodes_reachable_and_fresh_streams_is_healthy(stage: Stage) -> None:
    document = assemble(stage, healthy_probes(st.node_targets(stage), None), lab_side(seen()))
    assert document["healthy"] is True and document["unhealthy"] == []
    assert [t["name"] for t in document["trucks"]] == ["truck-a", "truck-b"]
    assert all(t["telemetry"]["state"] == "ok" for t in document["trucks"])
    assert all(n["heartbeat"]["state"] == "ok" and n["healthy"] for t in document["trucks"] for n in t["nodes"])


def test_streams_older_than_stale_after_are_stale(stage: Stage) -> None:
    assert stage.defaults.telemetry.stale_after_s == 20
    document = assemble(stage, healthy_probes(st.node_targets(stage), None),
                        lab_side(seen(age=45.0, heartbeat_age={"truck-a-gw": 21.0, "truck-a-hv1": 20.0})))
    trucks = {t["name"]: t for t in document["trucks"]}
    assert trucks["truck-a"]["telemetry"]["state"] == "stale"
    nodes = {n["name"]: n for n in trucks["truck-a"]["nodes"]}
    assert nodes["truck-a-gw"]["heartbeat"]["state"] == "stale"
    assert nodes["truck-a-hv1"]["heartbeat"]["state"] == "ok"  # exactly stale_after_s old is not yet stale
    assert document["healthy"] is False and trucks["truck-a"]["healthy"] is False
    assert "truck-a: telemetry STALE (last seen 45 s ago) at the cloud side" in document["unhealthy"]
    assert "truck-a-gw: heartbeat STALE (last seen 21 s ago) at the cloud side" in document["unhealthy"]


def test_a_stream_never_seen_is_unhealthy(stage: Stage) -> None:
    document = assemble(stage, healthy_probes(st.node_targets(stage), None),
                        lab_side(seen(age=None, heartbeat_age={"truck-b-hv2": None})))
    assert "truck-a: telemetry never seen at the cloud side" in document["unhealthy"]
    assert "truck-b-hv2: heartbeat never seen at the cloud side" in document["unhealthy"]


def test_an_inactive_service_or_an_unreachable_node_is_unhealthy(stage: Stage) -> None:
    probes = healthy_probes(st.node_targets(stage), None)
    probes[0].services["mosquitto"] = "failed"
    probes[4] = st.NodeProbe("truck-b-hv1", False, "unreachable")
    probes[3].services["dnsmasq"] = "failed"
    document = assemble(stage, probes, lab_side(seen()))
    assert document["unhealthy"] == [
        "truck-a: truck broker down at truck-a-gw broker: truck-a-gw: mosquitto failed (direct check)",
        "truck-b: node down or cut from the LAN (truck-b-hv1) at truck-b-hv1→truck-b LAN→truck-b-gw: truck-b-hv1 not "
        "reachable over SSH from truckctl (unreachable)",
        "truck-b-gw: dnsmasq failed"]  # nothing explains it: a problem of its own
    assert [(i["kind"], i["truck"], i["node"]) for i in document["incidents"]] == [
        ("broker-down", "truck-a", None), ("node-down", "truck-b", "truck-b-hv1")]


def test_an_unreadable_standin_is_unhealthy_on_the_lab(stage: Stage) -> None:
    document = assemble(stage, healthy_probes(st.node_targets(stage), None), lab_side(None))
    assert document["unhealthy"] == ["cloud side: the stand-in does not answer"]
    assert document["trucks"][0]["telemetry"]["state"] == "unknown"


def test_no_connection_is_said_once_and_every_node_is_not_probed(stage: Stage) -> None:
    document = assemble(stage, None, lab_side(seen()), note="no lab is up: run `truckctl lab up STAGE` first")
    assert document["unhealthy"] == ["no node could be probed: no lab is up: run `truckctl lab up STAGE` first"]
    assert all(n["detail"] == "not probed" and not n["reachable"] for t in document["trucks"] for n in t["nodes"])


def test_on_aws_the_cloud_side_is_said_to_be_unavailable_not_faked(stage: Stage) -> None:
    cloud = st.CloudSide(CloudTier("unknown", "the stack's outputs cannot be read"), None, CLOUDSIDE_NOTE)
    document = assemble(stage, healthy_probes(st.node_targets(stage), None), cloud, target="aws")
    assert document["healthy"] is True  # what cannot be measured is not reported as broken...
    assert document["cloud"]["last_seen_note"] == CLOUDSIDE_NOTE  # ...but said plainly
    assert "CloudWatch" in CLOUDSIDE_NOTE and "pulumi CLI" in CLOUDSIDE_NOTE
    assert all(t["telemetry"]["state"] == "unknown" and t["telemetry"]["last_seen"] is None
               for t in document["trucks"])


def test_aws_tier_without_the_pulumi_cli_is_unknown_with_the_reason(project: Project, stage: Stage,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    side = AwsTarget(project).read_cloud(stage)
    assert side.tier.state == "unknown" and "Pulumi CLI" in (side.tier.note or "")
    assert side.seen is None and side.note == CLOUDSIDE_NOTE


def test_public_outputs_carry_no_private_key(stage: Stage) -> None:
    text = json.dumps(PublicOutputs.of(make_cloud(stage), receiver=None).to_json())
    assert all(body not in text for body in KEY_BODY.values())
    assert "PRIVATE" not in text and "100.64.10.2:8883" in text


# ---- lock, last run, drift -------------------------------------------------------------------

def test_status_shows_lock_last_run_and_the_newest_drift_result(project: Project, stage: Stage,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    older = Journal(project, "stage-1", "drift", "lab", run_id="20270508T080000Z-stage-1-drift-0001")
    older.finish(ExitCode.OK, [], {"drift": False})
    drift = Journal(project, "stage-1", "drift", "lab", run_id="20270508T090000Z-stage-1-drift-0002")
    drift.finish(ExitCode.CHANGES, [], {"drift": True, "truck": {"changed": 2}})
    up = Journal(project, "stage-1", "up", "lab", run_id="20270508T100000Z-stage-1-up-0003")
    up.finish(ExitCode.OK, [], {})
    with stage_lock(project, "stage-1", "up stage-1 --target lab"):
        document = st.status(FakeLabTarget(project), "stage-1", prober=healthy_probes,
                             cloud_reader=lambda s: lab_side(seen())).to_json()
    assert document["lock"]["command"] == "up stage-1 --target lab" and document["lock"]["stale"] is False
    assert document["last_run"]["run_id"] == up.run_id and document["last_run"]["status"] == "ok"
    assert document["drift"] == {"run_id": drift.run_id, "started": drift.started, "status": "changes",
                                 "exit_code": 3, "drift": True}
    # Everything else is fine, but drift is known: not HEALTHY, "drift found N min ago" instead.
    assert document["healthy"] is False and document["took_s"] < 5
    minutes = int((document["checked_at"] - drift.started) // 60)
    line = f"drift found {minutes} min ago (truckctl runs show {drift.run_id})"
    assert document["unhealthy"] == [line] and document["verdict"] == line


def test_drift_fixed_by_the_last_check_is_not_known_drift(project: Project, stage: Stage,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = Journal(project, "stage-1", "drift", "lab", run_id="20270508T090000Z-stage-1-drift-0002")
    fixed.finish(ExitCode.OK, [], {"drift": True, "fixed": True})
    document = st.status(FakeLabTarget(project), "stage-1", prober=healthy_probes,
                         cloud_reader=lambda s: lab_side(seen())).to_json()
    assert document["drift"]["drift"] is False
    assert document["healthy"] is True and document["verdict"] == "HEALTHY"


def test_no_drift_run_yet(project: Project) -> None:
    assert st.last_drift(project, "stage-1") is None


# ---- the command -----------------------------------------------------------------------------

@pytest.fixture
def fake_sources(monkeypatch: pytest.MonkeyPatch, project: Project, tmp_path: Path) -> FakeLabTarget:
    """The CLI's target is the fake one: its stand-in answers `standin`, every node answers healthy; the SSH
    control directory is the test's own."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = FakeLabTarget(project)
    target.standin = seen()
    monkeypatch.setattr("truckctl.targets.for_kind", lambda kind, project_: target)
    monkeypatch.setattr(st, "probe_nodes", healthy_probes)
    return target


def test_cli_exit_0_when_healthy_and_1_when_something_is_stale(project: Project, fake_sources: FakeLabTarget
                                                               ) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["status", "stage-1", "--json"])
    document = json.loads(result.stdout)
    assert result.exit_code == 0 and document["ok"] is True and document["result"]["healthy"] is True
    fake_sources.standin = seen(age=60.0)
    result = runner.invoke(app, ["status", "stage-1", "--json"])
    document = json.loads(result.stdout)
    assert result.exit_code == 1 and document["exit_code"] == 1 and document["ok"] is False
    assert document["result"]["unhealthy"] == [
        "truck-a: telemetry STALE (last seen 60 s ago) at the cloud side",
        "truck-b: telemetry STALE (last seen 60 s ago) at the cloud side"]
    result = runner.invoke(app, ["status", "stage-1"])  # plain: no TTY here
    assert result.exit_code == 1
    assert "stage-1 on lab: UNHEALTHY" in result.stdout and "STALE 60 s ago" in result.stdout
    assert "truck-a-gw" in result.stdout and "all 7 active" in result.stdout and "lock: free" in result.stdout
    assert "\x1b[" not in result.stdout


def test_a_one_shot_status_leaves_its_connections_for_the_next_one(project: Project, fake_sources: FakeLabTarget,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's SSH master outlasts `truckctl status` (KEPT_PERSIST_S after its last use), in this operator's
    control directory: the next status rides on it instead of a handshake per node."""
    given: list[Any] = []

    def prober(nodes: list[st.NodeTarget], access: Any) -> list[st.NodeProbe]:
        given.append(access.kept_in)
        return healthy_probes(nodes, access)

    monkeypatch.setattr(st, "probe_nodes", prober)
    for _ in range(2):
        assert CliRunner().invoke(app, ["status", "stage-1", "--json"]).exit_code == 0
    assert given[0] == given[1] and given[0].parent == control_path(project.state_dir)
    assert given[0].is_dir()  # left for the next status


def test_watch_with_json_is_a_usage_error(project: Project, fake_sources: FakeLabTarget) -> None:
    result = CliRunner().invoke(app, ["status", "stage-1", "--watch", "--json"])
    assert result.exit_code == 2
    document = json.loads(result.stdout)  # still exactly one JSON document
    assert document["exit_code"] == 2 and document["errors"][0]["location"] == "--watch/--json"


def test_invalid_stage_is_a_configuration_error(project: Project) -> None:
    result = CliRunner().invoke(app, ["status", "stage-99", "--json"])
    assert result.exit_code == ExitCode.INVALID_CONFIG


def test_watch_prints_plain_blocks_until_ctrl_c_then_exits_130(stage: Stage) -> None:
    out = io.StringIO()
    env = Env(stdout=out, stderr=io.StringIO())
    calls = {"n": 0}

    def action() -> StatusReport:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return reported(health(stage, healthy_probes(st.node_targets(stage), None),
                            lab_side(seen(age=1.0 if calls["n"] == 1 else 30.0))))

    assert cmd_status.watch_loop(env, action, interval=0) == ExitCode.INTERRUPTED
    text = out.getvalue()
    assert text.count("stage-1 on lab:") == 2
    assert text.index("HEALTHY") < text.index("UNHEALTHY") and "STALE 30 s ago" in text
    assert "Ctrl-C to stop" in text


def test_watch_stops_on_a_configuration_error() -> None:
    err = io.StringIO()

    def action() -> StatusReport:
        raise TruckctlError.single("unknown-stage", "no stage-99", exit_code=ExitCode.INVALID_CONFIG)

    assert cmd_status.watch_loop(Env(stdout=io.StringIO(), stderr=err), action, interval=0) == 5
    assert "no stage-99" in err.getvalue()


# ---- what a node says is data ------------------------------------------------------------------

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b2J\u202eevil\u2066\x00"  # retitle, clear screen (ESC and C1 CSI), bidi


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_hostile_node_or_cloud_answer_never_reaches_the_terminal(stage: Stage,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A compromised node answers `systemctl` with escape sequences, or ssh complains with them on stderr;
    an exception's text holds them in the cloud note: the status shows none raw, rich or plain."""
    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        address = argv[-2].split("@")[1]
        if address == "10.32.1.13":
            return subprocess.CompletedProcess(argv, 255, "", f"ssh: {HOSTILE} banner")
        units = argv[-1].split("; true")[0].removeprefix("systemctl is-active ").split()
        states = [HOSTILE + "failed" if unit == "chrony" else "active" for unit in units]
        return subprocess.CompletedProcess(argv, 0, "\n".join(states) + "\n", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.delenv("NO_COLOR", raising=False)
    probes = st.probe_nodes(st.node_targets(stage), FakeConnection())
    assert all(p.services["chrony"] == "unknown" for p in probes if p.reachable)  # not a systemd state
    cloud = st.CloudSide(CloudTier("unknown", f"the stack's outputs cannot be read: {HOSTILE}"), None,
                         f"the stand-in does not answer: {HOSTILE}")
    report = reported(health(stage, probes, cloud))
    assert any(HOSTILE.split("\x00")[0][:20] in item for item in report.unhealthy)  # it does get that far

    for stream in (io.StringIO(), _Terminal()):
        env = Env(stdout=stream, stderr=io.StringIO())
        assert env.rich is isinstance(stream, _Terminal)
        cmd_status.render(env, report)
        shown = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())  # rich's own colours (on a terminal only)
        assert "\\x1b]0;pwned" in shown and "\\u202eevil" in shown  # shown, as escapes
        assert not [char for char in shown if char != "\n" and hidden(char)], repr(shown)


# ---- race-day incidents (issue 14) -------------------------------------------------------------

def evidence_document(truck: str = "truck-a", carrier: bool = True, **extra: Any) -> dict[str, Any]:
    import time as _time

    nodes = [n for n in NODES if n.startswith(truck)]
    return {"v": 1, "truck": truck, "node": f"{truck}-gw", "ts": _time.time(), "seq": 300,
            "uplink": {"iface": "uplink0", "carrier": carrier, "address": "100.64.10.11"},
            "cloud": {"connected": carrier, "error": None if carrier else "unreachable", "detail": ""},
            "broker": {"active": True}, "bridge": {"connected": carrier, "queued": 0 if carrier else 57},
            "feed": {"messages_last_10s": 90, "last_message_age_s": 0.1},
            "nodes": {n: {"reachable": True, "heartbeat_age_s": 1.0} for n in nodes},
            "clock": {n: {"offset_s": 0.0} for n in nodes}, "conflicts": [], "neighbours": [], **extra}


def test_a_gateways_probe_reads_its_evidence_in_the_same_call(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv[-1])
        units = argv[-1].split("; true")[0].removeprefix("systemctl is-active ").split()
        out = "\n".join("active" for _ in units) + "\n"
        if probe.EVIDENCE_FILE in argv[-1]:
            out += probe.EVIDENCE_MARK + "\n" + json.dumps(evidence_document()) + "\n"
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(probe, "read_bounded", bounded(fake_run))
    probes = {p.name: p for p in st.probe_nodes(st.node_targets(stage), FakeConnection())}
    assert len(calls) == 6 and sum(probe.EVIDENCE_FILE in c for c in calls) == 2  # the gateways, no extra call
    assert "head -c 262145 /run/truck-ops/evidence.json" in calls[0]
    assert probe.EVIDENCE_MAX_BYTES == ops_evidence.MAX_BYTES  # the probe reads one byte more than the parser takes
    assert json.loads(probes["truck-a-gw"].evidence or "")["truck"] == "truck-a"
    assert probes["truck-a-gw"].services["mosquitto"] == "active" and probes["truck-a-hv1"].evidence is None


def test_a_gateways_team_read_rides_in_its_probe_framed_by_a_mark_no_node_knows(stage: Stage) -> None:
    nodes = st.with_team_reads("stage-1", st.node_targets(stage), sudo=True)
    gateway, other = nodes[0], st.with_team_reads("stage-1", st.node_targets(stage), sudo=True)[0]
    assert gateway.team_read is not None and other.team_read is not None and nodes[1].team_read is None
    assert gateway.team_read.mark != other.team_read.mark  # fresh for each status
    command = probe.SERVICES.command(gateway)
    assert gateway.team_read.command.startswith("sudo -n sh -c ") and gateway.team_read.command in command
    assert command.index(gateway.team_read.mark) < command.index(probe.EVIDENCE_MARK)
    mark = gateway.team_read.mark
    # what the gateway's shell prints for it: the units, the framed team answer, then the evidence
    forged = f"{probe.EVIDENCE_MARK}\n--truckctl-team-0000000000000000-- 0\n"  # a history line can hold anything
    team = f"held 100 130\n{{}}\n{forged}"
    answer = probe.SERVICES.answer(gateway, "active\n" * 7 + f"{mark}\n{team}\n{mark} 0\n{probe.EVIDENCE_MARK}\n{{}}",
                                   0.0, 1.0)
    assert answer.team == (0, team) and answer.evidence == "{}" and set(answer.services.values()) == {"active"}
    # a frame the node never closed (killed half-way): no team answer, the units still read
    cut = probe.SERVICES.answer(gateway, "active\n" * 7 + f"{mark}\nheld 100", 0.0, 1.0)
    assert cut.team is None and cut.detail == "ok"
    assert probe.SERVICES.answer(nodes[1], "active\n" * 5, 0.0, 1.0).team is None


def test_a_node_that_answers_without_end_is_cut_off_at_the_bound(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile node decides nothing of how much truckctl holds: the answer is read up to a bound."""
    monkeypatch.setattr(probe, "ssh_argv", lambda *args, **kwargs: ["sh", "-c", "yes active | head -c 2000000"])
    found = st.probe_nodes(st.node_targets(stage)[:1], FakeConnection())[0]
    assert found.detail == f"answer longer than {probe.ANSWER_MAX_BYTES} bytes" and probe.ANSWER_MAX_BYTES < 1_000_000
    assert set(found.services.values()) == {probe.UNKNOWN}


def test_the_team_view_comes_from_the_gateways_probes(stage: Stage, gateway_dirs: GatewayDirs) -> None:
    nodes = st.with_team_reads("stage-1", st.node_targets(stage), sudo=False)
    probes = gateway_dirs.answering_team(healthy_probes)(nodes, None)
    probes[3] = st.NodeProbe("truck-b-gw", False, "unreachable")
    probes[0] = replace(probes[0], team=None)  # reached, but its team read never came back whole
    view = st.team_view(stage, probes)
    assert [(lock.gateway, lock.state) for lock in view.locks] == [("truck-a-gw", "error"),
                                                                    ("truck-b-gw", "unreachable")]
    assert view.locks[1].error == "unreachable" and "no answer to the team read" in (view.locks[0].error or "")


def pulled_cable(stage: Stage) -> StageHealth:
    """truck-a's uplink pulled: its gateway says no carrier, the cloud side hears nothing from truck-a."""
    probes = healthy_probes(st.node_targets(stage), None)
    probes[0] = replace(probes[0], evidence=json.dumps(evidence_document(carrier=False)))
    probes[3] = replace(probes[3], evidence=json.dumps(evidence_document("truck-b")))
    stale = {n: 35.0 for n in NODES if n.startswith("truck-a")}
    document = seen(heartbeat_age=stale)
    document["trucks"]["truck-a"]["telemetry"].update(age_s=35.0, alarm=True)
    return health(stage, probes, lab_side(document))


def test_a_pulled_cable_is_one_incident_with_its_four_symptoms_under_it(stage: Stage) -> None:
    document = pulled_cable(stage).to_json()
    assert document["unhealthy"] == ["truck-a: uplink down at truck-a-gw→uplink: truck-a-gw uplink0: no carrier"]
    (incident,) = document["incidents"]
    assert (incident["kind"], incident["truck"], incident["hop"], incident["id"]) == (
        "uplink-down", "truck-a", "truck-a-gw→uplink", "link/truck-a/-")
    assert incident["evidence"] == ["truck-a-gw uplink0: no carrier", "57 message(s) queued on the gateway"]
    assert [s["text"] for s in incident["symptoms"]] == [
        "truck-a: telemetry STALE (last seen 35 s ago) at the cloud side",
        *(f"{n}: heartbeat STALE (last seen 35 s ago) at the cloud side" for n in NODES[:3])]
    assert document["trucks"][0]["evidence"]["state"] == "ok" and document["trucks"][1]["healthy"] is True


def test_the_human_view_shows_the_incident_with_its_symptoms_under_it(stage: Stage) -> None:
    out = io.StringIO()
    cmd_status.render(Env(stdout=out, stderr=io.StringIO()), reported(pulled_cable(stage)))
    text = out.getvalue()
    assert "incidents (1):" in text and "uplink-down truck-a at truck-a-gw→uplink" in text
    assert "    evidence: truck-a-gw uplink0: no carrier" in text
    assert "    explains: truck-a-hv2: heartbeat STALE (last seen 35 s ago) at the cloud side" in text
    assert "unhealthy:" not in text  # nothing is left unexplained


def test_incidents_the_cloud_side_holds_are_merged_by_id(stage: Stage) -> None:
    probes = healthy_probes(st.node_targets(stage), None)
    probes[0] = replace(probes[0], evidence=json.dumps(evidence_document(carrier=False)))
    document = seen()
    held = {"kind": "uplink-down", "truck": "truck-a", "node": None, "address": None, "hop": "truck-a-gw→uplink",
            "evidence": ["the cloud side hears nothing from truck-a"], "symptoms": [], "opened": 1000.0,
            "resolved": None}
    only_cloud = {**held, "kind": "heartbeat-stopped", "truck": "truck-b", "node": "truck-b-hv2",
                  "hop": "truck-b-hv2 heartbeat", "opened": 1100.0}
    document["incidents"] = {"open": [held, only_cloud, "junk", {"kind": "no-such-kind", "truck": "x"}],
                             "recent": [{**held, "kind": "broker-down", "resolved": 990.0}]}
    result = assemble(stage, probes, lab_side(document))
    assert [(i["id"], i["opened"], i["source"]) for i in result["incidents"]] == [
        ("link/truck-a/-", 1000.0, "diagnosis"), ("heartbeat-stopped/truck-b/truck-b-hv2", 1100.0, "cloud")]
    assert [i["kind"] for i in result["incidents_recent"]] == ["broker-down"]
    assert result["healthy"] is False and len(result["unhealthy"]) == 2


def test_an_unreachable_gateway_uses_the_cloud_sides_copy_of_its_evidence(stage: Stage) -> None:
    probes = healthy_probes(st.node_targets(stage), None)
    probes[0] = st.NodeProbe("truck-a-gw", False, "connection timed out")
    document = seen()
    document["trucks"]["truck-a"]["evidence"] = {"age_s": 0.4, "document": evidence_document()}
    result = assemble(stage, probes, lab_side(document))
    assert result["incidents"] == []  # the gateway is up and talks to the cloud: only truckctl cannot reach it
    assert result["unhealthy"] == ["truck-a-gw: not reachable over SSH (connection timed out)"]
    assert result["trucks"][0]["evidence"]["source"] == "cloud"
    document["trucks"]["truck-a"]["evidence"] = {"age_s": 30.0, "document": None}
    result = assemble(stage, probes, lab_side(document))
    assert [(i["kind"], i["node"]) for i in result["incidents"]] == [("node-down", "truck-a-gw")]


def test_bad_evidence_from_a_gateway_is_a_problem_not_a_crash(stage: Stage) -> None:
    probes = healthy_probes(st.node_targets(stage), None)
    probes[0] = replace(probes[0], evidence='{"v": 1, "truck": "truck-b"}')
    result = assemble(stage, probes, lab_side(seen()))
    assert result["unhealthy"] == ["truck-a-gw: bad evidence (truck: expected 'truck-a', the document speaks for "
                                   "'truck-b')"] or result["unhealthy"][0].startswith("truck-a-gw: bad evidence (")
    assert result["trucks"][0]["evidence"]["state"] == "bad"
