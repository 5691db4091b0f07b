"""The architecture, checked: the import graph between edgeship's packages (string imports and registry strings
included) has no cycle and follows the layers runtime <- core <- targets <- {train, export, bench} <- sweep <- cli,
and library code logs instead of printing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# folder -> import package; the package root `edgeship/` holds only __init__ and __main__
PACKAGES = {"runtime": "edgeship.runtime", "core": "edgeship.core", "targets": "edgeship.targets",
            "train": "edgeship.train", "export": "edgeship.export", "bench": "edgeship.bench",
            "sweep": "edgeship.sweep", "cli": "edgeship.cli", "edgeship": "edgeship"}
# What each layer may import of edgeship (besides itself), bottom to top.
ALLOWED = {
    "runtime": set(),
    "core": {"runtime"},
    "targets": {"runtime", "core"},
    "train": {"runtime", "core"},
    "export": {"runtime", "core", "targets"},
    "bench": {"runtime", "core", "targets"},
    "sweep": {"runtime", "core", "targets", "train", "export", "bench"},
    "cli": {"runtime", "core", "targets", "train", "export", "bench", "sweep"},
    "edgeship": {"runtime", "core", "cli"},
}
# Child-process programs whose stdout *is* their JSON protocol, read by the parent: not messages to people;
# the scale and ORT-options benchmarks, programs of their own (`python -m edgeship.bench.scale`) whose output is its
# table; and the schema generator's `--check` line (`python -m edgeship.core.schema_gen`).
PRINT_ALLOWED = {"bench/agent.py", "bench/probe.py", "bench/scale.py", "bench/ort_int8_options.py", "core/schema_gen.py"}
LIBRARY_FOLDERS = ("runtime", "core", "targets", "train", "export", "bench", "sweep")


def _module_name(path: Path) -> str:
    root = PACKAGES[path.parent.relative_to(REPO).as_posix()]
    return root if path.stem == "__init__" else f"{root}.{path.stem}"


def _modules() -> dict[str, Path]:
    found = {}
    for folder in PACKAGES:
        for path in sorted((REPO / folder).glob("*.py")):
            found[_module_name(path)] = path
    return found


_MODULE_REF = re.compile(r"^(edgeship(?:\.\w+)+)(?::\w+)?$")  # "edgeship.export.embed" or "edgeship.x:func"
_RELATIVE_REF = re.compile(r"^(\w+):\w+$")  # "embed:embed_tflite": a registry's "module:function" string


def _string_imports(tree: ast.AST, package: str) -> set[str]:
    """Modules named in strings: what importlib, entry points or a registry would import. A `module:function`
    string counts as the module of that name in any edgeship package (it is resolved somewhere). Only names of
    real modules and packages count ("edgeship.json" is a file name)."""
    known = set(_modules()) | set(PACKAGES.values())
    names = set()
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value).rstrip(".")  # f"edgeship.cli.{name}": the package it reaches into
        if not text:
            continue
        match = _MODULE_REF.match(text)
        if match:
            names.add(match.group(1))
        elif _RELATIVE_REF.match(text):
            names.update(f"{root}.{text.split(':')[0]}" for root in PACKAGES.values() if root != "edgeship")
    return names & known


def _imports(path: Path, module: str) -> set[str]:
    """Every edgeship module PATH imports, lazily or not (relative imports resolved), or names in a string."""
    package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
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
    names |= _string_imports(tree, package)
    return {n for n in names if n == "edgeship" or n.startswith("edgeship.")}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "edgeship"


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


def test_the_checker_sees_a_string_import_upward(tmp_path):
    """A registry string that importlib would resolve into a higher layer counts as an import: the old
    `"embed:embed_tflite"` row in core, or an `import_module("edgeship.export.embed")` in runtime."""
    modules = _modules()
    fake = tmp_path / "x.py"
    fake.write_text('ROW = dict(embedder="embed:embed_tflite")\nimport importlib\n'
                    'importlib.import_module("edgeship.bench.runner")\n')
    violations = _violations(_graph({**modules, "edgeship.core.x": fake}))
    assert "edgeship.core.x imports edgeship.export.embed" in violations
    assert "edgeship.core.x imports edgeship.bench.runner" in violations


def test_the_package_root_is_small():
    """`edgeship/` is where a reader looks first: the public names and `python -m edgeship`, nothing else."""
    assert sorted(p.name for p in (REPO / "edgeship").glob("*.py")) == ["__init__.py", "__main__.py"]


@pytest.mark.parametrize("folder", LIBRARY_FOLDERS)
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


def test_modules_and_functions_stay_small():
    """Small modules with one job each: no module over 400 lines, no function over 60 (the vendored TFLite
    metadata schema is generated code and not ours)."""
    long_modules, long_functions = [], []
    for module, path in _modules().items():
        if "vendor" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 400:
            long_modules.append(f"{path.relative_to(REPO)} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
                                      f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)
