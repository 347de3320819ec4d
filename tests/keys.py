"""Throwaway private keys for tests: made at run time, so no key-shaped text lives in the repository."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def throwaway_private_key() -> str:
    """A fresh Ed25519 key in PKCS#8 PEM: three lines, the middle one its body."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
