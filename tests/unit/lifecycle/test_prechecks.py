"""Prechecks without a lab: tool checks, SSH failure wording, clock bounds, conflict rules, ARP frames."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from tests.helpers import REPO
from truckctl.config.model import Stage
from truckctl.lifecycle import arp, prechecks
from truckctl.lifecycle.prechecks import NodeProbe, clock_problems, ssh_problems
from truckctl.lifecycle.probe import skew_beyond
from truckctl.project import Project
from truckctl.remote import Connection, explain_ssh_failure, ssh_argv
from truckctl.targets import aws
from truckctl.targets.aws import AwsTarget
from truckctl.targets.lab import LabTarget


def test_ssh_argv_keeps_host_key_checking_on(tmp_path: Path) -> None:
    argv = ssh_argv(Connection("root", tmp_path / "key", tmp_path / "known_hosts"), "10.31.1.11", "true")
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in argv
    assert "BatchMode=yes" in argv and argv[-2:] == ["root@10.31.1.11", "true"]


@pytest.mark.parametrize(("stderr", "expected"), [
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@", "host key does not match"),
    ("Host key verification failed.", "host key does not match"),
    ("ssh: connect to host 10.31.1.11 port 22: Connection timed out", "unreachable"),
    ("root@10.31.1.11: Permission denied (publickey).", "SSH key refused"),
    ("ssh: connect to host x port 22: No route to host", "unreachable"),
])
def test_ssh_failures_are_explained(stderr: str, expected: str) -> None:
    assert expected in explain_ssh_failure(stderr)


def test_unreachable_and_skewed_nodes_are_reported() -> None:
    probes = [NodeProbe("truck-a-gw", False, "unreachable", address="10.31.1.11"),
              NodeProbe("truck-a-hv1", True, "ok", address="10.31.1.12", skew_s=7.5),
              NodeProbe("truck-a-hv2", True, "ok", address="10.31.1.13", skew_s=-0.2)]
    assert [p.location for p in ssh_problems(probes)] == ["truck-a-gw"]
    clock = clock_problems(probes)
    assert len(clock) == 1 and "+7.50 s" in clock[0].message and clock[0].location == "truck-a-hv1"


def test_missing_pulumi_is_a_precheck_problem(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    which = lambda name: None if name == "pulumi" else "/usr/bin/" + name  # noqa: E731
    monkeypatch.setattr(prechecks.shutil, "which", which)
    monkeypatch.setattr(aws.shutil, "which", which)
    problems = AwsTarget(Project(REPO)).prechecks(stage)["tools"]
    assert any("pulumi CLI is not on PATH" in p.message for p in problems)
    assert not any("pulumi" in p.message for p in prechecks.check_tools())
    assert LabTarget(Project(REPO)).prechecks(stage) == {}


def test_aws_access_names_missing_secret(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "PULUMI_CONFIG_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    codes = [p.code for p in aws.check_aws_access(stage)]
    assert codes == ["aws-credentials", "secret-missing"]


def test_conflict_names_address_node_and_foreign_mac(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prechecks.os, "geteuid", lambda: 0)
    monkeypatch.setattr(arp, "route_to", lambda address: ("br-test", "10.31.1.254"))
    answers = {"10.31.1.11": {"02:00:00:00:00:11", "02:00:00:00:00:99"}, "10.31.1.12": {"02:00:00:00:00:12"},
               "10.31.1.13": set()}
    monkeypatch.setattr(arp, "arp_scan", lambda *a, **k: answers)
    probes = [NodeProbe("truck-a-gw", True, "ok", address="10.31.1.11", skew_s=0.0, mac="02:00:00:00:00:11"),
              NodeProbe("truck-a-hv1", True, "ok", address="10.31.1.12", skew_s=0.0, mac="02:00:00:00:00:12")]
    problems, _ = prechecks.address_conflicts(stage, probes)
    assert len(problems) == 1  # one foreign MAC on truck-a-gw's address; a single own MAC is fine
    first = problems[0]
    assert first.code == "address-conflict" and first.location == "truck-a-gw"
    assert "10.31.1.11" in first.message and "02:00:00:00:00:99" in first.message
    assert "02:00:00:00:00:11" in first.message


def test_arp_request_and_reply_frames() -> None:
    mac = bytes.fromhex("020000000001")
    frame = arp._request(mac, "10.31.1.254", "10.31.1.11")
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06" and len(frame) == 42
    reply = (mac + bytes.fromhex("02000000aa11") + b"\x08\x06"
             + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, bytes.fromhex("02000000aa11"),
                           socket.inet_aton("10.31.1.11"), mac, socket.inet_aton("10.31.1.254")))
    assert arp._reply(reply) == ("10.31.1.11", "02:00:00:00:aa:11")
    assert arp._reply(frame) is None  # a request is not a reply


def test_a_clock_is_off_only_by_what_lies_outside_the_time_its_reading_took() -> None:
    assert skew_beyond(1004.5, 1000.0, 1005.0) == 0.0  # a slow SSH set-up is not skew
    assert skew_beyond(1008.0, 1000.0, 1005.0) == 3.0
    assert skew_beyond(995.0, 1000.0, 1005.0) == -5.0
