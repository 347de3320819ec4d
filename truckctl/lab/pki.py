"""The lab's PKI: a CA, the stand-in's server certificate and one client certificate per truck.

Kept under <state_dir>/lab/pki (0700, keys 0600) across `down`, so CloudOutputs stay stable from one
lab to the next; a certificate is re-issued only when what it must say changes, or once it is revoked.
Revoked serials are kept in revoked.json and published as a CRL the stand-in's broker checks.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from truckctl.private_file import write_private

CA_DAYS = 3650
LEAF_DAYS = 825
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
        return format(x509.load_pem_x509_certificate(self.cert.read_bytes()).serial_number, "x")


def client_id(race_id: str, truck: str) -> str:
    """A truck's identity at the ingest: the certificate CN, the MQTT client id and username."""
    return f"{race_id}-{truck}"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # P-256: what IoT Core and every TLS stack accept


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC key")
    return key


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
        self.ensure_ca()
        ca_key = _load_key(self.ca.key)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(ca_cert.not_valid_after_utc))
        for serial in sorted(self.revoked()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(now).build())
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

    def ensure_ca(self) -> None:
        self.ensure_dir()
        if self.ca.cert.exists() and self.ca.key.exists():
            return
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "truckctl lab CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(self.ca.key, _key_pem(key))
        write_private(self.ca.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def ensure_server(self, name: str, common_name: str, ip: str, dns: list[str]) -> Issued:
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)),
                                        *(x509.DNSName(d) for d in dns)]
        return self._ensure_leaf(name, common_name, sans, ExtendedKeyUsageOID.SERVER_AUTH)

    def ensure_client(self, name: str, common_name: str) -> Issued:
        return self._ensure_leaf(name, common_name, [], ExtendedKeyUsageOID.CLIENT_AUTH)

    def _ensure_leaf(self, name: str, common_name: str, sans: list[x509.GeneralName],
                     usage: x509.ObjectIdentifier) -> Issued:
        self.ensure_ca()
        issued = self.leaf(name)
        if issued.cert.exists() and issued.key.exists() and self._still_valid(issued, common_name, sans):
            return issued
        ca_key = _load_key(self.ca.key)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_private(issued.key, _key_pem(key))
        write_private(issued.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return issued

    def _still_valid(self, issued: Issued, common_name: str, sans: list[x509.GeneralName]) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
            ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        except (OSError, ValueError):
            return False
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns or cns[0].value != common_name or cert.issuer != ca_cert.subject:
            return False
        if format(cert.serial_number, "x") in self.revoked():
            return False
        try:
            current = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            current = []
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        return set(current) == set(sans) and cert.not_valid_after_utc > soon

    def wireguard_public_key(self) -> str:
        """A WireGuard-format (base64 X25519) key for the stand-in's VPN endpoint.

        The lab cannot run real WireGuard (no kernel module here), so nothing listens behind it:
        it exists so the truck tier renders a complete, valid VPN configuration.
        """
        self.ensure_dir()
        path = self.dir / "vpn.key"
        if path.exists():
            private = x25519.X25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip()))
        else:
            private = x25519.X25519PrivateKey.generate()
            raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
            write_private(path, base64.b64encode(raw) + b"\n")
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(public).decode()
