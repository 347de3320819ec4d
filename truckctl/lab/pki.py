"""The lab's PKI: a CA, the stand-in's server certificate and one client certificate per truck.

Kept under <state_dir>/lab/pki (0700, keys 0600) across `down`, so CloudOutputs stay stable from one
lab to the next; a certificate is re-issued only when what it must say changes, or once it is revoked.
Revoked serials are kept in revoked.json and published as a CRL the stand-in's broker checks.
The cryptography itself is in `truckctl.lab.certs`, imported only by the calls that need it. What the
lab's CloudOutputs read of a file (a certificate's serial, the VPN key's public half) is remembered beside
it, keyed by the file's hash: commands that only read the lab (status, drift) never import cryptography.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from truckctl.private_file import write_private

# truckctl's own client certificate for the stand-in's HTTP API: a CN no truck can have (client_id
# is race-truck, both [a-z0-9-]), so the stand-in can tell the operator from every truck.
OPERATOR_LEAF = "truckctl-operator"
OPERATOR_CN = "truckctl operator"


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    @property
    def serial(self) -> str:
        def derive() -> str:
            from truckctl.lab import certs

            return certs.serial(self.cert)

        return remembered(self.cert, derive)


def remembered(source: Path, derive: Callable[[], str]) -> str:
    """`derive()`, a value read from `source`, remembered in `<source>.derived` for as long as the file's content
    is the same (its SHA-256 is kept with it); a memo that cannot be read or written is derived again."""
    memo = source.with_name(source.name + ".derived")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    with contextlib.suppress(OSError, ValueError):
        known, value = memo.read_text().split()
        if known == digest:
            return value
    value = derive()
    with contextlib.suppress(OSError):  # a reader without write access derives it each time
        write_private(memo, f"{digest} {value}\n")
    return value


def client_id(race_id: str, truck: str) -> str:
    """A truck's identity at the ingest: the certificate CN, the MQTT client id and username."""
    return f"{race_id}-{truck}"


class LabPki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def ca(self) -> Issued:
        return Issued(self.dir / "ca.pem", self.dir / "ca.key")

    def leaf(self, name: str) -> Issued:
        return Issued(self.dir / f"{name}.pem", self.dir / f"{name}.key")

    @property
    def revoked_file(self) -> Path:
        return self.dir / "revoked.json"

    def revoked(self) -> dict[str, str]:
        """Revoked serial (hex) -> the leaf name it was issued as."""
        try:
            data = json.loads(self.revoked_file.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def revoke(self, name: str) -> str | None:
        """Revoke the leaf's current certificate and drop its files (the next ensure_* issues a new one).

        Returns the revoked serial, or None when there was nothing to revoke (already done)."""
        serial = self.hold(name)  # recorded before the files go: a crash never un-revokes
        if serial is not None:
            issued = self.leaf(name)
            issued.cert.unlink()
            issued.key.unlink(missing_ok=True)
        return serial

    def hold(self, name: str) -> str | None:
        """Put the leaf's current certificate on the CRL and keep its files (a drill: `release` undoes it).

        Returns its serial, or None when the leaf has no certificate."""
        issued = self.leaf(name)
        if not issued.cert.exists():
            return None
        serial = issued.serial
        self._write_revoked({**self.revoked(), serial: name})
        return serial

    def release(self, serial: str) -> None:
        """Take a held serial off the CRL again."""
        self._write_revoked({k: v for k, v in self.revoked().items() if k != serial})

    def _write_revoked(self, revoked: dict[str, str]) -> None:
        # replacing any link planted at the path
        write_private(self.revoked_file, json.dumps(revoked, indent=1, sort_keys=True) + "\n", mode=0o644)

    def crl_pem(self) -> bytes:
        """The CA's CRL listing every revoked serial (valid as long as the CA: the lab never refreshes it)."""
        from truckctl.lab import certs

        self.ensure_ca()
        return certs.crl_pem(self.ca.cert, self.ca.key, sorted(self.revoked()))

    def ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

    def ensure_ca(self) -> None:
        from truckctl.lab import certs

        self.ensure_dir()
        if not (self.ca.cert.exists() and self.ca.key.exists()):
            certs.write_ca(self.ca.cert, self.ca.key)

    def ensure_server(self, name: str, common_name: str, ip: str, dns: list[str]) -> Issued:
        return self._ensure_leaf(name, common_name, server=True, ip=ip, dns=tuple(dns))

    def ensure_client(self, name: str, common_name: str) -> Issued:
        return self._ensure_leaf(name, common_name, server=False)

    def _ensure_leaf(self, name: str, common_name: str, *, server: bool, ip: str | None = None,
                     dns: tuple[str, ...] = ()) -> Issued:
        """The leaf as it must be: kept while it says what it must and is not revoked, else issued anew."""
        from truckctl.lab import certs

        self.ensure_ca()
        issued = self.leaf(name)
        if issued.cert.exists() and issued.key.exists() and certs.still_valid(
                issued.cert, self.ca.cert, common_name, set(self.revoked()), ip, dns):
            return issued
        certs.write_leaf(issued.cert, issued.key, self.ca.cert, self.ca.key, common_name, server, ip, dns)
        return issued

    def wireguard_public_key(self) -> str:
        """A WireGuard-format (base64 X25519) key for the stand-in's VPN endpoint.

        The lab cannot run real WireGuard (no kernel module here), so nothing listens behind it:
        it exists so the truck tier renders a complete, valid VPN configuration.
        """
        self.ensure_dir()
        key = self.dir / "vpn.key"

        def derive() -> str:
            from truckctl.lab import certs

            return certs.wireguard_public_key(key)  # made there on first use

        if not key.exists():
            made = derive()
            return remembered(key, lambda: made)
        return remembered(key, derive)
