"""Who answers for an address on a LAN: raw ARP requests, every reply's MAC collected.

Two trucks in one tech zone once collided on addresses and nobody could tell why. Before truckctl
changes anything it asks the LAN who holds each of its node addresses: two different MACs for one
address, or a MAC other than the node's, is a live conflict. Needs root (a raw packet socket).
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import subprocess
import time
from pathlib import Path

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def route_to(address: str) -> tuple[str, str] | None:
    """The interface and source address this host uses to reach `address` directly (on-link)."""
    proc = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    try:
        route = json.loads(proc.stdout)[0]
    except (ValueError, IndexError):
        return None
    if "gateway" in route or route.get("type") == "local" or not route.get("prefsrc"):
        return None  # not on a directly attached LAN: ARP cannot see it from here
    return route["dev"], route["prefsrc"]


def interface_mac(interface: str) -> bytes:
    return bytes.fromhex(Path(f"/sys/class/net/{interface}/address").read_text().strip().replace(":", ""))


def _request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    header = BROADCAST + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(src_ip), b"\0" * 6,
                      socket.inet_aton(target_ip))
    return header + arp


def arp_scan(interface: str, source_ip: str, targets: list[str], wait_s: float = 1.0,
             rounds: int = 2) -> dict[str, set[str]]:
    """Ask for every target (a few rounds, replies can be lost); return address -> replying MACs."""
    wanted = {str(ipaddress.IPv4Address(t)) for t in targets}
    answers: dict[str, set[str]] = {t: set() for t in wanted}
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((interface, 0))
        src_mac = interface_mac(interface)
        deadline = time.monotonic() + wait_s
        for round_no in range(rounds):
            for target in sorted(wanted):
                sock.send(_request(src_mac, source_ip, target))
            round_end = time.monotonic() + wait_s / rounds if round_no < rounds - 1 else deadline
            while (left := round_end - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                frame = sock.recv(2048)
                parsed = _reply(frame)
                if parsed and parsed[0] in wanted:
                    answers[parsed[0]].add(parsed[1])
    return answers


def _reply(frame: bytes) -> tuple[str, str] | None:
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    _, ptype, _, _, oper, sha, spa, _, _ = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
    if ptype != 0x0800 or oper != 2:
        return None
    return socket.inet_ntoa(spa), ":".join(f"{b:02x}" for b in sha)
