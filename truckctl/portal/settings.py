"""Where the portal listens and who may see it (DESIGN section 13): the credential rule, in one place.

- Loopback (127.0.0.0/8, ::1, localhost) is the default and needs nothing: whoever can reach it is
  already on this machine.
- Any other address needs a credential (a token in TRUCKCTL_PORTAL_TOKEN, sent as a bearer header
  or as the cookie a one-time `?token=` login sets) AND TLS (--tls-cert/--tls-key), or an explicit
  --insecure-http, which the command warns about loudly (the token then crosses the network in clear).
- A token set in the environment is required on loopback too (an operator who set it wants it).

Pure: no web framework imported here, so it is tested (and `--help` stays fast) without one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from truckctl.errors import ExitCode, TruckctlError
from truckctl.netaddr import is_loopback

TOKEN_ENV = "TRUCKCTL_PORTAL_TOKEN"
DEFAULT_LISTEN = "127.0.0.1:8765"
MIN_TOKEN_CHARS = 16
COOKIE = "truckctl_portal"
POLL_INTERVAL_S = 2.0


def _usage(message: str, where: str) -> TruckctlError:
    return TruckctlError.single("usage", message, where, ExitCode.USAGE)


def parse_listen(value: str) -> tuple[str, int]:
    """`ADDR:PORT` (or `[v6]:PORT`) into (host, port); a one-line error otherwise."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _usage(f"expected ADDR:PORT such as {DEFAULT_LISTEN}, got {value!r}", "--listen")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise _usage(f"expected an IP address (or localhost) before the port, got {host!r}", "--listen") from None
    return host, int(port_text)


@dataclass(frozen=True)
class Credential:
    """The portal's token; never printed (repr hides it). The cookie holds a value derived from it."""

    token: str

    def __repr__(self) -> str:
        return "Credential(***)"

    def session_value(self) -> str:
        """What the login cookie carries: bound to the token, but not the token itself."""
        return hmac.new(self.token.encode(), b"truckctl-portal-session", hashlib.sha256).hexdigest()

    def accepts_token(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def accepts_session(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.session_value().encode())


@dataclass(frozen=True)
class PortalSettings:
    stage: str
    target: str
    host: str
    port: int
    credential: Credential | None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_http: bool = False
    interval_s: float = POLL_INTERVAL_S

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"


def settings(stage: str, target: str, listen: str, tls_cert: Path | None = None, tls_key: Path | None = None,
             insecure_http: bool = False, interval_s: float = POLL_INTERVAL_S,
             environ: dict[str, str] | None = None) -> PortalSettings:
    """Check the command line against the credential rule; raise one usage error naming what is missing."""
    env = os.environ if environ is None else environ
    host, port = parse_listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise _usage("TLS needs both --tls-cert and --tls-key", "--tls-cert/--tls-key")
    for path, option in ((tls_cert, "--tls-cert"), (tls_key, "--tls-key")):
        if path is not None and not path.is_file():
            raise _usage(f"no such file: {path}", option)
    if tls_cert is not None and insecure_http:
        raise _usage("--insecure-http and TLS exclude each other: pick one", "--insecure-http")
    token = env.get(TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise _usage(f"the portal token in {TOKEN_ENV} is too short: use at least {MIN_TOKEN_CHARS} random "
                     "characters (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`)", TOKEN_ENV)
    if not is_loopback(host):
        if token is None:
            raise _usage(f"listening on {host} (not loopback) needs a credential: set {TOKEN_ENV} to a random "
                         "token (viewers send it as `Authorization: Bearer ...` or log in once with ?token=)",
                         "--listen")
        if tls_cert is None and not insecure_http:
            raise _usage(f"listening on {host} (not loopback) needs TLS (--tls-cert and --tls-key), or "
                         "--insecure-http to accept that the token and the page cross the network in clear",
                         "--listen")
    return PortalSettings(stage, target, host, port, Credential(token) if token else None, tls_cert, tls_key,
                          insecure_http, interval_s)
