#!/usr/bin/python3
# ruff: noqa: E402  (Ansible modules declare DOCUMENTATION before their imports)
"""Write a secret to a file on the node, never through a controller-side file.

`copy: content=` and `template` write their content to a temporary file on the controller
before transferring it; this module receives the content as an argument (sent over the SSH
pipe with pipelining), compares checksums and writes atomically. It never returns a diff.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: truck_secret_file
short_description: Write secret content to a file atomically, without diffs or controller temp files
description:
  - Compares the SHA-256 of the wanted content with the file's and replaces the file atomically when they differ.
  - Owner, group and mode are enforced on every run. The content is declared no_log.
options:
  path: {description: Destination file., type: path, required: true}
  content: {description: The secret content., type: str, required: true}
  owner: {description: Owner of the file., type: str, default: root}
  group: {description: Group of the file., type: str, default: root}
  mode: {description: Mode of the file., type: raw, default: "0600"}
  directory_group:
    description: Group of the parent directory when this module creates it (mode 0750).
    type: str
    default: root
author: truckctl
"""

EXAMPLES = r"""
- name: Install a private key
  truck_secret_file:
    path: /etc/mosquitto/bridge/truck.key
    content: "{{ key_pem }}"
    owner: mosquitto
    group: mosquitto
    mode: "0600"
  no_log: true
"""

RETURN = r"""
path: {description: The file written., type: str, returned: always}
"""

import grp
import hashlib
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "content": {"type": "str", "required": True, "no_log": True},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "mode": {"type": "raw", "default": "0600"},
            "directory_group": {"type": "str", "default": "root"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    data = module.params["content"].encode()
    changed = _digest(path) != hashlib.sha256(data).hexdigest()
    if changed and not module.check_mode:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o750)
            os.chown(directory, 0, grp.getgrnam(module.params["directory_group"]).gr_gid)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".truckctl-")
        try:
            os.fchmod(fd, 0o600)  # never readable by others, not even for a moment
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            module.fail_json(msg=f"cannot write {path}: {exc.strerror}")
    file_args = module.load_file_common_arguments(
        {"path": path, "owner": module.params["owner"], "group": module.params["group"],
         "mode": module.params["mode"]})
    if os.path.exists(path):
        changed = module.set_fs_attributes_if_different(file_args, changed)
    module.exit_json(changed=changed, path=path)


if __name__ == "__main__":
    main()
