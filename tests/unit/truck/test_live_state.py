"""truck_live_state on a fake node (a directory standing for /, commands answered by a fake): each kind
of live drift is found with what was expected and what was found, and the fix puts it back. The
lab test (tests/lab/test_live_drift.py) does the same on real nodes; sysctl only here, because the
lab's containers may not set any kernel setting."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.truck.test_modules import PLAYBOOKS


def _load() -> ModuleType:
    """The module's source as a Python module (registered first: its dataclasses look themselves up)."""
    spec = importlib.util.spec_from_file_location("truck_live_state", PLAYBOOKS / "library" / "truck_live_state.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["truck_live_state"] = module
    spec.loader.exec_module(module)
    return module


live = _load()

OPS_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsOpsOpsOpsOpsOpsOpsOpsOpsOpsOpsOpsOpsOpsOps ops@race"
ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdminAdminAdminAdminAdminAdminAdminAdminAdm truckctl"
EXTRA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIntruderIntruderIntruderIntruderIntruderIn intruder"
RULESET = "table inet truckctl {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n"
# as the real `sshd -T` prints it: a list keyword (AllowUsers) one name per line
SSHD_T = ("passwordauthentication {pw}\npermitrootlogin without-password\nauthorizedkeysfile .ssh/authorized_keys\n"
          "allowusers root\nallowusers {users}\n")
TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp_line(local: str, state: str, inode: int) -> str:
    return f"   0: {local} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n"


class FakeNode:
    """The node's answers to commands; `commands` records what the fix ran."""

    def __init__(self) -> None:
        self.password_auth = "no"
        self.allowed_users = "raceops"
        self.live_ruleset = RULESET
        self.sources = ["10.47.1.11"]
        self.commands: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.commands.append(argv)
        if argv[:2] == ["/usr/sbin/sshd", "-T"]:
            return 0, SSHD_T.format(pw=self.password_auth, users=self.allowed_users), ""
        if argv[0] == "unshare":
            return 0, RULESET, ""
        if argv[:3] == ["nft", "list", "ruleset"]:
            return 0, self.live_ruleset, ""
        if argv[0] == "chronyc":
            return 0, "".join(f"^,*,{s},2,6,17,51,0,0,0\n" for s in self.sources), ""
        return 0, "", ""


def write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, FakeNode]:
    root = tmp_path
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nraceops:x:1000:1000::/home/raceops:/bin/bash\n"
          "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    write(root, "/etc/shadow", "root:*:19000:0:99999:7:::\nraceops:!:19000:0:99999:7:::\ndaemon:*:19000::::::\n")
    write(root, "/etc/group", "root:x:0:\nsudo:x:27:\nraceops:x:1000:\n")
    write(root, "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n")
    write(root, "/etc/sudoers.d/README", "# README\n")
    write(root, "/etc/sudoers.d/truckctl-ops", "raceops ALL=(ALL:ALL) NOPASSWD: ALL\n")
    write(root, "/root/.ssh/authorized_keys", ADMIN_KEY + "\n")
    write(root, "/home/raceops/.ssh/authorized_keys", OPS_KEY + "\n")
    write(root, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nX11Forwarding yes\n")
    write(root, "/etc/ssh/sshd_config.d/10-truckctl.conf", "PasswordAuthentication no\n"
          "PermitRootLogin prohibit-password\nAllowUsers root raceops\n")
    write(root, "/etc/nftables.conf", "flush ruleset\n")
    write(root, "/etc/chrony/chrony.conf", "server 10.47.1.11 iburst prefer\npool 0.debian.pool.ntp.org iburst\n")
    write(root, "/etc/sysctl.d/60-truckctl.conf", "# hardening\nkernel.kptr_restrict = 2\n")
    write(root, "/proc/sys/kernel/kptr_restrict", "2\n")
    write(root, "/proc/net/tcp", TCP_HEADER + tcp_line("00000000:0016", "0A", 1001))
    for proto in ("tcp6", "udp", "udp6"):
        write(root, f"/proc/net/{proto}", TCP_HEADER)
    write(root, "/proc/34/cgroup", "0::/system.slice/ssh.service\n")
    write(root, "/proc/34/comm", "sshd\n")
    (root / "proc/34/fd").mkdir()
    os.symlink("socket:[1001]", root / "proc/34/fd/3")
    return root, FakeNode()


def params(**changes: Any) -> dict[str, Any]:
    base = {"ops_users": [{"name": "raceops", "ssh_public_key": OPS_KEY}], "admin_user": "root",
            "admin_keys": [ADMIN_KEY], "console_accounts": ["root"], "sudoers_files": ["truckctl-ops", "README"],
            "sudo_members": [], "sshd_conf": "/etc/ssh/sshd_config.d/10-truckctl.conf",
            "nft_conf": "/etc/nftables.conf", "chrony_conf": "/etc/chrony/chrony.conf", "broker_conf": "",
            "broker_unit": "mosquitto", "units": ["ssh", "chrony"], "allow_tcp": [22], "allow_udp": [],
            "sysctl_files": ["/etc/sysctl.d/*truckctl*.conf"], **changes}
    return {**base, "accounts": live.configured_accounts(base)}


def measure(root: Path, fake: FakeNode, **changes: Any) -> list[Any]:
    items, _ = live.Node(params(**changes), str(root), fake).measure()
    return items


def test_a_converged_node_has_no_live_drift(node: tuple[Path, FakeNode]) -> None:
    assert measure(*node) == []


def test_every_kind_of_hand_change_is_found_and_fixed(node: tuple[Path, FakeNode]) -> None:
    root, fake = node
    fake.password_auth = "yes"  # PasswordAuthentication yes before the Include
    write(root, "/etc/ssh/sshd_config", "PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n")
    fake.live_ruleset = RULESET.replace("policy drop;\n", "policy drop;\n\t\taccept\n")
    write(root, "/etc/sudoers.d/zz-intruder", "intruder ALL=(ALL) NOPASSWD: ALL\n")
    write(root, "/root/.ssh/authorized_keys", f"{ADMIN_KEY}\n{EXTRA_KEY}\n")
    with open(root / "etc/passwd", "a") as handle:
        handle.write("intruder:x:1001:1001::/home/intruder:/bin/bash\n")
    with open(root / "etc/shadow", "a") as handle:
        handle.write("intruder:$y$j9T$abc$def:19000:0:99999:7:::\n")
    write(root, "/etc/group", "root:x:0:\nsudo:x:27:raceops\nraceops:x:1000:\n")
    fake.sources = ["10.47.1.11", "192.0.2.55"]
    write(root, "/proc/sys/kernel/kptr_restrict", "0\n")
    with open(root / "proc/net/tcp", "a") as handle:
        handle.write(tcp_line("00000000:223D", "0A", 2002))  # 0.0.0.0:8765
    write(root, "/proc/77/cgroup", "0::/system.slice/backdoor.service\n")
    write(root, "/proc/77/comm", "python3\n")
    (root / "proc/77/fd").mkdir()
    os.symlink("socket:[2002]", root / "proc/77/fd/4")

    items = measure(root, fake)
    found = {(i.kind, i.item): i for i in items}
    assert found["sshd", "passwordauthentication"].expected == "no"
    assert found["sshd", "passwordauthentication"].found == "yes"
    assert "+\t\taccept" in found["firewall", "live nftables ruleset"].diff
    assert "NOPASSWD: ALL" in found["sudo", "/etc/sudoers.d/zz-intruder"].diff
    assert found["sudo", "group sudo"].found == "member raceops"
    assert "intruder" in found["authorized-keys", "root /root/.ssh/authorized_keys"].diff
    assert found["account", "intruder"].found == "can log in (/bin/bash, password)"
    assert found["time-source", "192.0.2.55"].found == "used by chronyd"
    assert "backdoor" in found["listener", "tcp 0.0.0.0:8765"].found
    assert (found["sysctl", "kernel.kptr_restrict"].expected, found["sysctl", "kernel.kptr_restrict"].found) == (
        "2", "0")
    assert len(items) == 9

    done = live.Node(params(), str(root), fake).fix(items)
    assert "commented out passwordauthentication in /etc/ssh/sshd_config" in done
    sshd_config = (root / "etc/ssh/sshd_config").read_text()
    assert "# disabled by truckctl drift --fix: PasswordAuthentication yes" in sshd_config
    assert (root / "root/.ssh/authorized_keys").read_text() == ADMIN_KEY + "\n"
    assert not (root / "etc/sudoers.d/zz-intruder").exists()
    assert (root / "proc/sys/kernel/kptr_restrict").read_text() == "2\n"
    ran = [" ".join(c) for c in fake.commands]
    for command in ("nft -f /etc/nftables.conf", "usermod --lock --expiredate 1 --shell /usr/sbin/nologin intruder",
                    "gpasswd --delete raceops sudo", "systemctl stop backdoor.service", "systemctl restart chrony",
                    "systemctl reload ssh"):
        assert command in ran


def test_what_the_configuration_does_not_decide_is_not_drift(node: tuple[Path, FakeNode]) -> None:
    root, fake = node
    write(root, "/etc/motd", "hello\n")
    write(root, "/etc/sudoers.d/notes.txt", "sudo skips names with a dot\n")
    write(root, "/home/daemon-keys/.ssh/authorized_keys", EXTRA_KEY + "\n")  # nologin account's home: no login
    assert measure(root, fake) == []


def test_admin_keys_not_given_are_not_checked(node: tuple[Path, FakeNode]) -> None:
    root, fake = node
    write(root, "/root/.ssh/authorized_keys", f"{ADMIN_KEY}\n{EXTRA_KEY}\n")
    assert measure(root, fake, admin_keys=None) == []


def test_a_kernel_setting_the_node_may_not_set_is_listed_not_drift(node: tuple[Path, FakeNode],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/sys mounted read-only (the lab's containers): access(W_OK) says no, even to root."""
    root, fake = node
    write(root, "/proc/sys/kernel/kptr_restrict", "0\n")
    monkeypatch.setattr(live.os, "access", lambda path, mode: not str(path).startswith(str(root / "proc/sys")))
    items, unsettable = live.Node(params(), str(root), fake).measure()
    assert items == [] and unsettable == ["kernel.kptr_restrict"]


def test_every_unit_the_roles_run_is_in_the_live_state_list() -> None:
    """Sockets of the roles' units may listen: the live_state role's list must name every one of them."""
    import yaml

    defaults = (PLAYBOOKS / "roles" / "live_state" / "defaults" / "main.yml").read_text()
    listed = yaml.safe_load(defaults)["live_state_units"]
    for tasks in (PLAYBOOKS / "roles").glob("*/tasks/main.yml"):
        for task in yaml.safe_load(tasks.read_text()) or []:
            names = (task.get("truck_files") or {}).get("services", [])
            # a list, or an expression choosing among quoted unit names (the network role's)
            units = re.findall(r"'([\w@.-]+)'", names) if isinstance(names, str) else names
            assert units or not names, (tasks, names)
            for unit in units:
                if unit != "nftables":  # a oneshot: it loads the ruleset, nothing listens
                    assert f"'{unit}'" in listed, (tasks, unit)


def test_a_name_list_keyword_is_compared_as_a_set_of_names(node: tuple[Path, FakeNode]) -> None:
    """`AllowUsers root raceops` comes back from `sshd -T` as two lines: not drift; a name added by hand is."""
    root, fake = node
    assert measure(root, fake) == []
    fake.allowed_users = "raceops\nallowusers intruder"
    found = {(item.kind, item.item): item for item in measure(root, fake)}
    assert found["sshd", "allowusers"].found == "intruder | raceops | root"


def test_while_live_the_fixes_that_cut_telemetry_are_held_and_the_rest_applied(node: tuple[Path, FakeNode]) -> None:
    """cuts_telemetry names what interrupts telemetry on this node (a gateway: the ruleset reload and the broker's
    restart); with hold_cuts those items are flagged and not fixed, everything else is."""
    root, fake = node
    fake.password_auth = "yes"
    write(root, "/etc/ssh/sshd_config", "PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n")
    fake.live_ruleset = RULESET.replace("policy drop;\n", "policy drop;\n\t\taccept\n")
    fake.sources = ["10.47.1.11", "192.0.2.55"]
    gateway = live.Node(params(cuts_telemetry=["firewall", "mosquitto"], hold_cuts=True), str(root), fake)
    items = gateway.measure()[0]
    assert {(i.kind, gateway.cuts(i)) for i in items} == {("sshd", False), ("firewall", True), ("time-source", False)}
    done = gateway.fix(items)
    ran = [" ".join(c) for c in fake.commands]
    assert "nft -f /etc/nftables.conf" not in ran and "reloaded the ruleset from /etc/nftables.conf" not in done
    assert "systemctl reload ssh" in ran and "systemctl restart chrony" in ran
    assert live.Node(params(cuts_telemetry=["firewall"]), str(root), fake).fix(items)  # not held: fixed
    assert "nft -f /etc/nftables.conf" in [" ".join(c) for c in fake.commands]


def test_a_broker_older_than_its_bridge_files_is_drift(node: tuple[Path, FakeNode]) -> None:
    root, fake = node

    def answer(argv: list[str]) -> tuple[int, str, str]:
        return (0, "4242\n", "") if argv[:2] == ["systemctl", "show"] else fake(argv)

    write(root, "/etc/mosquitto/mosquitto.conf", "listener 1883 127.0.0.1\n")
    write(root, "/etc/mosquitto/bridge/ca.pem", "ca\n")
    write(root, "/proc/4242/cmdline", "/usr/sbin/mosquitto\0-c\0/etc/mosquitto/mosquitto.conf\0")
    started = os.stat(root / "proc/4242").st_mtime
    os.utime(root / "etc/mosquitto/mosquitto.conf", (started - 60, started - 60))
    os.utime(root / "etc/mosquitto/bridge/ca.pem", (started + 60, started + 60))
    gateway = live.Node(params(broker_files=["/etc/mosquitto/bridge/ca.pem"]), str(root), answer)
    assert gateway.broker_process("mosquitto", "/etc/mosquitto/mosquitto.conf")[0].expected == (
        "/etc/mosquitto/bridge/ca.pem as it is now")
    plain = live.Node(params(), str(root), answer)
    assert plain.broker_process("mosquitto", "/etc/mosquitto/mosquitto.conf") == []
