"""One bounded HTTP exchange, for URLs that may carry secrets (webhooks) or answers from a node that
may be hostile (the lab's stand-in).

- `parse_url` accepts only a plain absolute URL: printable ASCII, http(s), a host (DNS name or IP
  literal, IPv6 in brackets), an optional port 1-65535, no userinfo, no fragment; plain http only to
  loopback. It never raises with any part of the URL in its message (`BadUrl` carries a fixed reason).
- `exchange` bounds the whole exchange (DNS, connect, TLS, request, a reply dribbled byte by byte)
  by one deadline, and the reply by a byte count. No redirects are followed. Its errors
  (`ExchangeFailed`) are fixed phrases too: the URL's path and query never reach a message.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from truckctl.netaddr import is_loopback

MAX_URL = 2048
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>[^#]*)(?P<fragment>#.*)?",
                  re.DOTALL)
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<name>[A-Za-z0-9.-]*))(?::(?P<port>[^:]*))?")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class BadUrl(Exception):
    """A URL refused before use; its message is a fixed reason, never URL text."""


class ExchangeFailed(Exception):
    """An exchange that did not complete; its message is a fixed phrase, never URL text."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as connected to: a DNS name or an IP literal (IPv6 without brackets)
    port: int
    path: str = field(repr=False)  # path and query, as sent in the request line; secret-bearing

    @property
    def shown(self) -> str:
        """Scheme, host and port: what may be said about a URL (never its path or query)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class ClientTls:
    """TLS with a pinned CA and (optionally) a client certificate, from files."""

    ca_pem: str
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem)
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _host(v6: str | None, name: str | None) -> str:
    if v6 is not None:
        try:
            return str(ipaddress.IPv6Address(v6))
        except ValueError:
            raise BadUrl("the IPv6 address in brackets is not valid") from None
    if not name:
        raise BadUrl("the URL names no host")
    labels = name.rstrip(".").split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise BadUrl("the host is not a valid DNS name or IP address")
    return name.rstrip(".")


def parse_url(url: object) -> Target:
    """The URL as a Target, or BadUrl with a fixed reason (no URL text in it)."""
    if not isinstance(url, str) or not url:
        raise BadUrl("the URL is empty")
    if len(url) > MAX_URL:
        raise BadUrl(f"the URL is longer than {MAX_URL} characters")
    if any(not ("!" <= ch <= "~") for ch in url):
        raise BadUrl("the URL contains whitespace, control or non-ASCII characters")
    whole = _URL.fullmatch(url)
    if whole is None:
        raise BadUrl("not an absolute URL (scheme://host/path)")
    scheme = whole["scheme"].lower()
    if scheme not in ("http", "https"):
        raise BadUrl("only http(s) URLs are used")
    if whole["fragment"] is not None:
        raise BadUrl("a #fragment is not allowed")
    authority = whole["authority"]
    if "@" in authority:
        raise BadUrl("credentials in the URL (user@host) are not allowed")
    parts = _HOST_PORT.fullmatch(authority)
    if parts is None:
        raise BadUrl("the host or port is malformed")
    host = _host(parts["v6"], parts["name"])
    port_text = parts["port"]
    if port_text is None:
        port = 443 if scheme == "https" else 80
    elif not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise BadUrl("the port is not a number from 1 to 65535")
    else:
        port = int(port_text)
    if scheme == "http" and not is_loopback(host):
        raise BadUrl("plain http is used only to loopback; use https")
    rest = whole["rest"] or "/"
    if not rest.startswith("/"):
        rest = "/" + rest
    return Target(scheme, host, port, rest)


def _token_like(piece: str) -> bool:
    """A part of a URL that looks like a credential, not a word: it holds a digit, mixes upper and
    lower case, or is long. Plain words ("services", "webhooks", "api") are not registered on their
    own, so they are not scrubbed from every other line they appear in."""
    return (any(ch.isdigit() for ch in piece) or len(piece) >= 16
            or (any(ch.isupper() for ch in piece) and any(ch.islower() for ch in piece)))


def secret_parts(url: str) -> list[str]:
    """What of a URL must never be written (found without parsing it strictly, so a malformed URL's
    secret parts are known too): as whole units the URL, its userinfo, everything after the host
    and the path with its query; and on their own, each path segment, query value and the
    fragment that looks like a token (`_token_like`). A path too short for the redactor to scrub
    (`/x`) is never written either: nothing prints a URL's path (Target.shown, Channel.shown)."""
    parts = [url]
    _, sep, rest = url.partition("://")
    if not sep:
        return parts
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    pieces: list[str] = []
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
        parts.append(userinfo)
        pieces += userinfo.split(":")
    request, _, fragment = tail.partition("#")
    parts += [tail, request]
    path, _, query = request.partition("?")
    pieces += path.split("/")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        pieces.append(value or key)
        if value and _token_like(value):
            parts.append(pair)
    pieces.append(fragment)
    parts += [p for p in pieces if _token_like(p)]
    return list(dict.fromkeys(p for p in parts if p))


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


def exchange(target: Target, method: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
             deadline_s: float, max_bytes: int, tls: ClientTls | None = None) -> Reply:
    """One request and its whole reply within `deadline_s` (name lookup included), at most max_bytes."""
    done = threading.Event()
    cancelled = threading.Event()
    box: dict[str, object] = {}
    holder: list[http.client.HTTPConnection] = []

    def work() -> None:
        try:
            box["reply"] = _exchange(target, method, body, headers or {}, time.monotonic() + deadline_s,
                                     max_bytes, tls, holder, cancelled)
        except BaseException as exc:  # handed to the caller's thread, mapped below
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name="truckctl-http", daemon=True)
    worker.start()
    if not done.wait(deadline_s):
        cancelled.set()
        for conn in holder:  # wakes a read blocked on a dribbling peer
            if conn.sock is not None:
                with contextlib.suppress(OSError):  # the plain socket's: TLS state stays the worker's
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
        raise ExchangeFailed(f"no complete answer within {deadline_s:g} s")
    if "error" in box:
        error = box["error"]
        if isinstance(error, TimeoutError):  # every socket timeout is what was left of the one deadline
            raise ExchangeFailed(f"no complete answer within {deadline_s:g} s")
        raise ExchangeFailed(_reason(error))  # type: ignore[arg-type]
    reply = box["reply"]
    assert isinstance(reply, Reply)
    return reply


def _exchange(target: Target, method: str, body: bytes | None, headers: dict[str, str], end: float,
              max_bytes: int, tls: ClientTls | None, holder: list[http.client.HTTPConnection],
              cancelled: threading.Event) -> Reply:
    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0 or cancelled.is_set():
            raise TimeoutError
        return remaining

    conn: http.client.HTTPConnection
    if target.scheme == "https":
        context = tls.context() if tls is not None else ssl.create_default_context()
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=left(), context=context)
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=left())
    holder.append(conn)
    try:
        conn.connect()
        left()
        conn.request(method, target.path, body=body, headers={"User-Agent": "truckctl", **headers})
        response = conn.getresponse()
        chunks, size = [], 0
        while True:
            if conn.sock is not None:
                conn.sock.settimeout(left())
            chunk = response.read1(min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ExchangeFailed(f"the answer is larger than {max_bytes} bytes")
            chunks.append(chunk)
        return Reply(response.status, b"".join(chunks))
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    """A fixed phrase per failure class: exception texts may quote the request (never shown)."""
    if isinstance(exc, ExchangeFailed):
        return str(exc)
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "the server's TLS certificate is not trusted"
    if isinstance(exc, ssl.SSLError):
        return "the TLS handshake failed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionError):
        return "the connection was reset or closed"
    if isinstance(exc, http.client.HTTPException):
        return "the answer is not valid HTTP"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return f"failed ({type(exc).__name__})"
