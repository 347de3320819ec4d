"""truckctl.remote's kept connections: one SSH master per node for callers that ask again and again."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from truckctl import remote
from truckctl.remote import Connection, KeptConnections, end_kept, kept_master, ssh_argv


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
        for name in ("a" * 40, "b" * 40):
            (kept.directory / name).touch()
    assert sorted(argv[argv.index("-O") + 1] for argv in calls) == ["exit", "exit"]
    assert all(argv[:3] == ["ssh", "-F", "/dev/null"] for argv in calls)
    assert {argv[argv.index("-O") - 1] for argv in calls} == {f"ControlPath={kept.directory / n}" for n in ("a" * 40,
                                                                                                          "b" * 40)}
    assert not kept.directory.exists()


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
    assert kept_master(conn, "10.31.1.11")
    end_kept(conn, "10.31.1.11")
    node = ssh_argv(conn, "10.31.1.11", None)[:-1]
    assert calls == [[*node[:-1], "-O", "check", node[-1]], [*node[:-1], "-O", "exit", node[-1]]]
