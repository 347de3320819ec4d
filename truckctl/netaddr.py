"""Address facts shared by the CLI, the portal and the webhook client (stdlib only: light to import)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback IP literal (IPv6 without brackets); False for anything else, names included."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
