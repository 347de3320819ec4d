"""truckctl.remote's kept connections: one SSH master per node for callers that ask again and again."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from truckctl import remote
from truckctl.errors import TruckctlError
from truckctl.processes import start_time
from truckctl.remote import (
    Connection,
    KeptConnections,
    control_dir,
    control_path,
    end_kept,
    end_masters,
    kept_master,
    ssh_argv,
)


def listening(path: Path) -> socket.socket:
    """A Unix socket at `path`, as an SSH master's control socket is."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile.gettempdir() is a directory of this test's (the control directories go there)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_kept_connection_rides_on_one_master_per_node_set_before_any_config_file(tmp_path: Path) -> None:
    kept = KeptConnections()
    try:
        conn = kept.over(Connection("root", tmp_path / "key", tmp_path / "known_hosts", ssh_config=tmp_path / "cfg"))
        argv = ssh_argv(conn, "10.31.1.11", "true")
        master = argv[:argv.index("-F")]  # ssh keeps the first value it reads: the -F file cannot undo them
        assert "ControlMaster=auto" in master and f"ControlPath={kept.directory}/%C" in master
        assert f"ControlPersist={remote.KEPT_PERSIST_S}" in master and "ServerAliveInterval=5" in master
        assert "StrictHostKeyChecking=yes" in argv and argv[-2:] == ["root@10.31.1.11", "true"]
        assert stat.S_IMODE(kept.directory.stat().st_mode) == 0o700
        # a hop's stdio forward (`-W`) never rides on a node's master
        assert not any("Control" in a for a in ssh_argv(conn, "hop", None, stdio_forward="10.31.1.11:22"))
        plain = ssh_argv(Connection("root", tmp_path / "key", tmp_path / "known_hosts"), "10.31.1.11", "true")
        assert not any("Control" in a for a in plain)
    finally:
        kept.close()


def test_close_ends_every_master_without_reading_the_users_ssh_config_and_removes_the_directory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0)
    monkeypatch.setattr(subprocess, "run", run)
    with KeptConnections() as kept:
        sockets = [listening(kept.directory / name) for name in ("a" * 40, "b" * 40)]
        (kept.directory / "not-a-socket").touch()
    assert sorted(argv[argv.index("-O") + 1] for argv in calls) == ["exit", "exit"]
    assert all(argv[:3] == ["ssh", "-F", "/dev/null"] for argv in calls)
    assert {argv[argv.index("-O") - 1] for argv in calls} == {f"ControlPath={kept.directory / n}" for n in ("a" * 40,
                                                                                                          "b" * 40)}
    assert not kept.directory.exists()
    for sock in sockets:
        sock.close()


def test_check_and_end_ask_the_local_master_with_the_nodes_own_command_line(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0 if argv[argv.index("-O") + 1] == "check" else 255)
    monkeypatch.setattr(subprocess, "run", run)
    conn = Connection("root", tmp_path / "key", tmp_path / "known_hosts")
    assert not kept_master(conn, "10.31.1.11") and calls == []  # nothing kept: nothing asked
    end_kept(conn, "10.31.1.11")
    assert calls == []
    conn = Connection("root", tmp_path / "key", tmp_path / "known_hosts", kept_in=tmp_path)
    assert not kept_master(conn, "10.31.1.11") and calls == []  # no master's socket there: nothing asked
    master = listening(tmp_path / "m")
    assert kept_master(conn, "10.31.1.11")
    end_kept(conn, "10.31.1.11")
    node = ssh_argv(conn, "10.31.1.11", None)[:-1]
    assert calls == [[*node[:-1], "-O", "check", node[-1]], [*node[:-1], "-O", "exit", node[-1]]]
    master.close()


def test_lasting_connections_keep_one_directory_per_connection_and_outlive_their_owner(
        own_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kwargs: ended.append(argv))
    state = tmp_path / "state"
    direct = Connection("root", state / "key", state / "known_hosts")
    via_path = Connection("root", state / "key", state / "known_hosts-path", ssh_config=state / "config-1")
    with KeptConnections.lasting_for(state) as kept:
        assert kept.directory == control_dir(state) == control_path(state)
        first, again = kept.over(direct), kept.over(direct)
        other = kept.over(via_path)
    assert first.kept_in == again.kept_in and first.kept_in is not None and other.kept_in not in (None, first.kept_in)
    assert first.kept_in.parent == other.kept_in.parent == control_path(state)
    # a socket's path (%C is 40 hex digits) under /tmp stays within the 107 bytes Unix allows
    assert len(f"{first.kept_in}/{'0' * 40}") - len(str(own_tmp)) + len("/tmp") <= 100
    assert stat.S_IMODE(first.kept_in.stat().st_mode) == 0o700 and first.kept_in.is_dir()  # left for the next one
    assert ended == []
    assert control_path(tmp_path / "another-state") != control_path(state)  # operators never share one


def test_end_masters_ends_every_socket_below_a_directory_and_nothing_else(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[str] = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kwargs: ended.append(argv[argv.index("-O") - 1]))
    (tmp_path / "n1").mkdir()
    sockets = [listening(tmp_path / "hop"), listening(tmp_path / "n1" / "node")]
    (tmp_path / "n1" / "file").touch()
    assert end_masters(tmp_path) == 2 and end_masters(tmp_path / "absent") == 0
    assert ended == [f"ControlPath={tmp_path / 'hop'}", f"ControlPath={tmp_path / 'n1' / 'node'}"]
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("planted", ["base", "own"])
def test_a_control_directory_others_can_write_is_refused_in_one_line(own_tmp: Path, tmp_path: Path,
                                                                      planted: str) -> None:
    state = tmp_path / "state"
    path = control_path(state)
    victim = path.parent if planted == "base" else path
    path.parent.mkdir(mode=0o700)
    path.mkdir(mode=0o700)
    victim.chmod(0o777)
    with pytest.raises(TruckctlError) as caught:
        control_dir(state)
    problem = caught.value.problems[0]
    assert problem.code == "unsafe-control-dir" and str(victim) in problem.message and "\n" not in problem.message


def test_a_killed_owners_private_directory_is_swept_by_the_next_and_a_live_owners_left(
        own_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    ended: list[str] = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kwargs: ended.append(argv[argv.index("-O") - 1]))
    killed = own_tmp / f"truckctl-kept-{dead.pid}-12345-abcd"
    reused = own_tmp / f"truckctl-kept-{os.getpid()}-1-abcd"  # this pid, another process's start: its owner is gone
    live = own_tmp / f"truckctl-kept-{os.getpid()}-{start_time(os.getpid())}-abcd"
    unnamed = own_tmp / "truckctl-kept-abcd"  # no owner in its name: never guessed at
    for directory in (killed, reused, live, unnamed):
        directory.mkdir(mode=0o700)
    master = listening(killed / "c")
    with KeptConnections() as kept:
        assert kept.directory.name.startswith(f"truckctl-kept-{os.getpid()}-{start_time(os.getpid())}-")
    assert ended == [f"ControlPath={killed / 'c'}"]
    assert not killed.exists() and not reused.exists() and live.is_dir() and unnamed.is_dir()
    master.close()
