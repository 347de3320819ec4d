"""The management path (truckctl.management): the choice, the run's ssh_config and known_hosts, the
SSH argv and Ansible's connection through the hops, and each hop's failure named (real ssh, loopback)."""

from __future__ import annotations

import shlex
import shutil
import socket
from pathlib import Path

import pytest

from tests.helpers import REPO
from truckctl.config.loader import load_stage
from truckctl.config.model import JumpHop, Management
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle.prechecks import check_hops, run_prechecks
from truckctl.lifecycle.probe import skew_beyond as clock_skew
from truckctl.management import (
    VIA_ENV,
    apply,
    hops,
    known_hosts_text,
    probe_hops,
    ssh_config_text,
    through_path,
    via,
)
from truckctl.project import Project
from truckctl.remote import Connection, explain_ssh_failure, ssh_argv
from truckctl.targets.lab import LabTarget
from truckctl.truck.plan import connection_vars

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICphFe4JK+wzNWcElI6eca9cwukxd+FsuGiiTzA/XqVX"
NODE_LINE = "truck-a-gw,10.31.1.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvEbk2bYrN5ieFmd5VQx1q9m6KQ2VnR4wW3g3jNyZ3b"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    shutil.copytree(REPO / "inventory", tmp_path / "proj" / "inventory")
    monkeypatch.delenv(VIA_ENV, raising=False)
    monkeypatch.delenv("TRUCKCTL_STATE_DIR", raising=False)
    return Project(tmp_path / "proj")


def two_hops() -> list[JumpHop]:
    return [JumpHop(name="bastion", host="bastion.example.org", user="ops", host_keys=[KEY]),
            JumpHop(name="cloud-gw", host="10.0.0.5", port=2222, user="truckctl-jump", host_keys=[KEY])]


def direct(tmp_path: Path) -> Connection:
    known = tmp_path / "known_hosts"
    known.write_text(NODE_LINE + "\n")
    return Connection("root", tmp_path / "id_ed25519", known)


# ---- the choice -------------------------------------------------------------------------------

def test_direct_by_default_then_the_state_directory_then_the_environment(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VIA_ENV, raising=False)
    assert via(tmp_path) == "direct"
    (tmp_path / "via").write_text("management\n")
    assert via(tmp_path) == "management"
    monkeypatch.setenv(VIA_ENV, "direct")
    assert via(tmp_path) == "direct"
    monkeypatch.setenv(VIA_ENV, "vpn; rm -rf /")
    with pytest.raises(TruckctlError) as caught:
        via(tmp_path)
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.problems[0].location == VIA_ENV


def test_inside_the_truck_nothing_changes(project: Project, tmp_path: Path) -> None:
    stage = load_stage(project, "stage-1")
    conn = direct(tmp_path)
    assert apply(project, stage, conn) is conn
    argv = ssh_argv(conn, "10.31.1.11", "true")
    assert argv[argv.index("-F") + 1] == "/dev/null"
    assert not (project.state_dir / "ssh").exists()


# ---- the run's files --------------------------------------------------------------------------

def test_ssh_config_chains_the_hops_and_pins_every_one(tmp_path: Path) -> None:
    text = ssh_config_text(hops(two_hops()), "/k/id", "/s/known")
    blocks = text.split("\nHost ")
    assert blocks[1].startswith("truckctl-hop-1\n") and "ProxyJump none" in blocks[1]
    assert "HostName bastion.example.org" in blocks[1] and "User ops" in blocks[1]
    assert "ProxyJump truckctl-hop-1" in blocks[2] and "Port 2222" in blocks[2]
    last = blocks[3]
    assert last.startswith("*\n")  # every host (each hop's ssh reads this file too): after the hops' blocks
    for line in ("ProxyJump truckctl-hop-2", 'UserKnownHostsFile "/s/known"', "StrictHostKeyChecking yes",
                 "GlobalKnownHostsFile /dev/null", "BatchMode yes", 'IdentityFile "/k/id"', "IdentitiesOnly yes",
                 "UpdateHostKeys no"):
        assert f"  {line}\n" in last
    assert "ProxyCommand" not in text and "Include" not in text


def test_known_hosts_pins_the_nodes_and_each_hop() -> None:
    text = known_hosts_text(NODE_LINE + "\n", two_hops())
    assert text.splitlines() == [NODE_LINE, f"bastion.example.org {KEY}", f"[10.0.0.5]:2222 {KEY}"]


def test_through_the_path_every_ssh_uses_the_run_files(project: Project, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    stage = load_stage(project, "stage-1").model_copy(update={"management": Management(jump=two_hops())})
    monkeypatch.setenv(VIA_ENV, "management")
    conn = apply(project, stage, direct(tmp_path))
    assert conn.ssh_config is not None and conn.ssh_config.parent == project.state_dir / "ssh"
    assert conn.ssh_config.stat().st_mode & 0o777 == 0o600
    assert conn.known_hosts.read_text() == known_hosts_text(NODE_LINE + "\n", two_hops())
    assert f'UserKnownHostsFile "{conn.known_hosts.resolve()}"' in conn.ssh_config.read_text()
    argv = ssh_argv(conn, "10.31.1.11", "true", 2)
    assert argv[argv.index("-F") + 1] == str(conn.ssh_config)
    assert "ConnectTimeout=6" in argv  # each hop's handshake comes before the node's banner
    assert argv[-2:] == ["root@10.31.1.11", "true"]
    probe = ssh_argv(conn, "truckctl-hop-2", None, 5, user="truckctl-jump", stdio_forward="10.31.1.11:22")
    assert probe[-3:] == ["-W", "10.31.1.11:22", "truckctl-jump@truckctl-hop-2"]
    # Ansible and Mitogen: the same file, and a longer connection timeout per hop
    variables = connection_vars(conn)
    common = shlex.split(variables["ansible_ssh_common_args"])
    assert common[common.index("-F") + 1] == str(conn.ssh_config)
    assert variables["ansible_timeout"] == 45
    assert "/dev/null" not in common[:2]


def test_a_hop_nobody_pinned_is_refused_naming_its_line(project: Project, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    stage = load_stage(project, "stage-1")
    monkeypatch.setenv(VIA_ENV, "management")
    with pytest.raises(TruckctlError) as caught:
        apply(project, stage, direct(tmp_path))  # the example's hop has no host_keys, the known_hosts no line
    problem = caught.value.problems[0]
    assert problem.code == "unpinned-hop"
    assert problem.location is not None and problem.location.startswith("inventory/race.yaml:")
    assert problem.location.endswith("management.jump[0].host_keys")
    assert not (project.state_dir / "ssh").exists()
    # the target's known_hosts may pin it (the lab vouches for its stand-in)
    conn = direct(tmp_path)
    conn.known_hosts.write_text(NODE_LINE + f"\ncloud-standin,100.64.10.2 {KEY}\n")
    assert through_path(project, stage, conn).hops[0].host == "100.64.10.2"


def test_a_race_without_a_path_is_refused_when_it_is_chosen(project: Project, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stage = load_stage(project, "stage-1").model_copy(update={"management": None})
    monkeypatch.setenv(VIA_ENV, "management")
    with pytest.raises(TruckctlError) as caught:
        apply(project, stage, direct(tmp_path))
    assert caught.value.problems[0].code == "no-management-path"
    assert "inventory/race.yaml:" in (caught.value.problems[0].location or "")


# ---- hop failures, with a real ssh on loopback ------------------------------------------------

def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def path_to(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int) -> Connection:
    stage = load_stage(project, "stage-1").model_copy(update={"management": Management(jump=[
        JumpHop(name="cloud-gw", host="127.0.0.1", port=port, user="truckctl-jump", host_keys=[KEY])])})
    monkeypatch.setenv(VIA_ENV, "management")
    return apply(project, stage, direct(tmp_path))


def test_an_unreachable_hop_is_named(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = path_to(project, tmp_path, monkeypatch, closed_port())
    probes = probe_hops(conn, "10.31.1.11")
    assert [(p.hop.name, p.ok, p.detail) for p in probes] == [("cloud-gw", False, "unreachable")]
    problems, rows = check_hops(conn, "10.31.1.11")
    assert problems[0].code == "hop-failed" and problems[0].location == "cloud-gw"
    assert problems[0].message.startswith("management path: hop 'cloud-gw' (truckctl-jump@127.0.0.1:")
    assert rows[0].ok is False


def test_prechecks_name_the_failed_hop_and_do_not_try_the_nodes(project: Project, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    conn = path_to(project, tmp_path, monkeypatch, closed_port())
    stage = load_stage(project, "stage-1")
    report = run_prechecks(stage, LabTarget(project), conn)
    assert [p.code for p in report.problems] == ["hop-failed"]
    assert "hop 'cloud-gw'" in report.problems[0].message and "unreachable" in report.problems[0].message
    assert "ssh" not in report.checks  # every node is behind the failed hop: not probed


def test_ssh_complaints_become_one_short_reason() -> None:
    changed = ("@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
               "Host key verification failed.\n")
    assert explain_ssh_failure(changed).startswith("host key does not match the pinned one")
    unknown = ("No ED25519 host key is known for [10.0.0.5]:2222 and you have requested strict checking.\n"
               "Host key verification failed.\n")
    assert explain_ssh_failure(unknown) == "no pinned host key for it"
    assert explain_ssh_failure("truckctl-jump@10.0.0.5: Permission denied (publickey).") == "SSH key refused"
    assert explain_ssh_failure("channel 0: open failed: administratively prohibited: open failed\n"
                               "stdio forwarding failed") == "the jump host refused to forward the connection"
    assert explain_ssh_failure("Stdio forwarding request failed: Session open refused by peer"
                               ) == "the jump host refused to forward the connection"  # through a shared connection


def test_clock_skew_counts_only_readings_outside_the_round_trip() -> None:
    assert clock_skew(105.0, 100.0, 110.0) == 0.0  # read during 10 s of handshakes: not off
    assert clock_skew(113.0, 100.0, 110.0) == 3.0
    assert clock_skew(96.5, 100.0, 110.0) == -3.5
