"""Names the configuration may not take because the nodes or Ansible already use them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from truckctl.errors import Problem

if TYPE_CHECKING:
    from truckctl.config.model import Race
    from truckctl.config.yamlfile import FieldPath

# A stage's name (it reaches file paths, lock names, run ids and node commands). Always fullmatch:
# `$` would accept "stage-1\n". Light to import (no pydantic): the offline plan checks names with it.
STAGE_NAME = re.compile(r"stage-([1-9][0-9]?)")

# Debian 12's base system (base-passwd, plus the accounts debootstrap's minbase and openssh add) and the
# accounts and groups of the packages truckctl's roles install (common_packages and
# common_gateway_packages) or that systemd creates on demand. An ops user with one of these names would
# be merged into a service account (`mosquitto` reading the broker's keys) or take over root's.
SYSTEM_ACCOUNTS = frozenset({
    # base-passwd users
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt",
    # base-passwd and base-files groups
    "adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio",
    "dip", "operator", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff", "users", "nogroup",
    "input", "sgx", "kvm", "render", "crontab", "netdev", "_ssh", "ssh",
    # systemd, dbus, openssh
    "systemd-journal", "systemd-network", "systemd-resolve", "systemd-timesync", "systemd-coredump",
    "systemd-oom", "messagebus", "sshd", "polkitd", "tss", "uuidd",
    # the roles' packages: chrony, dnsmasq, mosquitto, prometheus-node-exporter, wireguard, nftables
    "_chrony", "chrony", "dnsmasq", "mosquitto", "prometheus", "node-exporter", "nftables",
})


def reserved_account(name: str) -> bool:
    """True for a system account or group name (and for anything starting with systemd-)."""
    return name in SYSTEM_ACCOUNTS or name.startswith("systemd-")


# Groups the rendered inventory defines itself (truckctl/truck/inventory.py) or Ansible reserves.
INVENTORY_GROUPS = frozenset({"all", "ungrouped", "trucks"})


def inventory_group_problems(race: Race, where: Callable[[FieldPath], str]) -> list[Problem]:
    """Each truck and each role becomes an Ansible group of the same name: two of them (or one and a
    group of truckctl's own) sharing a name would merge, and one truck's variables reach another's nodes."""
    problems: list[Problem] = []
    roles = set(race.roles)
    for name in race.roles:
        if name in INVENTORY_GROUPS:
            problems.append(Problem("reserved-name", f"role name {name!r} is reserved for an inventory group of "
                                    f"truckctl or Ansible ({', '.join(sorted(INVENTORY_GROUPS))})",
                                    where(("roles", name))))
    for index, truck in enumerate(race.trucks):
        if truck.name in INVENTORY_GROUPS or truck.name in roles:
            what = "a role's name" if truck.name in roles else "reserved for an inventory group of truckctl or Ansible"
            problems.append(Problem("reserved-name", f"truck name {truck.name!r} is {what}: trucks and roles become "
                                    "inventory groups and need distinct names", where(("trucks", index, "name"))))
    return problems
