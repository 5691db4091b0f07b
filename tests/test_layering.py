"""The architecture, checked: the import graph between edgeship's packages has no cycle and follows the
layers runtime <- core <- {train, export, bench} <- cli, and library code logs instead of printing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"runtime": "runtime", "core": "core", "train": "train", "export": "export", "bench": "bench", "cli": "cli"}
# What each package may import of edgeship (besides itself). cli is the root package `edgeship`.
ALLOWED = {
    "runtime": set(),
    "core": {"runtime"},
    "train": {"runtime", "core"},
    "export": {"runtime", "core"},
    "bench": {"runtime", "core"},
    "cli": {"runtime", "core", "train", "export", "bench"},
}
# Child-process programs whose stdout *is* their JSON protocol, read by the parent: not messages to people;
# and the scale and ORT-options benchmarks, programs of their own (`python -m edgeship.bench.scale`) whose output is its table.
PRINT_ALLOWED = {"bench/agent.py", "bench/probe.py", "bench/scale.py", "bench/ort_int8_options.py"}


SUBPACKAGES = {"cli/sweep": "edgeship.sweep"}  # the sweep composes train, export and bench: the CLI's layer


def _module_name(path: Path) -> str:
    folder = path.parent.relative_to(REPO).as_posix()
    package = path.parent.name
    root = SUBPACKAGES.get(folder) or ("edgeship" if package == "cli" else f"edgeship.{package}")
    return root if path.stem == "__init__" else f"{root}.{path.stem}"


def _modules() -> dict[str, Path]:
    found = {}
    for folder in (*PACKAGES.values(), *SUBPACKAGES):
        for path in sorted((REPO / folder).glob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every edgeship module PATH imports, lazily or not (relative imports resolved)."""
    package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)  # `from edgeship.core import layout`
    return {n for n in names if n == "edgeship" or n.startswith("edgeship.")}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "cli"


def _graph(modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
    modules = _modules() if modules is None else modules
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imports(path, module):
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _violations(graph: dict[str, set[str]]) -> list[str]:
    violations = []
    for module, targets in graph.items():
        source = _package_of(module)
        for target in targets:
            package = _package_of(target)
            if package != source and package not in ALLOWED[source]:
                violations.append(f"{module} imports {target}")
    return violations


def test_packages_import_only_the_layers_below_them():
    violations = _violations(_graph())
    assert not violations, "\n".join(violations)


def test_the_module_import_graph_has_no_cycle():
    graph = _graph()
    # Package __init__ modules re-export their own submodules; an edge into one's own package's __init__
    # is not a cycle in the design, so those edges are left out.
    edges = {m: {t for t in ts if not (t in ("edgeship",) or (t.count(".") == 1 and m.startswith(t + ".")))}
             for m, ts in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in edges.get(node, ()):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The rule bites: a runtime module importing core is reported."""
    modules = _modules()
    fake = tmp_path / "x.py"
    fake.write_text("from edgeship.core.layout import RunLayout\n")
    assert _violations(_graph({**modules, "edgeship.runtime.x": fake})) == [
        "edgeship.runtime.x imports edgeship.core.layout"]


@pytest.mark.parametrize("folder", ["runtime", "core", "train", "export", "bench", "cli/sweep"])
def test_library_modules_log_instead_of_printing(folder):
    offenders = []
    for path in sorted((REPO / folder).glob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative in PRINT_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{relative}:{node.lineno}")
    assert not offenders, "print() in library code (use logging.getLogger('edgeship')): " + ", ".join(offenders)
