#!/usr/bin/python3
# ruff: noqa: E402  (Ansible modules declare DOCUMENTATION before their imports)
"""Converge a role's files, symlinks and directories, then make sure its units run, in one module run.

Why not one `template` task per file: on the lab's 2 cores every module execution costs about
0.2 s of node CPU (times 6 nodes), and `template`/`copy` need two executions per unchanged
file. Here the playbook renders contents on the controller (the `template` lookup) and this
module compares, validates and writes them all at once, with check mode and diffs. Measured under
Mitogen (`bench/run.py --only module-cost`): the roles' files and units on a converged stage-1 take
8.0 s this way and 17.8 s with Ansible's file/copy/find/systemd_service, one task result per path.
The units are part of the same run (not a task of their own) because every task costs Ansible's
controller a worker per node: one task less per role was about 1.2 s of a 9 s check-mode run of stage-1.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: truck_files
short_description: Converge several files, symlinks and directories in one run
description:
  - Creates directories, then for each file compares the wanted content with the node's, runs
    the validate command on a temporary copy next to the destination, and replaces the file atomically.
  - Enforces owner, group and mode; removes files marked absent and, with prune, files matching
    patterns that are no longer wanted.
  - Supports check mode and diff mode. Do not pass secrets (module arguments are logged): see truck_secret_file.
options:
  dirs:
    description: Directories to create first (path, mode, owner, group).
    type: list
    elements: dict
    default: []
  files:
    description: >-
      Files (path, content, mode, owner, group, validate with %s for the temporary file), symlinks
      (path, link_to) or removals (path, state=absent).
    type: list
    elements: dict
    default: []
  prune:
    description: Directories (path) and glob patterns whose matching files not listed in files are removed.
    type: list
    elements: dict
    default: []
  services:
    description: >-
      systemd units to enable and start after the files (each is checked to stay active). A changed file
      under a systemd unit directory runs `systemctl daemon-reload` first. Units already running are not
      restarted: that is the role's handler's job, and it skips the units this run started (see RETURN).
    type: list
    elements: str
    default: []
author: truckctl
"""

EXAMPLES = r"""
- name: Render the time configuration
  truck_files:
    files:
      - path: /etc/chrony/chrony.conf
        content: "{{ lookup('ansible.builtin.template', 'chrony.conf.j2') }}"
        validate: /usr/sbin/chronyd -p -f %s
    services: [chrony]
  register: time_files
"""

RETURN = r"""
changed_paths: {description: Paths created, modified, removed or re-permissioned., type: list, returned: always}
actions: {description: What was (or would be) done to the units, e.g. "enable chrony"., type: list, returned: always}
started:
  description: >-
    Units this run started (not in check mode). They already run the new files, so the role's restart
    handler skips them.
  type: list
  returned: always
drift:
  description: >-
    One item per path or unit that differs (kind file or unit, item, expected, found; with --diff, a file's
    diff in Ansible's before/after form): what truckctl's drift reports.
  type: list
  returned: always
"""

import fnmatch
import grp
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule


class Converger:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.check = module.check_mode
        self.changed: list[str] = []
        self.diffs: list[dict[str, str]] = []
        self.drift: list[dict[str, Any]] = []

    def differs(self, path: str, found: str, diff: dict[str, str] | None = None, expected: str = "as the role "
                "renders it") -> None:
        """Record a path that was (or would be) changed, as a drift item; its diff goes to Ansible's --diff too."""
        self.changed.append(path)
        item: dict[str, Any] = {"kind": "file", "item": path, "expected": expected, "found": found}
        if diff is not None:
            self.diffs.append(diff)
            if getattr(self.module, "_diff", False):
                item["diff"] = diff
        self.drift.append(item)

    def ids(self, spec: dict[str, Any]) -> tuple[int, int] | None:
        """uid and gid; None in check mode when they do not exist yet (a package would create them)."""
        try:
            return pwd.getpwnam(spec.get("owner") or "root").pw_uid, grp.getgrnam(spec.get("group") or "root").gr_gid
        except KeyError as exc:
            if self.check:
                return None
            self.module.fail_json(msg=f"{spec['path']}: unknown owner or group: {exc}")
            raise

    def attributes(self, path: str, spec: dict[str, Any], default_mode: str) -> bool:
        """Fix owner, group and mode; True when something was (or would be) changed."""
        ids = self.ids(spec)
        if ids is None:
            return True
        uid, gid = ids
        mode = int(str(spec.get("mode") or default_mode), 8)
        info = os.lstat(path)
        wrong = (info.st_uid, info.st_gid) != (uid, gid) or stat.S_IMODE(info.st_mode) != mode
        if wrong and not self.check:
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        return wrong

    def directory(self, spec: dict[str, Any]) -> None:
        path = spec["path"]
        created = not os.path.isdir(path)
        if created and not self.check:
            os.makedirs(path)
        fixed = not created and self.attributes(path, spec, "0755")
        if created and not self.check:
            self.attributes(path, spec, "0755")
        if created or fixed:
            self.differs(path, "missing" if created else "wrong owner, group or mode", expected="a directory")

    def file(self, spec: dict[str, Any]) -> None:
        path = spec["path"]
        if spec.get("state", "present") == "absent":
            self.remove(path)
        elif spec.get("link_to"):
            self.link(path, spec["link_to"])
        else:
            self.content(path, spec)

    def remove(self, path: str) -> None:
        if os.path.lexists(path):
            if not self.check:
                os.unlink(path)
            self.differs(path, "present", {"before_header": path, "after_header": path, "before": "present\n",
                                           "after": "absent\n"}, expected="absent")

    def link(self, path: str, target: str) -> None:
        if os.path.islink(path) and os.readlink(path) == target:
            return
        diff = {"before_header": path, "after_header": path,
                "before": f"-> {os.readlink(path) if os.path.islink(path) else 'not a link'}\n",
                "after": f"-> {target}\n"}
        if not self.check:
            tmp = f"{path}.truckctl-link"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, path)
        self.differs(path, "not that link", diff, expected=f"a link to {target}")

    def content(self, path: str, spec: dict[str, Any]) -> None:
        wanted = spec.get("content")
        if wanted is None:
            self.module.fail_json(msg=f"{path}: content, link_to or state=absent is required")
        data = wanted.encode()
        try:
            with open(path, "rb") as handle:
                current: bytes | None = handle.read()
        except FileNotFoundError:
            current = None
        if current == data:
            if self.attributes(path, spec, "0644"):
                self.differs(path, "wrong owner, group or mode")
            return
        self.differs(path, "missing" if current is None else "differs",
                     {"before_header": path, "after_header": path,
                      "before": "" if current is None else current.decode(errors="replace"), "after": wanted})
        if self.check:
            return
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".truckctl-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            ids = self.ids(spec)
            assert ids is not None  # ids() fails the module outside check mode
            os.chown(tmp, *ids)
            os.chmod(tmp, int(str(spec.get("mode") or "0644"), 8))
            if spec.get("validate"):
                self.validate(path, tmp, spec["validate"])
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def validate(self, path: str, tmp: str, command: str) -> None:
        if "%s" not in command:
            self.module.fail_json(msg=f"{path}: validate must contain %s")
        argv = [tmp if word == "%s" else word.replace("%s", tmp) for word in shlex.split(command)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            self.module.fail_json(msg=f"{path}: failed to validate with {command}",
                                  stdout=proc.stdout, stderr=proc.stderr, rc=proc.returncode)

    def prune(self, spec: dict[str, Any], wanted: set[str]) -> None:
        directory = spec["path"]
        if not os.path.isdir(directory):
            return
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if path not in wanted and any(fnmatch.fnmatch(name, p) for p in spec.get("patterns", [])):
                self.remove(path)


UNIT_DIRS = ("/etc/systemd/system/", "/usr/lib/systemd/system/", "/lib/systemd/system/")


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


class Units:
    """Enable and start units, only where they differ; what was started stays reported (the handlers skip it)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.check = module.check_mode
        self.actions: list[str] = []
        self.started: list[str] = []
        self.drift: list[dict[str, Any]] = []

    def converge(self, names: list[str], reload: bool) -> None:
        if reload and names and not self.check:
            systemctl("daemon-reload")
        for unit in names:
            wrong: list[str] = []
            if systemctl("is-enabled", "--quiet", unit).returncode != 0:
                wrong.append("not enabled")
                self.act(f"enable {unit}", "enable", "--quiet", unit)
            if systemctl("is-active", "--quiet", unit).returncode != 0:
                wrong.append("not active")
                self.act(f"start {unit}", "start", unit)
                if not self.check:
                    self.started.append(unit)
            if wrong:
                self.drift.append({"kind": "unit", "item": unit, "expected": "enabled and active",
                                   "found": ", ".join(wrong)})
        if self.started:  # a unit that dies right after starting is a failure, not a success
            time.sleep(0.5)
            dead = [u for u in self.started if systemctl("is-active", "--quiet", u).returncode != 0]
            if dead:
                self.module.fail_json(msg=f"not running after start: {', '.join(dead)}", actions=self.actions)

    def act(self, action: str, *command: str) -> None:
        self.actions.append(action)
        if not self.check and (proc := systemctl(*command)).returncode != 0:
            self.module.fail_json(msg=f"cannot {action}: {proc.stderr.strip()}", actions=self.actions)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dirs": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
            "prune": {"type": "list", "elements": "dict", "default": []},
            "services": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    converger = Converger(module)
    try:
        for spec in module.params["dirs"]:
            converger.directory(spec)
        for spec in module.params["files"]:
            converger.file(spec)
        wanted = {spec["path"] for spec in module.params["files"] if spec.get("state", "present") != "absent"}
        for spec in module.params["prune"]:
            converger.prune(spec, wanted)
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename}: {exc.strerror}")
    units = Units(module)
    units.converge(module.params["services"], reload=any(p.startswith(UNIT_DIRS) for p in converger.changed))
    result: dict[str, Any] = {"changed": bool(converger.changed or units.actions), "changed_paths": converger.changed,
                              "actions": units.actions, "started": units.started,
                              "drift": converger.drift + units.drift}
    diffs = converger.diffs + ([{"prepared": "".join(f"{a}\n" for a in units.actions)}] if units.actions else [])
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
