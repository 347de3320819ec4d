"""The stand-in's race-day watch: the gateways' evidence and its own silence tracking go through the
same diagnosis as `truckctl status`; one notification per incident opened and one per incident
resolved, apart from the silence alarms; late evidence sends its pair on arrival."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.ops.fixtures import changed, document
from truckctl.config.loader import load_stage
from truckctl.lab import standin
from truckctl.lab.plan import plan_lab
from truckctl.lab.standin_service import Tracker
from truckctl.ops.topology import from_stage
from truckctl.project import Project

PREFIXES = {"truck-a": "gdf27/truck-a", "truck-b": "gdf27/truck-b"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def tracker(example_project: Path, clock: Clock) -> Tracker:
    config = standin.service_config(plan_lab(load_stage(Project(example_project), "stage-1"), "abc123"))
    return Tracker(config["prefixes"], float(config["stale_after_s"]), clock, config["nodes"], config["topology"])


def healthy_second(t: Tracker, clock: Clock, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """One second of a healthy stage: telemetry, heartbeats and evidence from each truck not in `skip`."""
    for truck, prefix in PREFIXES.items():
        if truck in skip:
            continue
        t.on_message(f"{prefix}/telemetry", b'{"rider": 1}')
        for node in t.heartbeats[truck]:
            t.on_message(f"{prefix}/heartbeat/{node}", b"{}")
        t.on_message(f"{prefix}/evidence/{truck}-gw", json.dumps(document(truck, clock.now)).encode())
    t.check()
    clock.now += 1


def incident_notices(t: Tracker) -> list[tuple[str, str, str]]:
    return [(a["body"]["event"], a["body"]["incident"]["kind"], a["body"]["incident"]["truck"])
            for a in t.alert_list() if a["source"] == "incident"]


def test_the_service_gets_the_stages_topology_and_subscribes_to_the_evidence(example_project: Path) -> None:
    stage = load_stage(Project(example_project), "stage-1")
    config = standin.service_config(plan_lab(stage, "abc123"))
    assert config["topology"] == from_stage(stage).to_dict()
    t = Tracker(config["prefixes"], 20, Clock(), config["nodes"], config["topology"])
    assert "gdf27/truck-a/evidence/#" in t.topics()


def test_a_pulled_cable_is_one_notification_opened_and_one_resolved(example_project: Path) -> None:
    clock = Clock()
    t = tracker(example_project, clock)
    for _ in range(5):
        healthy_second(t, clock)
    assert incident_notices(t) == [] and t.status()["incidents"] == {"open": [], "recent": []}
    pulled_at = clock.now
    for _ in range(30):  # truck-a says nothing for 30 s; its gateway queues its evidence meanwhile
        healthy_second(t, clock, skip={"truck-a"})
    assert incident_notices(t) == [("incident-opened", "uplink-down", "truck-a")]
    (opened,) = t.status()["incidents"]["open"]
    assert opened["opened"] <= pulled_at + 5  # within 5 s of the cable
    alarms = [a["body"]["alarm"] for a in t.alert_list() if a["source"] == "standin"]
    assert sorted(alarms) == ["heartbeat-missing"] * 3 + ["telemetry-stopped"]  # the silence alarms still fire
    # the cable is back: the queued documents (no carrier) arrive first, in order, then the current ones
    for second in range(30):
        doc = changed(changed(document("truck-a", pulled_at + second), "uplink.carrier", False), "cloud.connected",
                      False)
        t.on_message("gdf27/truck-a/evidence/truck-a-gw", json.dumps(doc).encode())
    for _ in range(3):
        healthy_second(t, clock)
    assert incident_notices(t) == [("incident-opened", "uplink-down", "truck-a"),
                                   ("incident-resolved", "uplink-down", "truck-a")]
    resolved = t.status()["incidents"]["recent"][0]
    assert resolved["opened"] == pulled_at and resolved["evidence"][0] == "truck-a-gw uplink0: no carrier"
    assert {s["key"] for s in resolved["symptoms"]} >= {"telemetry/truck-a", "heartbeat/truck-a-hv1"}
    for _ in range(40):  # the bridge takes its time to reconnect: not an incident of its own
        healthy_second(t, clock)
    assert len(incident_notices(t)) == 2


def test_a_queue_delivered_in_windows_with_a_check_between_them_is_still_one_pair(example_project: Path) -> None:
    """The cloud-block drill on a busy host (CI run 20 sent two pairs): the gateway's queue arrives ten
    documents at a time; the first ten, written before the agent noticed the block, say "connected".
    A check between two windows must not take them for the truck's present word, and a document the
    gateway sends twice after the incident resolved must not open it again."""
    clock = Clock()
    t = tracker(example_project, clock)
    for _ in range(5):
        healthy_second(t, clock)
    blocked_at = clock.now
    for _ in range(25):
        healthy_second(t, clock, skip={"truck-b"})
    assert incident_notices(t) == [("incident-opened", "uplink-down", "truck-b")]
    queued = [document("truck-b", blocked_at + second) if second < 10 else changed(
        document("truck-b", blocked_at + second), "cloud", {"connected": False, "error": "unreachable", "detail": ""})
        for second in range(25)]
    for window in (queued[:10], queued[10:20]):
        for doc in window:
            t.on_message("gdf27/truck-b/evidence/truck-b-gw", json.dumps(doc).encode())
        t.check()  # the stand-in's once-a-second check, while the gateway waits for its acknowledgements
        assert incident_notices(t) == [("incident-opened", "uplink-down", "truck-b")]
    assert t.status()["incidents"]["open"][0]["kind"] == "cloud-unreachable"  # the queue told it apart
    for doc in queued[20:]:  # the last ones arrive on time: the link works again
        t.on_message("gdf27/truck-b/evidence/truck-b-gw", json.dumps(doc).encode())
    for _ in range(3):
        healthy_second(t, clock)
    t.on_message("gdf27/truck-b/evidence/truck-b-gw", json.dumps(queued[-1]).encode())  # sent again (QoS 1)
    for _ in range(3):
        healthy_second(t, clock)
    assert incident_notices(t) == [("incident-opened", "uplink-down", "truck-b"),
                                   ("incident-resolved", "cloud-unreachable", "truck-b")]


def test_a_certificate_the_stand_in_refuses_is_tls_refused_both_ways_whatever_the_queue_says_first(
        example_project: Path) -> None:
    """The revoke-cert drill: the stand-in's broker restarts with the CRL; the gateway's first queued document
    says only that its connection was lost ("unreachable"), the rest that the handshake is refused."""
    clock = Clock()
    t = tracker(example_project, clock)
    for _ in range(5):
        healthy_second(t, clock)
    revoked_at = clock.now
    t.set_refused({"truck-a": "certificate serial 1f revoked, on the CA's CRL", "not-a-truck": "x"})
    assert t.refused == {"truck-a": "certificate serial 1f revoked, on the CA's CRL"}
    for _ in range(30):
        healthy_second(t, clock, skip={"truck-a"})
    assert incident_notices(t) == [("incident-opened", "tls-refused", "truck-a")]
    (opened,) = t.status()["incidents"]["open"]
    assert opened["hop"] == "truck-a-gw→cloud ingest (TLS)" and opened["provisional"] is False
    t.set_refused({})  # cleared: the broker restarts again, the gateway reconnects a second later
    healthy_second(t, clock, skip={"truck-a"})
    for second in range(30):
        cause = ({"connected": False, "error": "unreachable", "detail": "connection lost (paho code 7)"} if second == 0
                 else {"connected": False, "error": "tls-refused", "detail": "SSLEOFError"})
        doc = changed(changed(document("truck-a", revoked_at + second), "cloud", cause), "bridge.connected", False)
        t.on_message("gdf27/truck-a/evidence/truck-a-gw", json.dumps(doc).encode())
    for _ in range(3):
        healthy_second(t, clock)
    assert incident_notices(t) == [("incident-opened", "tls-refused", "truck-a"),
                                   ("incident-resolved", "tls-refused", "truck-a")]
    ids = {a["body"]["incident"]["id"] for a in t.alert_list() if a["source"] == "incident"}
    assert ids == {"link/truck-a/-"}


def test_the_stand_in_is_told_which_trucks_certificate_it_refuses(example_project: Path, tmp_path: Path) -> None:
    from truckctl.lab.pki import LabPki, client_id

    plan = plan_lab(load_stage(Project(example_project), "stage-1"), "abc123")
    pki = LabPki(tmp_path / "pki")
    pki.ensure_ca()
    standin.issue_certificates(pki, plan)
    root = tmp_path / "root"
    root.mkdir()
    standin.write_revocations(root, plan, pki)
    config = standin.service_config(plan)
    refused_file = root / str(config["refused_file"]).lstrip("/")
    assert json.loads(refused_file.read_text()) == {}
    serial = pki.hold("truck-truck-a")  # the drill: the certificate the truck holds goes on the CRL
    standin.write_revocations(root, plan, pki)
    assert json.loads(refused_file.read_text()) == {"truck-a": f"certificate serial {serial} revoked, on the CA's CRL"}
    pki.release(str(serial))
    pki.revoke("truck-truck-b")  # `down`: revoked and replaced; which one truck-b presents, the cloud cannot say
    pki.ensure_client("truck-truck-b", client_id(plan.race_id, "truck-b"))
    standin.write_revocations(root, plan, pki)
    assert json.loads(refused_file.read_text()) == {}


def test_an_incident_only_the_late_evidence_shows_is_sent_as_a_pair_on_arrival(example_project: Path) -> None:
    clock = Clock()
    t = tracker(example_project, clock)
    healthy_second(t, clock)
    start = clock.now
    for second, broker in ((1, True), (2, False), (3, False), (4, True)):
        doc = changed(document("truck-b", start - 60 + second), "broker.active", broker)
        t.on_message("gdf27/truck-b/evidence/truck-b-gw", json.dumps(doc).encode())
    assert incident_notices(t) == [("incident-opened", "broker-down", "truck-b"),
                                   ("incident-resolved", "broker-down", "truck-b")]


def test_a_node_down_is_one_notification_whatever_its_symptoms(example_project: Path) -> None:
    clock = Clock()
    t = tracker(example_project, clock)
    healthy_second(t, clock)
    for _ in range(40):
        for truck, prefix in PREFIXES.items():
            t.on_message(f"{prefix}/telemetry", b"{}")
            for node in t.heartbeats[truck]:
                if node != "truck-b-hv2":
                    t.on_message(f"{prefix}/heartbeat/{node}", b"{}")
            doc = document(truck, clock.now)
            if truck == "truck-b":
                doc = changed(doc, "nodes.truck-b-hv2", {"reachable": False, "heartbeat_age_s": None})
            t.on_message(f"{prefix}/evidence/{truck}-gw", json.dumps(doc).encode())
        t.check()
        clock.now += 1
    assert incident_notices(t) == [("incident-opened", "node-down", "truck-b")]
    (incident,) = t.status()["incidents"]["open"]
    assert [s["key"] for s in incident["symptoms"]] == ["heartbeat/truck-b-hv2"]


def test_evidence_that_is_not_the_gateways_is_counted_and_ignored(example_project: Path) -> None:
    clock = Clock()
    t = tracker(example_project, clock)
    t.on_message("gdf27/truck-a/evidence/truck-a-hv1", json.dumps(document("truck-a", clock.now)).encode())
    t.on_message("gdf27/truck-a/evidence/truck-a-gw", json.dumps(document("truck-b", clock.now)).encode())
    t.on_message("gdf27/truck-a/evidence/truck-a-gw", b"\xff" * 10)
    view = t.status()["trucks"]["truck-a"]["evidence"]
    assert (view["count"], view["bad"], view["document"]) == (0, 3, None)
    assert t.status("truck-b")["trucks"].keys() == {"truck-b"}  # a truck sees its own only


def test_the_ops_package_runs_with_the_standard_library_alone(tmp_path: Path) -> None:
    """What the stand-in node gets: the package under a stub `truckctl`, imported by an isolated python."""
    for path, content in standin.ops_files().items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    lib = tmp_path / standin.SERVICE_LIB
    code = "import truckctl.ops.watch, truckctl.ops.diagnose; print(truckctl.ops.watch.__file__)"
    result = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(lib)!r}); {code}"],
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(lib))


