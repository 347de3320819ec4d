"""The stand-in's HTTPS API, run in-process on 127.0.0.1 with a real lab PKI: who may call, what each
caller sees and may write, and the bounds on what a caller can make it hold (bodies, headers,
connections, time). The same abuse from a truck's gateway, on the lab: tests/lab/test_standin_security.py."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from truckctl.lab.pki import OPERATOR_CN, OPERATOR_LEAF, LabPki
from truckctl.lab.standin_service import OPERATOR, Access, StandinServer, Tracker
from truckctl.lifecycle.webhttp import ClientTls, ExchangeFailed, Reply, Target, exchange

TRUCKS = {"truck-a": "r/truck-a", "truck-b": "r/truck-b"}
NODES = {"truck-a": ["truck-a-gw"], "truck-b": ["truck-b-gw"]}


@dataclass
class Standin:
    server: StandinServer
    tracker: Tracker
    pki: LabPki
    port: int

    def tls(self, leaf: str | None) -> ClientTls:
        ca = self.pki.ca.cert.read_text()
        if leaf is None:
            return ClientTls(ca)
        issued = self.pki.leaf(leaf)
        return ClientTls(ca, str(issued.cert), str(issued.key))

    def call(self, leaf: str | None, method: str, path: str, body: bytes | None = None) -> Reply:
        return exchange(Target("https", "127.0.0.1", self.port, path), method, body, deadline_s=5,
                        max_bytes=1 << 20, tls=self.tls(leaf))

    def json(self, leaf: str, path: str) -> Any:
        import json

        reply = self.call(leaf, "GET", path)
        assert reply.status == 200
        return json.loads(reply.body)

    def raw(self, leaf: str, request: bytes) -> bytes:
        """A hand-written request over TLS (what a hostile client sends); the whole answer."""
        context = self.tls(leaf).context()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as plain, \
                context.wrap_socket(plain, server_hostname="127.0.0.1") as conn:
            answer = b""
            try:
                conn.sendall(request)
                while chunk := conn.recv(65536):
                    answer += chunk
            except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
                pass  # refused while the request was still coming: the kernel may reset instead of closing
            return answer


def make_pki(directory: Path) -> LabPki:
    pki = LabPki(directory)
    pki.ensure_server("standin-server", "standin", "127.0.0.1", ["standin"])
    pki.ensure_client("truck-truck-a", "r-truck-a")
    pki.ensure_client("truck-truck-b", "r-truck-b")
    pki.ensure_client(OPERATOR_LEAF, OPERATOR_CN)
    pki.ensure_client("stranger", "someone else")  # issued by the lab CA, but nobody the stand-in knows
    return pki


def serve(tmp_path: Path, **limits: Any) -> Iterator[Standin]:
    pki = make_pki(tmp_path / "pki")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl_pem())
    server_leaf = pki.leaf("standin-server")
    access = Access({"r-truck-a": "truck-a", "r-truck-b": "truck-b", OPERATOR_CN: OPERATOR},
                    str(pki.ca.cert), str(server_leaf.cert), str(server_leaf.key), str(crl))
    tracker = Tracker(TRUCKS, 20, nodes=NODES)
    server = StandinServer(("127.0.0.1", 0), tracker, access, **limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Standin(server, tracker, pki, server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[Standin]:
    yield from serve(tmp_path)


def test_no_client_certificate_no_service(standin: Standin) -> None:
    with pytest.raises(ExchangeFailed):
        standin.call(None, "GET", "/status")
    assert standin.json(OPERATOR_LEAF, "/healthz")["ok"] is True  # still serving


def test_a_certificate_of_nobody_known_is_refused(standin: Standin) -> None:
    assert standin.call("stranger", "GET", "/status").status == 403
    assert standin.call("stranger", "POST", "/alerts", b"{}").status == 403


def test_a_truck_reads_and_writes_only_its_own_data(standin: Standin) -> None:
    standin.tracker.on_message("r/truck-b/telemetry", b'{"secret": "truck-b payload"}')
    status = standin.json("truck-truck-a", "/status")
    assert set(status["trucks"]) == {"truck-a"} and "truck-b payload" not in str(status)
    assert "refused" not in status  # the stand-in's own counters are truckctl's to read
    forged = standin.call("truck-truck-a", "POST", "/alerts", b'{"alarm": "fire", "truck": "truck-b"}')
    assert forged.status == 403
    assert standin.call("truck-truck-a", "POST", "/alerts", b'{"alarm": "address-conflict"}').status == 202
    assert standin.call(OPERATOR_LEAF, "POST", "/alerts", b'{"kind": "run-failed"}').status == 202
    assert [a["body"] for a in standin.json("truck-truck-a", "/alerts")["alerts"]] == \
        [{"alarm": "address-conflict", "truck": "truck-a"}]
    assert standin.json("truck-truck-b", "/alerts")["alerts"] == []
    everything = standin.json(OPERATOR_LEAF, "/status")
    assert set(everything["trucks"]) == {"truck-a", "truck-b"} and everything["refused"]["forbidden"] == 1


def test_a_revoked_truck_is_refused_once_the_crl_lists_it(tmp_path: Path) -> None:
    for standin in serve(tmp_path):
        assert standin.call("truck-truck-a", "GET", "/healthz").status == 200
        revoked = standin.pki.leaf("truck-truck-a")
        kept = (tmp_path / "revoked.pem", tmp_path / "revoked.key")  # what a stolen truck still holds
        kept[0].write_bytes(revoked.cert.read_bytes())
        kept[1].write_bytes(revoked.key.read_bytes())
        assert standin.pki.revoke("truck-truck-a")
        crl = tmp_path / "crl.pem"
        crl.write_bytes(standin.pki.crl_pem())
        os.utime(crl, (1, 1))  # a new mtime whatever the clock's resolution
        ca = standin.pki.ca.cert.read_text()
        with pytest.raises(ExchangeFailed):
            exchange(Target("https", "127.0.0.1", standin.port, "/healthz"), "GET", deadline_s=5, max_bytes=4096,
                     tls=ClientTls(ca, str(kept[0]), str(kept[1])))
        assert standin.call("truck-truck-b", "GET", "/healthz").status == 200


@pytest.mark.parametrize(("length", "status"), [("-1", 400), ("-100000", 400), ("1e3", 400), ("+5", 400),
                                                ("99999999999", 413), ("65537", 413)])
def test_a_bad_content_length_is_refused_and_the_service_keeps_serving(standin: Standin, length: str,
                                                                        status: int) -> None:
    answer = standin.raw("truck-truck-a", f"POST /alerts HTTP/1.1\r\nHost: s\r\nContent-Length: {length}\r\n\r\n"
                         .encode() + b"x" * 100)
    assert answer.startswith(f"HTTP/1.0 {status} ".encode())
    assert standin.tracker.alert_list() == []
    assert standin.json(OPERATOR_LEAF, "/healthz")["ok"] is True


def test_chunked_bodies_two_lengths_and_huge_headers_are_refused(standin: Standin) -> None:
    chunked = standin.raw("truck-truck-a", b"POST /alerts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"ffffffff\r\n" + b"x" * 1000)
    assert chunked.startswith(b"HTTP/1.0 501 ")
    twice = standin.raw("truck-truck-a", b"POST /alerts HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
    assert twice.startswith(b"HTTP/1.0 411 ")
    # Refused at 16 KiB, while the client is still sending: a 431, or a reset that lost it.
    huge = standin.raw("truck-truck-a", b"GET /status HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 40_000 + b"\r\n\r\n")
    assert huge[:13] in (b"HTTP/1.0 431 ", b"") and b"truck-a" not in huge
    many = standin.raw("truck-truck-a", b"GET /status HTTP/1.1\r\n" + b"X-P: aaaaaaaaaaaaaaaaaaaa\r\n" * 2000 + b"\r\n")
    assert many[:13] in (b"HTTP/1.0 431 ", b"") and b"truck-a" not in many
    assert standin.tracker.alert_list() == []
    assert standin.json(OPERATOR_LEAF, "/status")["refused"]["bad_request"] == 4  # all four, by their bound


def _is_cut(conn: socket.socket, drips: int) -> bool:
    """Send one byte at a time (never a whole request) until the server closes; True once closed."""
    conn.settimeout(0.2)
    for _ in range(drips):
        try:
            conn.sendall(b"X")
            if conn.recv(1) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_a_slow_sender_is_cut_by_the_connection_deadline(tmp_path: Path) -> None:
    """Slowloris: bytes keep coming (no socket timeout fires), the whole-connection deadline still cuts."""
    for standin in serve(tmp_path, deadline_s=1.0):
        context = standin.tls("truck-truck-a").context()
        with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as plain, \
                context.wrap_socket(plain, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"GET /status HTTP/1.1\r\n")
            assert _is_cut(conn, drips=100)  # 100 drips of >= 0.2 s: far past the 1 s deadline
        with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as idle:  # not even a handshake
            idle.settimeout(5)
            assert idle.recv(1) == b""
        assert standin.json(OPERATOR_LEAF, "/status")["refused"]["cut"] >= 1


def test_connections_beyond_the_cap_are_closed_at_once(tmp_path: Path) -> None:
    for standin in serve(tmp_path, max_connections=2, deadline_s=30.0):
        holders = [socket.create_connection(("127.0.0.1", standin.port), timeout=5) for _ in range(2)]
        try:
            extra = socket.create_connection(("127.0.0.1", standin.port), timeout=5)
            extra.settimeout(5)
            with extra:
                assert extra.recv(1) == b""  # closed by the server, not left waiting for 30 s
            assert standin.server.refused["busy"] >= 1
        finally:
            for holder in holders:
                holder.close()


def test_the_server_context_requires_tls_1_2_and_a_client_certificate(standin: Standin) -> None:
    context = standin.server.access.context()
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
