#!/usr/bin/python3
# ruff: noqa: E402  (Ansible modules declare DOCUMENTATION before their imports)
"""Make sure several systemd units are enabled and running, in one module run.

One `systemd_service` task per unit costs a module execution each (about 0.2 s of node CPU);
this asks systemctl directly for all of them and only acts on what differs.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: truck_services
short_description: Enable and start several systemd units in one run
description:
  - For each unit, enables it if it is not enabled and starts it if it is not active, then checks it stayed active.
  - Supports check mode (reports what it would do).
options:
  names: {description: Units to enable and start., type: list, elements: str, required: true}
  daemon_reload: {description: Run systemctl daemon-reload first., type: bool, default: false}
  enable_only:
    description: Units to enable without starting (oneshot units loaded by a handler).
    type: list
    elements: str
    default: []
author: truckctl
"""

EXAMPLES = r"""
- name: Run the broker
  truck_services:
    names: [mosquitto]
"""

RETURN = r"""
actions: {description: What was (or would be) done, e.g. "enable chrony"., type: list, returned: always}
started:
  description: >-
    Units this run started (not in check mode). A role runs this after writing the unit's files, so such a
    unit already runs the new configuration and its role's restart handler skips it.
  type: list
  returned: always
"""

import subprocess
import time

from ansible.module_utils.basic import AnsibleModule


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "names": {"type": "list", "elements": "str", "required": True},
            "daemon_reload": {"type": "bool", "default": False},
            "enable_only": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    check = module.check_mode
    if module.params["daemon_reload"] and not check:
        systemctl("daemon-reload")
    actions: list[str] = []
    started: list[str] = []
    for unit in [*module.params["names"], *module.params["enable_only"]]:
        if systemctl("is-enabled", "--quiet", unit).returncode != 0:
            actions.append(f"enable {unit}")
            if not check and (proc := systemctl("enable", "--quiet", unit)).returncode != 0:
                module.fail_json(msg=f"cannot enable {unit}: {proc.stderr.strip()}", actions=actions)
        if unit in module.params["enable_only"]:
            continue
        if systemctl("is-active", "--quiet", unit).returncode != 0:
            actions.append(f"start {unit}")
            if not check:
                proc = systemctl("start", unit)
                if proc.returncode != 0:
                    module.fail_json(msg=f"cannot start {unit}: {proc.stderr.strip()}", actions=actions)
                started.append(unit)
    if started:  # a unit that dies right after starting is a failure, not a success
        time.sleep(0.5)
        dead = [u for u in started if systemctl("is-active", "--quiet", u).returncode != 0]
        if dead:
            module.fail_json(msg=f"not running after start: {', '.join(dead)}", actions=actions)
    # With --diff (drift detection), say what differs: "start mosquitto" is the service's diff.
    diff = {"prepared": "".join(f"{action}\n" for action in actions)} if module._diff and actions else None
    module.exit_json(changed=bool(actions), actions=actions, started=started, **({"diff": diff} if diff else {}))


if __name__ == "__main__":
    main()
