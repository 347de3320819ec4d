"""Debian's Lynis, run inside lab nodes: the independent measure of their hardening (not a test module).

Lynis is installed in the node from the lab's apt cache (never by the product's roles: the nodes do
not ship it), run with the default profile, and read back from its report file. Shared by
tests/lab/test_lynis.py (the goal and the allow-list) and bench/ (`lynis`: the index per role).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from truckctl.remote import Connection, ssh_run

GOAL = 70
REPORT = "/var/log/lynis-report.dat"
# --quick: no pause between sections; --no-colors: plain log. Lynis refreshes apt's lists itself
# (PKGS-7392) through the lab's apt cache. The report file is written whatever the findings.
AUDIT = f"lynis audit system --quick --no-colors > /dev/null 2>&1; cat {REPORT}"
# The package enables a daily audit timer: not on a lab node.
INSTALL = ("command -v lynis > /dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
           "--no-install-recommends lynis > /dev/null 2>&1 || { apt-get update -q > /dev/null 2>&1 && "
           "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends lynis > /dev/null; }; }; "
           "systemctl disable --now lynis.timer > /dev/null 2>&1; lynis --version")
AUDIT_TIMEOUT_S = 600  # about 75 s per node on 2 shared cores; generous

# Every Lynis warning a converged node may still show, with the reason it is not fixed. One place:
# the lab test fails on any warning not listed here, docs/LYNIS.md gives the same table.
ALLOWED_WARNINGS = {
    "PKGS-7392": ("Security updates pending: the lab's root file system is a cached Debian 12 debootstrap, "
                  "behind bookworm-security. truckctl does not upgrade packages during `up` (an upgrade "
                  "restarts the broker and chrony mid-race); trucks are patched in the maintenance window "
                  "(image rebuild or apt full-upgrade), never by the race-day run."),
}


@dataclass(frozen=True)
class LynisReport:
    node: str
    role: str
    version: str
    hardening_index: int
    warnings: tuple[tuple[str, str], ...]  # (test id, text)
    suggestions: tuple[tuple[str, str], ...]


def parse_report(node: str, role: str, text: str) -> LynisReport:
    """The fields of /var/log/lynis-report.dat that matter here (key=value lines; lists as key[]=)."""
    index, version = None, ""
    warnings: list[tuple[str, str]] = []
    suggestions: list[tuple[str, str]] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "hardening_index":
            index = int(value)
        elif key == "lynis_version":
            version = value
        elif key in ("warning[]", "suggestion[]"):
            test_id, _, rest = value.partition("|")
            (warnings if key == "warning[]" else suggestions).append((test_id, rest.split("|", 1)[0]))
    if index is None:
        raise AssertionError(f"{node}: no hardening_index in {REPORT}: {text[-500:]!r}")
    return LynisReport(node, role, version, index, tuple(warnings), tuple(suggestions))


def audit(connection: Connection, node: str, role: str, address: str) -> LynisReport:
    code, out = ssh_run(connection, address, INSTALL, timeout=300)
    if code != 0:
        raise AssertionError(f"{node}: installing lynis failed ({code}): {out[-500:]}")
    code, out = ssh_run(connection, address, AUDIT, timeout=AUDIT_TIMEOUT_S)
    if code != 0:
        raise AssertionError(f"{node}: lynis audit failed ({code}): {out[-500:]}")
    return parse_report(node, role, out)


def audit_each_role(connection: Connection, nodes: Iterable[tuple[str, str, str]]) -> dict[str, LynisReport]:
    """One node of each role (name, role, address), audited in parallel: {role: report}."""
    picked: dict[str, tuple[str, str, str]] = {}
    for name, role, address in nodes:
        picked.setdefault(role, (name, role, address))
    with ThreadPoolExecutor(max_workers=len(picked) or 1) as pool:
        futures = {role: pool.submit(audit, connection, *node) for role, node in picked.items()}
        return {role: future.result() for role, future in futures.items()}


def unexplained(report: LynisReport) -> list[str]:
    return [f"{test_id}: {text}" for test_id, text in report.warnings if test_id not in ALLOWED_WARNINGS]
