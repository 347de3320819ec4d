"""Every private file truckctl writes (lab CA and leaf keys, the VPN key, SSH keys and known_hosts,
the one-time vault, Ansible's inventory and extra vars) goes through one writer that replaces a link
planted at its path instead of writing through it: the link's target (a temp file of this test, never
a system file) keeps its bytes and mode, nothing is created through a dangling link, the new file is a
regular file of the asked mode (0600 for secrets), and no temporary file is left."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import FakeConnection, make_cloud
from truckctl.config.model import Stage
from truckctl.lab.pki import LabPki
from truckctl.lab.ssh import ensure_keypair, write_known_hosts
from truckctl.private_file import write_private
from truckctl.truck.plan import build_plan
from truckctl.truck.runner import write_data_files
from truckctl.truck.vault import new_password, write_encrypted_vars

HOST_TEXT = b"host file: must stay as it is\n"


@pytest.fixture
def wide_umask() -> Iterator[None]:
    """The modes must come from the writer, not from a kind umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def plant(target: Path, host: Path) -> os.stat_result:
    """A link at `target` to a host file (as a compromised or careless neighbour would plant)."""
    host.write_bytes(HOST_TEXT)
    os.chmod(host, 0o644)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(host)
    return host.stat()


def assert_replaced(target: Path, host: Path, before: os.stat_result, mode: int = 0o600) -> None:
    after = host.stat()
    assert host.read_bytes() == HOST_TEXT
    assert (after.st_mode, after.st_ino, after.st_mtime_ns) == (before.st_mode, before.st_ino, before.st_mtime_ns)
    assert not target.is_symlink() and stat.S_ISREG(target.lstat().st_mode)
    assert stat.S_IMODE(target.lstat().st_mode) == mode
    assert not [p for p in target.parent.iterdir() if ".truckctl-" in p.name]  # no temporary file left


def test_the_writer_replaces_a_planted_link_and_sets_the_mode(tmp_path: Path, wide_umask: None) -> None:
    target = tmp_path / "state" / "secret.key"
    before = plant(target, tmp_path / "host.txt")
    assert write_private(target, "new secret\n") == target
    assert_replaced(target, tmp_path / "host.txt", before)
    assert target.read_bytes() == b"new secret\n"
    write_private(target, b"public\n", 0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_bytes() == b"public\n"


def test_nothing_is_created_through_a_dangling_link(tmp_path: Path) -> None:
    target = tmp_path / "state" / "vpn.key"
    target.parent.mkdir()
    target.symlink_to(tmp_path / "created-through-the-link")
    write_private(target, b"k\n")
    assert not (tmp_path / "created-through-the-link").exists()
    assert target.read_bytes() == b"k\n" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "state" / "key").mkdir(parents=True)  # a directory where the file goes: rename fails
    with pytest.raises(IsADirectoryError):
        write_private(tmp_path / "state" / "key", b"x")
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["key"]


def _pki_ca(state: Path) -> tuple[Path, Callable[[], object]]:
    pki = LabPki(state)
    return pki.ca.key, pki.ensure_ca


def _pki_leaf(state: Path) -> tuple[Path, Callable[[], object]]:
    pki = LabPki(state)
    return pki.leaf("truck-truck-a").key, lambda: pki.ensure_client("truck-truck-a", "gdf27-truck-a")


def _pki_vpn(state: Path) -> tuple[Path, Callable[[], object]]:
    pki = LabPki(state)
    return state / "vpn.key", pki.wireguard_public_key


def _ssh_key(state: Path) -> tuple[Path, Callable[[], object]]:
    key = state / "id_ed25519"
    return key, lambda: ensure_keypair(key, "truckctl@lab")


def _vault(state: Path) -> tuple[Path, Callable[[], object]]:
    path = state / "secrets.vault"
    return path, lambda: write_encrypted_vars(path, {"k": "v"}, new_password())


WRITERS = {"lab CA key": _pki_ca, "lab leaf key": _pki_leaf, "lab VPN key": _pki_vpn, "SSH key": _ssh_key,
           "one-time vault": _vault}


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_every_secret_writer_replaces_a_planted_link(tmp_path: Path, wide_umask: None,
                                                     writer: Callable[[Path], tuple[Path, Callable[[], object]]]
                                                     ) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target, write = writer(state)
    host = tmp_path / "host.txt"
    before = plant(target, host)
    if target.name == "vpn.key":  # read when present: only a dangling link leads to a write
        target.unlink()
        target.symlink_to(tmp_path / "created-through-the-link")
    write()
    assert_replaced(target, host, before)
    assert not (tmp_path / "created-through-the-link").exists()


def test_known_hosts_and_public_keys_replace_a_planted_link(tmp_path: Path, wide_umask: None) -> None:
    known = tmp_path / "state" / "known_hosts"
    before = plant(known, tmp_path / "host.txt")
    write_known_hosts(known, [(["truck-a-gw", "10.31.1.1"], "ssh-ed25519 AAAA x")])
    assert_replaced(known, tmp_path / "host.txt", before, 0o644)
    public = tmp_path / "state" / "id_ed25519.pub"
    before = plant(public, tmp_path / "host2.txt")
    ensure_keypair(tmp_path / "state" / "id_ed25519", "truckctl@lab")
    assert_replaced(public, tmp_path / "host2.txt", before, 0o644)


def test_ansibles_inventory_and_extra_vars_replace_a_planted_link(tmp_path: Path, stage: Stage,
                                                                 wide_umask: None) -> None:
    plan = build_plan(Path("/repo/playbooks"), stage, make_cloud(stage), FakeConnection(), "lab")
    private = tmp_path / "private"
    befores = {name: plant(private / name, tmp_path / f"host-{name}") for name in ("inventory.yml", "extravars.yml")}
    inventory, extravars = write_data_files(private, plan)
    for path in (inventory, extravars):
        assert_replaced(path, tmp_path / f"host-{path.name}", befores[path.name])
    assert b"!unsafe" in inventory.read_bytes()
