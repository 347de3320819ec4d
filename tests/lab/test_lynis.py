"""The nodes' hardening measured by an independent auditor: Debian's Lynis, run inside one converged
node of each role (gateway, compute, storage) with its default profile.

Goal: a hardening index of at least 70 on every role, and no warning without a written reason
(tests/lab/lynis.py ALLOWED_WARNINGS; docs/LYNIS.md gives the figures and the table). Lynis is
installed by this test from the lab's apt cache, not by the product's roles. About 2 minutes (the
three audits run in parallel). bench/ `lynis` reports the same figures.

Also here: the kernel settings (hardening_sysctl) are rendered to one file that matches the role's
variable, and which of them are live (none in the lab: /proc/sys is read-only in its nodes).
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import REPO
from tests.lab.harness import Lab
from tests.lab.lynis import ALLOWED_WARNINGS, GOAL, audit_each_role, unexplained
from tests.lab.runs import ensure_converged
from truckctl.remote import ssh_run

pytestmark = pytest.mark.lab

DEFAULTS = REPO / "playbooks" / "roles" / "hardening" / "defaults" / "main.yml"


@pytest.fixture(scope="module")
def converged(lab: Lab) -> Lab:
    ensure_converged(lab)
    return lab


def test_every_role_scores_at_least_the_goal_and_every_warning_has_a_reason(converged: Lab) -> None:
    reports = audit_each_role(converged.connection, [(n.name, n.role, n.address) for n in converged.nodes])
    assert sorted(reports) == ["compute", "gateway", "storage"]
    print("\nLynis " + json.dumps({role: {"node": r.node, "version": r.version, "index": r.hardening_index,
                                           "warnings": [w[0] for w in r.warnings],
                                           "suggestions": sorted({s[0] for s in r.suggestions})}
                                    for role, r in reports.items()}, indent=1))
    for role, report in reports.items():
        assert report.hardening_index >= GOAL, f"{role} ({report.node}): hardening index {report.hardening_index}"
        assert not unexplained(report), f"{role}: warnings without a reason in ALLOWED_WARNINGS: {unexplained(report)}"


def test_allowed_warnings_are_documented_in_lynis_md() -> None:
    text = (REPO / "docs" / "LYNIS.md").read_text()
    assert all(test_id in text for test_id in ALLOWED_WARNINGS)


def test_kernel_settings_are_one_file_matching_the_role_variable(converged: Lab) -> None:
    wanted = yaml.safe_load(DEFAULTS.read_text())["hardening_sysctl"]
    path = yaml.safe_load(DEFAULTS.read_text())["hardening_sysctl_conf"]
    for node in converged.nodes:
        code, out = ssh_run(converged.connection, node.address, f"cat {path}")
        assert code == 0, out
        rendered = dict(line.split(" = ", 1) for line in out.splitlines() if line and not line.startswith("#"))
        assert rendered == {key: str(value) for key, value in wanted.items()}, node.name
        code, out = ssh_run(converged.connection, node.address,
                            "for key in " + " ".join(sorted(wanted)) + "; do "
                            "printf '%s %s\\n' $key \"$(sysctl -n $key | tr -s '\\t ' ' ')\"; done")
        assert code == 0, out
        live = {key for key, value in (line.split(" ", 1) for line in out.splitlines()) if value == str(wanted[key])}
        print(f"\n{node.name}: {len(live)} of {len(wanted)} kernel settings live (/proc/sys is read-only in lab "
              f"nodes; these already had the value): {sorted(live)}")

