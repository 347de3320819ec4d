"""Writes into a node's root never follow a link planted there: at every file truckctl writes into the
stand-in's and a node's root (the CRL and broker config on revocation, the stand-in's files, a node's
identity), a link to a host file (a temp file of this test, never a system file) is replaced, not
written through; a link where a directory is expected stops the write with a clear message."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from truckctl.config.loader import load_stage
from truckctl.errors import TruckctlError
from truckctl.lab import node, rootwrite, standin
from truckctl.lab.pki import LabPki
from truckctl.lab.plan import LabPlan, plan_lab
from truckctl.lab.ssh import ensure_keypair
from truckctl.project import Project

HOST_TEXT = b"host file: must stay as it is\n"


@pytest.fixture
def plan(example_project: Path) -> LabPlan:
    return plan_lab(load_stage(Project(example_project), "stage-1"), "abc123")


@pytest.fixture
def pki(tmp_path: Path, plan: LabPlan) -> LabPki:
    pki = LabPki(tmp_path / "pki")
    standin.issue_certificates(pki, plan)
    return pki


def fresh_root(base: Path) -> Path:
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/group").write_text(f"root:x:0:\nmosquitto:x:{os.getgid()}:\n")
    return root


def write_everything(root: Path, plan: LabPlan, pki: LabPki, tmp_path: Path) -> None:
    """Every write truckctl makes into node roots: the stand-in's files (and its CRL), a node's identity."""
    host_key = tmp_path / "hostkeys" / "ssh_host_ed25519_key"
    host_key.parent.mkdir(parents=True, exist_ok=True)
    ensure_keypair(host_key, "root@truck-a-gw")
    standin.write_files(root, plan, pki)
    standin.write_revocations(root, plan, pki)
    node.write_identity(root, plan, plan.truck_nodes[0], host_key, "ssh-ed25519 AAAA lab")


def write_points(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name != "group")


def test_a_link_planted_at_any_written_file_is_replaced_never_written_through(
        tmp_path: Path, plan: LabPlan, pki: LabPki) -> None:
    points = write_points(_written(tmp_path / "clean", plan, pki))
    assert "etc/mosquitto/certs/crl.pem" in points and "etc/mosquitto/mosquitto.conf" in points
    assert "root/.ssh/authorized_keys" in points and "etc/mosquitto/certs/server.key" in points
    for i, point in enumerate(points):
        if point.endswith(".wants/truckctl-standin.service"):
            continue  # the one link truckctl makes itself (checked below)
        host_file = tmp_path / f"host-{i}.txt"
        host_file.write_bytes(HOST_TEXT)
        os.chmod(host_file, 0o600)
        before = host_file.stat()
        root = fresh_root(tmp_path / f"planted-{i}")
        (root / point).parent.mkdir(parents=True, exist_ok=True)
        (root / point).symlink_to(host_file)  # what a compromised node plants
        write_everything(root, plan, pki, tmp_path)
        after = host_file.stat()
        assert host_file.read_bytes() == HOST_TEXT, point
        assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid), point
        assert not (root / point).is_symlink() and (root / point).is_file(), point


def _written(base: Path, plan: LabPlan, pki: LabPki) -> Path:
    root = fresh_root(base)
    write_everything(root, plan, pki, base)
    return root


@pytest.mark.parametrize("directory", ["etc/mosquitto/certs", "etc/mosquitto", "etc/ssh", "root/.ssh", "etc"])
def test_a_link_in_place_of_a_directory_stops_the_write(tmp_path: Path, plan: LabPlan, pki: LabPki,
                                                        directory: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "group").write_text("mosquitto:x:0:\n")  # so even the group lookup could be lured there
    root = fresh_root(tmp_path / "node")
    target = root / directory
    if target.exists():  # etc itself: the node's real etc moved aside, a link in its place
        target.rename(root / "etc.real")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside)
    with pytest.raises(TruckctlError) as refused:
        write_everything(root, plan, pki, tmp_path)
    assert refused.value.problems[0].code == "lab-unsafe-path"
    assert "symbolic link" in str(refused.value)
    assert sorted(p.name for p in outside.iterdir()) == ["group"]  # nothing written outside the root


def test_the_crl_write_on_revocation_replaces_a_planted_link(tmp_path: Path, plan: LabPlan, pki: LabPki) -> None:
    root = _written(tmp_path / "standin", plan, pki)
    host_file = tmp_path / "host.txt"
    host_file.write_bytes(HOST_TEXT)
    crl = root / "etc/mosquitto/certs/crl.pem"
    crl.unlink()
    crl.symlink_to(host_file)
    (root / "etc/mosquitto/mosquitto.conf").unlink()
    (root / "etc/mosquitto/mosquitto.conf").symlink_to(host_file)
    pki.revoke("truck-truck-a")
    standin.write_revocations(root, plan, pki)
    assert host_file.read_bytes() == HOST_TEXT
    assert crl.read_bytes().startswith(b"-----BEGIN X509 CRL-----") and stat.S_IMODE(crl.stat().st_mode) == 0o644


def test_modes_and_owners_are_set_on_the_written_file(tmp_path: Path, plan: LabPlan, pki: LabPki) -> None:
    root = _written(tmp_path / "standin", plan, pki)
    key = (root / "etc/mosquitto/certs/server.key").stat()
    assert stat.S_IMODE(key.st_mode) == 0o640 and key.st_gid == os.getgid()
    assert stat.S_IMODE((root / "root/.ssh").stat().st_mode) == 0o700
    wants = root / "etc/systemd/system/multi-user.target.wants/truckctl-standin.service"
    assert os.readlink(wants) == "/etc/systemd/system/truckctl-standin.service"
    assert not [p for p in root.rglob(".*truckctl-*")]  # no temporary file left


def test_paths_that_climb_out_are_refused(tmp_path: Path) -> None:
    for bad in ("../x", "etc/../../x", "", "."):
        with pytest.raises(ValueError):
            rootwrite.write_file(tmp_path, bad, b"x")


def _read_group_guarded(root: Path) -> BaseException | bytes:
    """rootwrite.read_file(root, "etc/group") in a thread: the outcome, or a test failure if it blocks
    (the guard only keeps a regression from hanging the suite; it measures nothing)."""
    outcome: list[BaseException | bytes] = []

    def run() -> None:
        try:
            outcome.append(rootwrite.read_file(root, "etc/group"))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive():  # unblock the stuck reader (a writer that opens and closes), then fail
        with contextlib.suppress(OSError):
            os.close(os.open(root / "etc/group", os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
        pytest.fail("reading the node's etc/group blocked (a FIFO planted in its place)")
    return outcome[0]


def _plant_fifo(root: Path) -> None:
    os.mkfifo(root / "etc/group")


def _plant_zero_device(root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(root / "etc/group", 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero: endless


def _plant_socket(root: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "etc/group"))


@pytest.mark.parametrize("plant", [_plant_fifo, _plant_zero_device, _plant_socket])
def test_a_special_file_planted_in_place_of_a_read_file_is_refused_without_blocking(
        tmp_path: Path, plant: Callable[[Path], None]) -> None:
    root = fresh_root(tmp_path / "node")
    (root / "etc/group").unlink()
    plant(root)
    outcome = _read_group_guarded(root)
    assert isinstance(outcome, TruckctlError), outcome
    assert outcome.problems[0].code == "lab-unsafe-path"
    assert "refusing to read /etc/group" in str(outcome) and "not a regular file" in str(outcome)


def test_a_read_is_bounded_and_reads_a_regular_file_whole(tmp_path: Path) -> None:
    root = fresh_root(tmp_path / "node")
    assert rootwrite.read_file(root, "etc/group") == f"root:x:0:\nmosquitto:x:{os.getgid()}:\n".encode()
    (root / "etc/big").write_bytes(b"x" * 5000)
    assert rootwrite.read_file(root, "etc/big", max_bytes=4096) == b"x" * 4096
