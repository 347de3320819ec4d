"""The portal's gate, as plain ASGI middleware (it wraps streaming responses without buffering them).

In order, for every HTTP request:
0. refuse (421) a `Host` the portal is not (DNS rebinding: a web page the operator visits renaming
   itself to 127.0.0.1 would otherwise read the API as same-origin): only localhost, 127.0.0.1, [::1]
   and the listen address, each with or without the listen port; on an unspecified listen address
   (0.0.0.0, ::) any IP literal too (an IP literal cannot be rebound: only a name can). Then refuse
   (403) an `Origin` that is present and not the portal's own (scheme and Host);
1. refuse what is too big before anything reads it: a body (Content-Length above MAX_BODY_BYTES, or
   chunked: nothing here takes a body), a URL longer than MAX_URL_BYTES, headers above
   MAX_HEADER_BYTES (the server itself drops a request whose headers it cannot parse within its own
   limit: see server.py);
2. the credential, when the portal has one: a bearer header, or the session cookie a one-time
   `?token=` login sets (the login answers with a redirect to the same URL without the token, so it
   does not stay in the address bar or the history). Compared in constant time (settings.Credential);
3. security headers on every answer: a CSP allowing only the portal's own scripts, styles and
   connections (no inline script), no framing, no MIME sniffing, no referrer, no caching of data.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from truckctl.portal.settings import COOKIE, Credential

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 16 * 1024
MAX_URL_BYTES = 2048
MAX_HEADER_BYTES = 8 * 1024  # all headers together (the server drops what it cannot even parse: server.py)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
LOGIN_HINT = ("this portal needs its token: send `Authorization: Bearer <token>`, or open the page once "
              "with ?token=<token> (TRUCKCTL_PORTAL_TOKEN where the portal runs)")


def allowed_hosts(listen_host: str, port: int) -> frozenset[str]:
    """The `Host` values this portal answers to (lower case): loopback names and the listen address,
    each bare and with the listen port."""
    names = {"localhost", "127.0.0.1", "[::1]", f"[{listen_host}]" if ":" in listen_host else listen_host}
    return frozenset({name.lower() for name in names} | {f"{name.lower()}:{port}" for name in names})


def _ip_literal(host: str, port: int) -> bool:
    """`IP`, `IP:PORT`, `[v6]` or `[v6]:PORT` (PORT the listen port)."""
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        if rest not in ("", f":{port}"):
            return False
    else:
        address, _, given = host.partition(":")
        if given not in ("", str(port)):
            return False
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


async def _answer(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *SECURITY_HEADERS, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class Guard:
    def __init__(self, app: App, credential: Credential | None, secure_cookie: bool, hsts: bool,
                 listen: tuple[str, int] = ("127.0.0.1", 8765)) -> None:
        self.app, self.credential, self.secure_cookie, self.hsts = app, credential, secure_cookie, hsts
        self.scheme = "https" if secure_cookie else "http"
        self.port = listen[1]
        self.hosts = allowed_hosts(*listen)
        self.any_ip = ipaddress.ip_address(listen[0]).is_unspecified if listen[0] != "localhost" else False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._misdirected(scope) or self._too_big(scope)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        if self.credential is not None:
            query = parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
            token = next((v for k, v in query if k == "token"), None)
            if token is not None:
                await self._login(scope, send, token, [(k, v) for k, v in query if k != "token"])
                return
            if not self._authorised(scope):
                await _answer(send, 401, LOGIN_HINT, [(b"www-authenticate", b'Bearer realm="truckctl portal"')])
                return
        await self.app(scope, receive, self._with_headers(send, scope))

    def _misdirected(self, scope: Scope) -> tuple[int, str] | None:
        host = (_header(scope, b"host") or "").lower()
        if host not in self.hosts and not (self.any_ip and _ip_literal(host, self.port)):
            return 421, "this portal does not answer to that host name (open it by its address, e.g. 127.0.0.1)"
        origin = _header(scope, b"origin")
        if origin is not None and origin.lower() != f"{self.scheme}://{host}":
            return 403, "cross-origin requests are refused"
        return None

    def _too_big(self, scope: Scope) -> tuple[int, str] | None:
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return 413, f"request body too large (at most {MAX_BODY_BYTES} bytes; this portal is read-only)"
        if _header(scope, b"transfer-encoding") is not None:
            return 411, "chunked request bodies are not accepted (this portal is read-only)"
        if len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b"")) > MAX_URL_BYTES:
            return 414, f"URL too long (at most {MAX_URL_BYTES} bytes)"
        if sum(len(k) + len(v) for k, v in scope.get("headers", [])) > MAX_HEADER_BYTES:
            return 431, f"request headers too large (at most {MAX_HEADER_BYTES} bytes)"
        return None

    def _authorised(self, scope: Scope) -> bool:
        assert self.credential is not None
        authorization = _header(scope, b"authorization") or ""
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() == "bearer" and self.credential.accepts_token(presented.strip()):
            return True
        cookies = SimpleCookie()
        try:
            cookies.load(_header(scope, b"cookie") or "")
        except Exception:  # http.cookies raises CookieError on garbage: just no session
            return False
        morsel = cookies.get(COOKIE)
        return morsel is not None and self.credential.accepts_session(morsel.value)

    async def _login(self, scope: Scope, send: Send, token: str, rest: list[tuple[str, str]]) -> None:
        assert self.credential is not None
        if not self.credential.accepts_token(token):
            await _answer(send, 401, "wrong token")
            return
        # one leading slash, the rest percent-encoded: never `//host` nor `/\host` (browsers read both as a host)
        location = "/" + quote(scope["path"].lstrip("/\\")) + (f"?{urlencode(rest)}" if rest else "")
        cookie = f"{COOKIE}={self.credential.session_value()}; Path=/; HttpOnly; SameSite=Strict"
        cookie += "; Secure" if self.secure_cookie else ""
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()),
                                (b"content-length", b"0"), (b"cache-control", b"no-store"), *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": b""})

    def _with_headers(self, send: Send, scope: Scope) -> Send:
        extra = list(SECURITY_HEADERS)
        if self.hsts:
            extra.append((b"strict-transport-security", b"max-age=31536000"))
        if scope["path"].startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {bytes(k).lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in extra if k not in names)]
            await send(message)

        return wrapped
