"""The layers of issue 9 hold: one direction of dependencies, no import cycle, a base install
without server libraries.

The contracts are in ``setup.cfg`` (``[importlinter]``); CI runs ``lint-imports`` before pytest and
this test runs the same check, plus a cycle search over every project module (import-linter has
no contract for "no cycle at all"). Both checks run in a subprocess on a given source tree, so the
test can also prove that they fail: it plants a forbidden import and a cycle in a copy of the
project and expects both to be reported.

Run as a script (``python tests/test_layers.py ROOT``) it prints the cycles under ``ROOT``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("execplanner_widgets", "jupyter_server_extension")


def find_cycles(modules: Iterable[str], imports_of) -> list[list[str]]:
    """Every import cycle among ``modules``: the strongly connected components with more than one
    module (Tarjan's algorithm, iterative so that deep graphs do not hit the recursion limit)."""
    known = set(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(known):
        if root in index:
            continue
        work = [(root, iter(sorted(m for m in imports_of(root) if m in known)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(m for m in imports_of(child) if m in known))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def project_cycles(root: Path) -> list[list[str]]:
    """The import cycles of the project's packages under ``root`` (every import that can run, the
    lazy ones inside functions too)."""
    import importlib.util

    import grimp

    for package in PACKAGES:  # the graph must be of this tree, not of an installed copy
        origin = importlib.util.find_spec(package).origin
        assert Path(origin).resolve().is_relative_to(root.resolve()), (
            f"{package} is found at {origin}, not under {root}"
        )
    # Imports under ``if TYPE_CHECKING:`` never run, so they cannot make a load-order loop; they still
    # count for the layer contracts (a type from a higher layer is a wrong dependency all the same).
    graph = grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=True)
    cycles = find_cycles(graph.modules, graph.find_modules_directly_imported_by)
    return [
        [
            f"{module} -> {', '.join(sorted(set(graph.find_modules_directly_imported_by(module)) & set(cycle)))}"
            for module in cycle
        ]
        for cycle in cycles
    ]


def _run(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``root`` first on the path and as the working directory (where setup.cfg is)."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=240)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the contracts of ``root/setup.cfg``, on the packages under ``root``."""
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='setup.cfg', no_cache=True, no_logo=True))"
    )
    return _run(root, code)


def cycles_in(root: Path) -> list[list[str]]:
    """:func:`project_cycles` for the tree under ``root``, in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    answer = subprocess.run(
        [sys.executable, __file__, str(root)], cwd=root, env=env, capture_output=True, text=True, timeout=240
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def _copy_project(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "setup.cfg", target / "setup.cfg")
    return target


def test_the_layer_contracts_hold():
    answer = lint_imports(ROOT)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "BROKEN" not in answer.stdout and "KEPT" in answer.stdout


def test_no_import_cycle_between_project_modules():
    assert cycles_in(ROOT) == []


def test_the_checks_catch_a_planted_forbidden_import_and_cycle(tmp_path):
    """The same checks on a copy of the project with three planted mistakes: the model importing the
    server package, the client importing the widgets (a layer upwards), and two core modules
    importing each other. Each one must be reported."""
    copy = _copy_project(tmp_path / "tree")
    with open(copy / "execplanner_widgets" / "model" / "phases.py", "a") as handle:
        handle.write("\nimport jupyter_server_extension.app  # planted\n")
    with open(copy / "execplanner_widgets" / "client" / "errors.py", "a") as handle:
        handle.write("\nimport execplanner_widgets.widgets  # planted\n")
    with open(copy / "execplanner_widgets" / "core" / "limits.py", "a") as handle:
        handle.write("\nimport execplanner_widgets.core.jobs  # planted\n")
    with open(copy / "execplanner_widgets" / "core" / "jobs.py", "a") as handle:
        handle.write("\n\ndef _planted():\n    import execplanner_widgets.core.limits  # a lazy import closes it too\n")

    answer = lint_imports(copy)
    report = answer.stdout + answer.stderr
    assert answer.returncode != 0, report
    assert "execplanner_widgets.model.phases -> jupyter_server_extension.app" in report
    assert "execplanner_widgets.client.errors -> execplanner_widgets.widgets" in report

    cycles = cycles_in(copy)
    assert any(
        any(line.startswith("execplanner_widgets.core.jobs ->") for line in cycle)
        and any(line.startswith("execplanner_widgets.core.limits ->") for line in cycle)
        for cycle in cycles
    ), cycles


def test_find_cycles_on_small_graphs():
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": ["e"]}
    assert find_cycles(edges, lambda module: edges[module]) == [["a", "b", "c"]]
    assert find_cycles({"a": [], "b": ["a"]}, lambda module: {"a": [], "b": ["a"]}[module]) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_the_checked_tree_is_this_one(package):
    """The subprocess sees this source tree (not an installed copy elsewhere)."""
    answer = _run(ROOT, f"import {package}; print({package}.__file__)")
    assert Path(answer.stdout.strip()).resolve().is_relative_to(ROOT), answer.stdout + answer.stderr


if __name__ == "__main__":
    tree = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    sys.path.insert(0, str(tree))
    print(json.dumps(project_cycles(tree)))
