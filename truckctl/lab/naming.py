"""Names of everything the lab creates on the host, derived from the lab id so two labs never clash.

Linux interface names are limited to 15 characters, so links get a short hash instead of the node
name; namespaces, machines and cgroups can carry readable names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

IFNAME_MAX = 15
CGROUP_PARENT = "truckctl-lab"


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def lab_id(state_dir: Path) -> str:
    """One lab per state directory: its id prefixes every host-side name the lab owns."""
    return short_hash(str(state_dir.resolve()), length=6)


LINK_KINDS = "buvwi"  # truck bridge, uplink bridge, LAN veth, uplink veth, a drill's impostor veth
_LAB_LINK = re.compile(rf"^tl[{LINK_KINDS}][0-9a-f]{{8}}$")


def is_lab_link(name: str | None) -> bool:
    """A host interface some truckctl lab made (ours or another project's)."""
    return bool(name and _LAB_LINK.match(name))


def _ifname(kind: str, lab: str, item: str) -> str:
    name = f"tl{kind}{short_hash(lab, kind, item)}"
    assert len(name) <= IFNAME_MAX
    return name


def truck_bridge(lab: str, truck: str) -> str:
    return _ifname("b", lab, truck)


def uplink_bridge(lab: str) -> str:
    return _ifname("u", lab, "uplink")


def lan_veth(lab: str, node: str) -> str:
    """Host side of a node's LAN (or, for the stand-in, uplink) interface."""
    return _ifname("v", lab, node)


def uplink_veth(lab: str, node: str) -> str:
    """Host side of a gateway node's second interface, on the uplink bridge: the 'cable'."""
    return _ifname("w", lab, node)


def impostor_veth(lab: str, address: str) -> str:
    """Host side of a drill's impostor on a truck LAN bridge (lab fault impostor)."""
    return _ifname("i", lab, address)


def netns(lab: str, node: str) -> str:
    return f"tl-{lab}-{node}"


def machine(lab: str, node: str) -> str:
    """nspawn machine name: unique per lab, since nspawn keys runtime files under /run by it."""
    return f"tl-{lab}-{node}"


def cgroup(lab: str, node: str) -> str:
    """Relative cgroup path under each hierarchy the lab uses."""
    return f"{CGROUP_PARENT}-{lab}/{node}"


def cgroup_parent(lab: str) -> str:
    return f"{CGROUP_PARENT}-{lab}"
