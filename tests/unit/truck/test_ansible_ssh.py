"""Ansible's SSH goes the way truckctl's own does (remote.py): no ssh_config, only truckctl's known_hosts,
paths quoted (issue 11 item 7). Real ssh parses the options (`ssh -G`), and a real ansible-playbook run
(Mitogen and Ansible's ssh plugin) under a hostile ~/.ssh/config never runs the ProxyCommand it sets."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import make_cloud
from truckctl.config.model import Stage
from truckctl.errors import TruckctlError
from truckctl.remote import Connection, ssh_argv
from truckctl.truck.plan import build_plan, connection_vars

Conn = Connection  # the real one: direct, as inside the truck


def _effective(args: list[str]) -> dict[str, list[str]]:
    proc = subprocess.run(["ssh", "-G", *args, "node.example"], capture_output=True, text=True, check=True)
    options: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition(" ")
        options.setdefault(name, []).append(value)
    return options


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_key_and_known_hosts_paths_with_spaces_reach_ssh_whole(tmp_path: Path) -> None:
    key = tmp_path / "lab keys" / "id ed25519"
    known = tmp_path / "state dir" / "known hosts"
    key.parent.mkdir()
    key.write_text("not read by ssh -G\n")
    variables = connection_vars(Conn("root", key, known))
    common = shlex.split(variables["ansible_ssh_common_args"])  # how Ansible and Mitogen split it
    assert common[:2] == ["-F", "/dev/null"]
    # Mitogen passes the key as `-i KEY`; Ansible's ssh plugin as -o IdentityFile="KEY".
    for key_args in (["-i", variables["ansible_ssh_private_key_file"]],
                     ["-o", f'IdentityFile="{variables["ansible_ssh_private_key_file"]}"']):
        options = _effective([*common, *key_args])
        assert options["userknownhostsfile"] == [str(known)]
        assert options["globalknownhostsfile"] == ["/dev/null"]
        assert options["stricthostkeychecking"] == ["true"]
        assert options["identitiesonly"] == ["yes"]
        assert str(key) in options["identityfile"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_truckctls_own_calls_offer_x25519_first_and_ansible_keeps_opensshs_default(tmp_path: Path) -> None:
    """truckctl's probes, prechecks and lock calls carry no secret and open many handshakes at once: X25519
    first (the post-quantum hybrid still offered after it); Ansible's connections carry the secrets and
    keep OpenSSH's own order, which puts the post-quantum hybrid first."""
    conn = Conn("root", tmp_path / "id", tmp_path / "known_hosts")
    own = ssh_argv(conn, "10.31.1.11", "true")
    options = _effective(own[1:-2])
    assert options["kexalgorithms"][0].split(",")[:2] == ["curve25519-sha256", "curve25519-sha256@libssh.org"]
    assert "sntrup761x25519-sha512@openssh.com" in options["kexalgorithms"][0]
    common = connection_vars(conn)["ansible_ssh_common_args"]
    assert "kex" not in common.lower()  # OpenSSH's own order: a post-quantum hybrid first (9.2: sntrup761)
    assert not _effective(shlex.split(common))["kexalgorithms"][0].startswith("curve25519")


def test_paths_ssh_cannot_carry_are_refused(tmp_path: Path) -> None:
    for bad in ('/x/"quoted"', "/x/100%", "/x/new\nline"):
        with pytest.raises(TruckctlError) as caught:
            connection_vars(Conn("root", Path(bad), tmp_path / "known_hosts"))
        assert caught.value.problems[0].code == "unusable-path"


RUN = """
import sys
from pathlib import Path
from tests.helpers import make_cloud
from truckctl.config.loader import load_stage
from truckctl.project import Project
from truckctl.truck.plan import build_plan
from truckctl.truck.runner import RunnerSettings, run_plan
from tests.unit.truck.test_ansible_ssh import Conn

work = Path(sys.argv[1])
stage = load_stage(Project(Path(sys.argv[2])), "stage-1")
conn = Conn("root", work / "key dir" / "id_ed25519", work / "known hosts")
plan = build_plan(Path(sys.argv[2]) / "playbooks", stage, make_cloud(stage), conn, "lab", limit="truck-a-gw")
host = plan.inventory["all"]["children"]["trucks"]["children"]["truck_a"]["hosts"]["truck-a-gw"]
host.update({"ansible_host": "127.0.0.1", "ansible_port": 9})  # nothing listens: unreachable, quickly
result = run_plan(plan, RunnerSettings(work / "state"))
print(result.status, sorted(result.hosts))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ssh") is None,
                    reason="needs root and unshare: the hostile ssh_config goes in a private mount namespace")
@pytest.mark.parametrize("mitogen", ["1", "0"], ids=["mitogen", "ssh-plugin"])
def test_a_hostile_ssh_config_in_home_is_ignored(tmp_path: Path, stage: Stage, mitogen: str) -> None:
    """ssh reads ~/.ssh/config from the passwd home (not $HOME): a tmp dir is bind-mounted over its .ssh in
    a private mount namespace of the test's own process, so nothing outside the test sees it."""
    marker = Path(f"/tmp/PWNED-ssh-{uuid.uuid4().hex}")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(f"Host *\n  ProxyCommand /bin/sh -c 'touch {marker}; exit 1'\n"
                                          f"  UserKnownHostsFile {tmp_path}/evil_known_hosts\n")
    (tmp_path / "key dir").mkdir()
    (tmp_path / "key dir" / "id_ed25519").write_text("")
    repo = Path(__file__).resolve().parents[3]
    real_ssh = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"
    if not real_ssh.is_dir():
        pytest.skip(f"no {real_ssh} to mount the hostile one over")
    script = (f"mount --bind {shlex.quote(str(home / '.ssh'))} {shlex.quote(str(real_ssh))} && "
              f"exec {shlex.quote(sys.executable)} -c {shlex.quote(RUN)} {shlex.quote(str(tmp_path))} "
              f"{shlex.quote(str(repo))}")
    env = {**os.environ, "HOME": str(home), "TRUCKCTL_MITOGEN": mitogen, "PYTHONPATH": str(repo)}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], cwd=repo,
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "['truck-a-gw']" in proc.stdout  # the run reached the node's SSH step (and found nothing there)
    assert not marker.exists(), "Ansible's ssh honoured the ProxyCommand of ~/.ssh/config"


def test_build_plan_uses_the_same_ssh_options(stage: Stage, tmp_path: Path) -> None:
    conn = Conn("root", tmp_path / "a b" / "key", tmp_path / "c d" / "known_hosts")
    plan = build_plan(tmp_path, stage, make_cloud(stage), conn, "lab")
    assert {k: v for k, v in plan.inventory["all"]["vars"].items() if k.startswith("ansible_")} == connection_vars(conn)
