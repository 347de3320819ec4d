"""The lab PKI: who may connect to the stand-in, and key hygiene."""

from __future__ import annotations

import base64
import ipaddress
import json
import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import REPO
from truckctl.lab.pki import LabPki, client_id


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    return cert.issuer == ca.subject


def test_server_and_client_certificates(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    server = pki.ensure_server("standin-server", "cloud-standin", "100.64.10.2", ["cloud-standin"])
    client = pki.ensure_client("truck-truck-a", client_id("gdf27", "truck-a"))
    ca = load(pki.ca.cert)
    server_cert, client_cert = load(server.cert), load(client.cert)
    assert signed_by(server_cert, ca) and signed_by(client_cert, ca)
    sans = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("100.64.10.2")]
    assert client_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gdf27-truck-a"
    usage = client_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_private_keys_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    pki.ensure_client("truck-truck-a", "gdf27-truck-a")
    pki.wireguard_public_key()
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    keys = list((tmp_path / "pki").glob("*.key"))
    assert len(keys) == 3  # ca, client, vpn
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)


def test_certificates_are_reissued_only_when_their_content_changes(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    first = pki.ensure_server("standin-server", "cloud-standin", "100.64.10.2", []).serial
    assert pki.ensure_server("standin-server", "cloud-standin", "100.64.10.2", []).serial == first
    assert pki.ensure_server("standin-server", "cloud-standin", "100.64.20.2", []).serial != first


def test_wireguard_key_is_stable_and_in_wireguard_format(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    key = pki.wireguard_public_key()
    assert len(base64.b64decode(key)) == 32 and len(key) == 44
    assert pki.wireguard_public_key() == key


def test_a_revoked_certificate_is_in_the_signed_crl_and_never_reissued(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    issued = pki.ensure_client("truck-truck-a", "gdf27-truck-a")
    serial = issued.serial
    assert pki.revoke("truck-truck-a") == serial
    assert not issued.cert.exists() and not issued.key.exists()
    assert pki.revoke("truck-truck-a") is None  # nothing left to revoke: idempotent
    replacement = pki.ensure_client("truck-truck-a", "gdf27-truck-a").serial
    assert replacement != serial
    crl = x509.load_pem_x509_crl(pki.crl_pem())
    ca = load(pki.ca.cert)
    assert crl.is_signature_valid(ca.public_key()) and crl.issuer == ca.subject
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    assert crl.get_revoked_certificate_by_serial_number(int(replacement, 16)) is None
    assert crl.next_update_utc == ca.not_valid_after_utc  # the lab never has to refresh it


def test_a_certificate_listed_as_revoked_is_replaced_by_ensure(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    serial = pki.ensure_client("truck-truck-b", "gdf27-truck-b").serial
    pki.revoked_file.write_text(json.dumps({serial: "truck-truck-b"}))  # e.g. a crash right after recording it
    assert pki.ensure_client("truck-truck-b", "gdf27-truck-b").serial != serial


def test_the_crl_of_a_fresh_pki_lists_nothing(tmp_path: Path) -> None:
    crl = x509.load_pem_x509_crl(LabPki(tmp_path / "pki").crl_pem())
    assert len(crl) == 0


def test_serials_and_the_vpn_key_are_remembered_by_content_and_read_without_cryptography(tmp_path: Path) -> None:
    """status reads the lab's CloudOutputs (each truck's certificate serial, the VPN key's public half): from the
    memo beside each file, so it never imports cryptography; a changed file is derived again."""
    pki = LabPki(tmp_path / "pki")
    issued = pki.ensure_client("truck-truck-a", client_id("gdf27", "truck-a"))
    serial, vpn = issued.serial, pki.wireguard_public_key()
    assert serial == format(x509.load_pem_x509_certificate(issued.cert.read_bytes()).serial_number, "x")
    memo = issued.cert.with_name(issued.cert.name + ".derived")
    assert memo.read_text().split()[1] == serial and stat.S_IMODE(memo.stat().st_mode) == 0o600
    code = ("import sys; from pathlib import Path; from truckctl.lab.pki import LabPki; "
            f"pki = LabPki(Path({str(pki.dir)!r})); "
            "print(pki.leaf('truck-truck-a').serial, pki.wireguard_public_key(), "
            "sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert proc.stdout.split() == [serial, vpn, "[]"], proc.stdout + proc.stderr
    pki.revoke("truck-truck-a")
    again = pki.ensure_client("truck-truck-a", client_id("gdf27", "truck-a"))
    assert again.serial != serial  # a new certificate at the same path: its own serial, not the memo's
    memo.write_text("not a memo")
    assert again.serial == format(x509.load_pem_x509_certificate(again.cert.read_bytes()).serial_number, "x")
