"""The shape of the code (docs/ARCHITECTURE.md), checked: no import cycle between truckctl's packages,
the lab/aws choice made only by the two targets and the CLI, and heavy libraries out of `--help`.

A small AST walk: every `import` and `from ... import` of truckctl, at module level or inside a
function (a lazy import is still a dependency), except those under `if TYPE_CHECKING:` (types only,
never executed). A package is `truckctl.<name>/`; a top-level module is its own node.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from tests.helpers import REPO

PACKAGE = REPO / "truckctl"


def _node(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "truckctl" or len(parts) < 2:
        return None
    return parts[1]


def _runtime_imports(tree: ast.AST) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)  # `from truckctl import x`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def dependency_graph() -> dict[str, set[str]]:
    """node -> the nodes it imports at run time (truckctl's packages and top-level modules)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for module in _runtime_imports(ast.parse(path.read_text())):
            target = _node(module)
            if target is None or target == source:
                continue
            if not (PACKAGE / target).is_dir() and not (PACKAGE / f"{target}.py").is_file():
                continue  # `from truckctl import __version__`: a name, not a module
            graph.setdefault(source, set()).add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(graph) | {n for targets in graph.values() for n in targets}):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_between_packages() -> None:
    graph = dependency_graph()
    assert {"cli", "lifecycle", "targets", "truck", "cloud", "config", "lab"} <= set(graph)  # the walk sees them
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_lifecycle_never_imports_a_target_implementation_nor_the_lab() -> None:
    """The lifecycle talks to the Target it is given; the CLI (and the portal) choose it."""
    graph = dependency_graph()
    assert "targets" not in graph["lifecycle"] and "lab" not in graph["lifecycle"]
    assert {name for name, deps in graph.items() if "targets" in deps} <= {"cli", "portal"}


LAB_OR_AWS = re.compile(r"""(==|!=)\s*["'](lab|aws)["']|["'](lab|aws)["']\s*(==|!=)|in\s*\(["'](lab|aws)["']""")


def test_no_lab_or_aws_string_comparison_outside_the_targets() -> None:
    allowed = {PACKAGE / "targets", PACKAGE / "cli"}
    offenders = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                 for path in PACKAGE.rglob("*.py") if not any(path.is_relative_to(a) for a in allowed)
                 for number, line in enumerate(path.read_text().splitlines(), 1) if LAB_OR_AWS.search(line)]
    assert offenders == []


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys; from truckctl.cli.app import app; "
            "print(sorted(m for m in ('pydantic', 'pulumi', 'pulumi_aws', 'ansible_runner', 'rich', 'yaml') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_reaching_the_lab_imports_no_cryptography() -> None:
    """status reaches the nodes through lab.api before its first SSH call; cryptography (~26 ms) is
    imported only by the calls that make or read a certificate or key (lab.certs, lab.ssh's keypair)."""
    code = ("import sys; import truckctl.lab.api, truckctl.lab.control, truckctl.lab.standin, "
            "truckctl.lab.operator, truckctl.targets.lab, truckctl.lifecycle.status; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert proc.stdout.strip() == "[]", proc.stdout
