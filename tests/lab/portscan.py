"""A small port scanner for the lab tests (no nmap on the host): which ports of a node answer at all.

TCP: a SYN to every port through a raw socket, without waiting port by port; a SYN-ACK means open, a
RST means closed but let through by the firewall; silence means dropped. UDP: a datagram to every
port; an ICMP port-unreachable or a UDP reply means the firewall let it through. Traffic goes only
to the address given (a lab node). Needs root.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Iterable

ALL_PORTS = range(1, 65536)
_BURST = 512  # packets sent between two drains of the replies (keeps the receive buffer from overflowing)


def source_address(target: str) -> str:
    """The address this host sends from to reach `target` (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((target, 9))
        return str(probe.getsockname()[0])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
    return header[:16] + struct.pack("!H", _checksum(pseudo + header)) + header[18:]


def _tcp_answer(packet: bytes, target: bytes, sport: int) -> tuple[int, str] | None:
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 14 or packet[9] != socket.IPPROTO_TCP or packet[12:16] != target:
        return None
    src_port, dst_port = struct.unpack("!HH", packet[ihl:ihl + 4])
    flags = packet[ihl + 13]
    if dst_port != sport:
        return None
    if flags & 0x12 == 0x12:
        return src_port, "open"
    if flags & 0x04:
        return src_port, "closed"
    return None


def tcp_scan(target: str, ports: Iterable[int] = ALL_PORTS, passes: int = 2, wait_s: float = 2.0) -> dict[int, str]:
    """Ports that answered a SYN: {port: 'open' | 'closed'}. Two passes: one lost packet hides nothing."""
    src, dst = source_address(target), socket.inet_aton(target)
    sport = 40000 + os.getpid() % 20000
    found: dict[int, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
        sock.setblocking(False)

        def drain(until: float) -> None:
            while True:
                left = until - time.monotonic()
                ready, _, _ = select.select([sock], [], [], max(0.0, left))
                if not ready:
                    return
                with contextlib.suppress(BlockingIOError):
                    answer = _tcp_answer(sock.recv(65535), dst, sport)
                    if answer:
                        found.setdefault(*answer)

        for _ in range(passes):
            for count, port in enumerate(ports, 1):
                while True:
                    try:
                        sock.sendto(_syn(src, target, sport, port, 0x5EED0000 + port), (target, 0))
                        break
                    except (BlockingIOError, OSError):  # the device queue is full: let it drain
                        drain(time.monotonic() + 0.01)
                if count % _BURST == 0:
                    drain(time.monotonic())
            drain(time.monotonic() + wait_s)
    return found


# What a service only answers when asked properly: a DNS query (for "localhost") and an NTP client request.
UDP_PAYLOADS = {
    53: struct.pack("!HHHHHH", 0x7243, 0x0100, 1, 0, 0, 0) + b"\x09localhost\x00" + struct.pack("!HH", 1, 1),
    123: b"\x1b" + b"\0" * 47,
}


def udp_scan(target: str, ports: Iterable[int] = ALL_PORTS, wait_s: float = 2.0) -> dict[int, str]:
    """Ports whose datagram got an answer: {port: 'reply' | 'unreachable'} (ICMP port unreachable).
    The kernel rate-limits ICMP errors, so a let-through closed port may stay silent: a subset check."""
    dst = socket.inet_aton(target)
    found: dict[int, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as icmp, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        icmp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
        icmp.setblocking(False)
        udp.setblocking(False)
        udp.bind((source_address(target), 0))
        sport = udp.getsockname()[1]

        def drain(until: float) -> None:
            while True:
                ready, _, _ = select.select([icmp, udp], [], [], max(0.0, until - time.monotonic()))
                if not ready:
                    return
                for sock in ready:
                    with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                        data, (host, port) = sock.recvfrom(65535)
                        if sock is udp and host == target:
                            found[port] = "reply"
                        elif sock is icmp:
                            _icmp_unreachable(data, dst, sport, found)

        for count, port in enumerate(ports, 1):
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                udp.sendto(UDP_PAYLOADS.get(port, b"truckctl-scan"), (target, port))
            if count % _BURST == 0:
                drain(time.monotonic())
        drain(time.monotonic() + wait_s)
    return found


def _icmp_unreachable(packet: bytes, target: bytes, sport: int, found: dict[int, str]) -> None:
    ihl = (packet[0] & 0x0F) * 4
    icmp_type, code = packet[ihl], packet[ihl + 1]
    if icmp_type != 3 or code != 3 or packet[12:16] != target:
        return
    inner = packet[ihl + 8:]  # the original datagram: its IP header, then the UDP ports
    inner_ihl = (inner[0] & 0x0F) * 4
    src_port, dst_port = struct.unpack("!HH", inner[inner_ihl:inner_ihl + 4])
    if src_port == sport:
        found.setdefault(dst_port, "unreachable")
