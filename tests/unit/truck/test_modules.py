"""The playbooks' own modules and validators, exercised on a temporary directory: truck_files
(write, validate, check mode, diffs, prune, links, removal), networkd-check and mosquitto-check."""

from __future__ import annotations

import grp
import importlib.machinery
import importlib.util
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import REPO

PLAYBOOKS = REPO / "playbooks"
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def load(path: Path, name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


truck_files = load(PLAYBOOKS / "library" / "truck_files.py", "truck_files")
mosquitto_check = load(PLAYBOOKS / "roles" / "telemetry" / "files" / "mosquitto-check", "mosquitto_check")


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, check: bool = False) -> None:
        self.check_mode = check

    def fail_json(self, **kwargs: Any) -> None:
        raise Failed(kwargs["msg"])


def converge(files: list[dict[str, Any]], check: bool = False, dirs: list[dict[str, Any]] | None = None,
             prune: list[dict[str, Any]] | None = None) -> Any:
    converger = truck_files.Converger(FakeModule(check))
    for spec in dirs or []:
        converger.directory({"owner": USER, "group": GROUP, **spec})
    for spec in files:
        converger.file({"owner": USER, "group": GROUP, **spec})
    for spec in prune or []:
        converger.prune(spec, {f["path"] for f in files if f.get("state", "present") != "absent"})
    return converger


def test_files_are_written_once_then_left_alone(tmp_path: Path) -> None:
    target = str(tmp_path / "etc" / "app.conf")
    first = converge([{"path": target, "content": "a = 1\n", "mode": "0640"}],
                     dirs=[{"path": str(tmp_path / "etc"), "mode": "0750"}])
    assert first.changed == [str(tmp_path / "etc"), target]
    assert Path(target).read_text() == "a = 1\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert first.diffs == [{"before_header": target, "after_header": target, "before": "", "after": "a = 1\n"}]
    second = converge([{"path": target, "content": "a = 1\n", "mode": "0640"}],
                      dirs=[{"path": str(tmp_path / "etc"), "mode": "0750"}])
    assert second.changed == [] and second.diffs == []


def test_mode_drift_is_fixed_without_rewriting(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x\n")
    os.chmod(target, 0o666)
    result = converge([{"path": str(target), "content": "x\n", "mode": "0600"}])
    assert result.changed == [str(target)] and result.diffs == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_check_mode_reports_the_diff_and_touches_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old\n")
    result = converge([{"path": str(target), "content": "new\n"}, {"path": str(tmp_path / "gone"), "state": "absent"},
                       {"path": str(tmp_path / "l"), "link_to": "/etc/hostname"}], check=True)
    assert result.changed == [str(target), str(tmp_path / "l")]
    assert result.diffs[0]["before"] == "old\n" and result.diffs[0]["after"] == "new\n"
    assert target.read_text() == "old\n"
    assert not (tmp_path / "l").exists()


def test_check_mode_on_a_fresh_node_tolerates_owners_a_package_will_create(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x\n")
    spec = {"path": str(target), "content": "x\n", "owner": "no-such-user-truckctl"}
    assert truck_files.Converger(FakeModule(check=True)).attributes(str(target), spec, "0644") is True
    with pytest.raises(Failed, match="unknown owner"):
        truck_files.Converger(FakeModule(check=False)).attributes(str(target), spec, "0644")


def test_validate_runs_on_the_candidate_and_a_refusal_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("ok old\n")
    converge([{"path": str(target), "content": "ok new\n", "validate": "/bin/grep -q ok %s"}])
    assert target.read_text() == "ok new\n"
    with pytest.raises(Failed, match="failed to validate"):
        converge([{"path": str(target), "content": "bad\n", "validate": "/bin/grep -q ok %s"}])
    assert target.read_text() == "ok new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temporary file left behind


def test_links_and_removals(tmp_path: Path) -> None:
    link, doomed = tmp_path / "localtime", tmp_path / "old.conf"
    doomed.write_text("x")
    result = converge([{"path": str(link), "link_to": "/usr/share/zoneinfo/Europe/Rome"},
                       {"path": str(doomed), "state": "absent"}])
    assert os.readlink(link) == "/usr/share/zoneinfo/Europe/Rome"
    assert not doomed.exists()
    assert result.changed == [str(link), str(doomed)]
    assert converge([{"path": str(link), "link_to": "/usr/share/zoneinfo/Europe/Rome"}]).changed == []


def test_prune_removes_only_unwanted_matching_files(tmp_path: Path) -> None:
    for name in ("20-truckctl-vlan110.netdev", "20-truckctl-vlan999.netdev", "10-truckctl-lan.network"):
        (tmp_path / name).write_text("x")
    keep = str(tmp_path / "20-truckctl-vlan110.netdev")
    result = converge([{"path": keep, "content": "x"}],
                      prune=[{"path": str(tmp_path), "patterns": ["20-truckctl-vlan*"]}])
    assert result.changed == [str(tmp_path / "20-truckctl-vlan999.netdev")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10-truckctl-lan.network", "20-truckctl-vlan110.netdev"]


def networkd_check(tmp_path: Path, text: str, kind: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "candidate"
    path.write_text(text)
    script = PLAYBOOKS / "roles" / "common" / "files" / "networkd-check"
    return subprocess.run([sys.executable, str(script), str(path), "--kind", kind], capture_output=True, text=True,
                          check=False)


LAN = "[Match]\nName=eth0\n\n[Network]\nAddress=10.31.1.11/24\nVLAN=vlan110\nDNS=10.31.1.11\n"
VLAN = "[NetDev]\nName=vlan110\nKind=vlan\n\n[VLAN]\nId=110\n"
WG = ("[NetDev]\nName=wg-mgmt\nKind=wireguard\n[WireGuard]\nPrivateKeyFile=/k\n[WireGuardPeer]\n"
      "PublicKey=xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nEndpoint=100.64.10.2:51820\nAllowedIPs=10.100.0.0/16\n")


@pytest.mark.parametrize(("text", "kind"), [(LAN, "network"), (VLAN, "netdev"), (WG, "netdev")])
def test_networkd_check_accepts_what_the_roles_render(tmp_path: Path, text: str, kind: str) -> None:
    proc = networkd_check(tmp_path, text, kind)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("text", "kind", "error"), [
    (LAN.replace("Address=10.31.1.11/24", "Address=10.31.1.300/24"), "network", "Address"),
    (LAN.replace("VLAN=vlan110", "Vlan=vlan110"), "network", "unknown key Vlan"),
    (VLAN.replace("Id=110", "Id=4095"), "netdev", "out of 1-4094"),
    (VLAN.replace("Name=vlan110", "Name=a-very-long-vlan-name"), "netdev", "interface name"),
    (VLAN.replace("[VLAN]", "[Vlan]"), "netdev", "unknown section"),
    (WG.replace("xTIBA5rb", "xTIB"), "netdev", "PublicKey"),
    ("Name=eth0\n", "network", "expected [Section]"),
    ("[Network]\nAddress=10.0.0.1/24\n", "network", "[Match] needs Name"),
])
def test_networkd_check_rejects_broken_files(tmp_path: Path, text: str, kind: str, error: str) -> None:
    proc = networkd_check(tmp_path, text, kind)
    assert proc.returncode == 1
    assert error in proc.stderr


def test_mosquitto_check_moves_listeners_and_bridges_out_of_the_way(tmp_path: Path) -> None:
    for name, kind in (("ca.pem", "CERTIFICATE"), ("truck.crt", "CERTIFICATE"), ("truck.key", "PRIVATE KEY")):
        (tmp_path / name).write_text(f"-----BEGIN {kind}-----\nx\n-----END {kind}-----\n")
    config = (f"pid_file /run/mosquitto/mosquitto.pid\npersistence true\nlistener 1883 10.31.1.11\n"
              f"listener 1883 127.0.0.1\nconnection cloud\naddress 100.64.10.2:8883\n"
              f"bridge_cafile {tmp_path}/ca.pem\nbridge_certfile {tmp_path}/truck.crt\n"
              f"bridge_keyfile {tmp_path}/truck.key\ntopic telemetry/# out 1 \"\" gdf27/truck-a/\n")
    text, problems = mosquitto_check.rewrite(config, 40001, 40002)
    assert problems == []
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("listener")] == ["listener 40001 127.0.0.1"]
    assert "address 127.0.0.1:40002" in lines
    assert not any(line.startswith(("pid_file", "persistence true")) for line in lines)
    assert "topic telemetry/# out 1 \"\" gdf27/truck-a/" in lines


def test_mosquitto_check_reports_missing_bridge_files(tmp_path: Path) -> None:
    _, problems = mosquitto_check.rewrite(f"bridge_keyfile {tmp_path}/none.key\n", 1, 2)
    assert problems and "none.key" in problems[0]
