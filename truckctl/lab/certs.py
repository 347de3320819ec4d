"""Making and reading the lab's certificates and keys: everything of the lab PKI that needs cryptography.

cryptography costs ~26 ms to import; `truckctl.lab.pki` imports this module only inside the calls that
make or read a certificate, so commands that only reach the lab (status, runs, drift) never pay it.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from truckctl.private_file import write_private

CA_DAYS = 3650
LEAF_DAYS = 825


def serial(cert: Path) -> str:
    """A certificate's serial number in hex."""
    return format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")


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


def crl_pem(ca_cert_path: Path, ca_key_path: Path, revoked: list[str]) -> bytes:
    """The CA's CRL listing the revoked serials (hex; valid as long as the CA: the lab never refreshes it)."""
    ca_key = _load_key(ca_key_path)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(ca_cert.not_valid_after_utc))
    for number in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(number, 16)).revocation_date(now).build())
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_ca(cert_path: Path, key_path: Path) -> None:
    """A new self-signed CA (P-256, CA_DAYS), its key 0600."""
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
    write_private(key_path, _key_pem(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _sans(ip: str | None, dns: list[str]) -> list[x509.GeneralName]:
    return [*([x509.IPAddress(ipaddress.ip_address(ip))] if ip else []), *(x509.DNSName(d) for d in dns)]


def write_leaf(cert_path: Path, key_path: Path, ca_cert_path: Path, ca_key_path: Path, common_name: str,
               server: bool, ip: str | None = None, dns: tuple[str, ...] = ()) -> None:
    """A new leaf signed by the CA: a server certificate (with its IP and DNS names) or a client one."""
    ca_key = _load_key(ca_key_path)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
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
    sans = _sans(ip, list(dns))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    write_private(key_path, _key_pem(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def still_valid(cert_path: Path, ca_cert_path: Path, common_name: str, revoked: set[str], ip: str | None = None,
                dns: tuple[str, ...] = ()) -> bool:
    """The leaf says what it must (CN, issuer, names), is not revoked and is valid for 30 more days."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != common_name or cert.issuer != ca_cert.subject:
        return False
    if format(cert.serial_number, "x") in revoked:
        return False
    try:
        current = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        current = []
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    return set(current) == set(_sans(ip, list(dns))) and cert.not_valid_after_utc > soon


def wireguard_public_key(path: Path) -> str:
    """The base64 X25519 public key of the private key kept at `path` (made there on first use)."""
    if path.exists():
        private = x25519.X25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip()))
    else:
        private = x25519.X25519PrivateKey.generate()
        raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        write_private(path, base64.b64encode(raw) + b"\n")
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(public).decode()
