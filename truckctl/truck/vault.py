"""Hand secrets to ansible-playbook without writing them in clear anywhere.

ansible-runner writes the whole job environment (its `envvars` included, even with
suppress_env_files=True) into `artifacts/<ident>/command`, and extra vars end up on the
command line, so neither may carry a secret. Instead the secrets are vault-encrypted with a
random one-time password into a file of the run's private data dir; ansible-playbook asks for
the password (`--ask-vault-pass`) and ansible-runner answers the prompt over the pty from
memory. The password exists only in this process, so the file is useless once the run ends.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from truckctl.jsondoc import JsonObject
from truckctl.private_file import write_private

VAULT_PROMPT = r"Vault password:\s*?$"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def write_encrypted_vars(path: Path, values: JsonObject, password: str) -> Path:
    """Write `values` as a vault-encrypted vars file (mode 0600) for `-e @path`."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password.encode()))])
    from truckctl.ansible_data import dump

    ciphertext = vault.encrypt(dump(values))  # every string `!unsafe`: a secret is never a template
    return write_private(path, ciphertext)
