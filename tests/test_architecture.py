"""The import rules of the project, read from the source with `ast` (no project module is imported here,
except by the fresh-interpreter test, which imports them in a child process):

- no import cycles between the modules of extract, lxmert, pipelines, tasks and service, counting every import
  that runs, at module level or inside a function; imports under `if TYPE_CHECKING:` never run and do not count;
- data flows one way, image -> extract -> lxmert -> tasks / pipelines -> service: extract and lxmert import
  neither each other nor tasks, pipelines or service, tasks imports neither pipelines nor service, and
  pipelines does not import service (the server is the top: nothing imports it);
- every module imports in a fresh interpreter, whichever module is imported first;
- a package's own modules import from the module that defines a name, never from the package root that
  re-exports it for users.

Modules are found by walking the package folders, so the rules hold whatever the modules are called.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extract", "lxmert", "pipelines", "tasks", "service")
# package -> the packages it must not import
FORBIDDEN = {
    "extract": {"lxmert", "tasks", "pipelines", "service"},
    "lxmert": {"extract", "tasks", "pipelines", "service"},
    "tasks": {"pipelines", "service"},
    "pipelines": {"service"},
}


@dataclass(frozen=True)
class _Import:
    source: str  # the importing module
    target: str  # the imported module: `from a import b` is `a.b` when that is a module, else `a`
    path: Path
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.source} imports {self.target}"


def _modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Module name -> source file; a package folder without `__init__.py` (a namespace package) maps to
    the folder."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            for end in range(1, len(parts)):
                modules.setdefault(".".join(parts[:end]), root.joinpath(*parts[:end]))
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(nodes, type_only: bool = False):
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.body, True)
            yield from _import_nodes(node.orelse, type_only)
        else:
            yield from _import_nodes(ast.iter_child_nodes(node), type_only)


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: `.` is the module's package, `..` its parent
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    return list(dict.fromkeys(targets))


def _imports(root: Path, modules: dict[str, Path]) -> list[_Import]:
    """Every import statement of every module, wherever it sits in the file, resolved to a module name."""
    found = []
    for module, path in modules.items():
        if path.suffix != ".py":
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, type_only in _import_nodes(tree.body):
            for target in _targets(node, package, modules):
                found.append(_Import(module, target, path.relative_to(root), node.lineno, type_only))
    return found


def _import_graph(imports: list[_Import], modules: dict[str, Path]) -> dict[str, dict[str, _Import]]:
    """Module -> the project modules it imports at run time, each with its first import statement."""
    graph = {}
    for found in imports:
        if found.target in modules and not found.type_only:
            graph.setdefault(found.source, {}).setdefault(found.target, found)
    return graph


def _strongly_connected(graph) -> list[list[str]]:
    """Tarjan's algorithm: groups of modules that all reach each other."""
    index, low, stack, components = {}, {}, [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _shortest_cycle(graph, start: str, members: set[str]) -> list[str] | None:
    previous = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if successor in members and successor not in previous:
                previous[successor] = node
                queue.append(successor)
    return None


def _cycles(graph) -> list[list[str]]:
    """Import cycles as [a, b, ..., a]: in each strongly connected group, the shortest cycle through each
    member, each cycle once."""
    cycles, seen = [], set()
    for component in _strongly_connected(graph):
        for start in sorted(component):
            cycle = _shortest_cycle(graph, start, set(component))
            if cycle is None:
                continue
            first = cycle.index(min(cycle))
            key = tuple(cycle[first:-1] + cycle[:first])
            if key not in seen:
                seen.add(key)
                cycles.append(cycle)
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, _Import]]) -> str:
    edges = [graph[source][target] for source, target in pairwise(cycle)]
    return "\n".join([" -> ".join(cycle), *(f"    {edge}" for edge in edges)])


def _top(module: str) -> str:
    return module.split(".")[0]


def test_no_import_cycles():
    modules = _modules(ROOT)
    graph = _import_graph(_imports(ROOT, modules), modules)
    cycles = _cycles(graph)
    assert not cycles, (
        f"{len(cycles)} import cycles (move the shared code to where both can import it, or pass it in):\n"
        + "\n".join(_describe(cycle, graph) for cycle in cycles)
    )


def test_no_upward_imports_between_packages():
    imports = _imports(ROOT, _modules(ROOT))
    upward = [found for found in imports if _top(found.target) in FORBIDDEN.get(_top(found.source), ())]
    assert not upward, (
        "imports against the data flow (image -> extract -> lxmert -> tasks / pipelines -> service):\n"
        + "\n".join(f"    {found}" for found in upward)
    )


# The layers of extract, bottom first (docs/architecture.md): a module imports its own layer or lower ones.
# The store sits just above the leaves, so every stage may use it and it uses nothing of the detector.
EXTRACT_LAYERS = {
    "extract.options": 0,
    "extract.devices": 0,
    "extract.image_errors": 0,
    "extract.images": 0,
    "extract.preprocessing": 0,
    "extract.boxes": 0,
    "extract.labels": 0,
    "extract.draw": 0,
    "extract.store": 0.5,
    "extract.model.config": 1,
    "extract.model.config_yaml": 1,
    "extract.model.detectron2_keys": 1,
    "extract.model.port_layout": 1,
    "extract.selection": 2,
    "extract.port_rule": 2,
    "extract.model": 3,
    "extract.checkpoints": 4,
    "extract.extractor": 5,
    "extract.jobs": 6,
}


def _layer(module: str) -> float | None:
    """The layer of an extract module: that of the longest EXTRACT_LAYERS entry it is or lies below."""
    matches = [name for name in EXTRACT_LAYERS if module == name or module.startswith(name + ".")]
    return EXTRACT_LAYERS[max(matches, key=len)] if matches else None


def test_extract_imports_go_down_its_layers():
    modules = _modules(ROOT)
    unplaced = [
        module for module in modules if _top(module) == "extract" and module != "extract" and _layer(module) is None
    ]
    assert not unplaced, f"modules of extract without a layer in EXTRACT_LAYERS: {unplaced}"
    upward = [
        f"    {found} (layer {_layer(found.source)} -> {_layer(found.target)})"
        for found in _imports(ROOT, modules)
        if _top(found.source) == "extract"
        and found.source != "extract"
        and _layer(found.target) is not None
        and _layer(found.target) > _layer(found.source)
    ]
    assert not upward, "imports up the layers of extract:\n" + "\n".join(upward)


def test_package_code_does_not_import_its_own_package_root():
    imports = _imports(ROOT, _modules(ROOT))
    # the target is the root only when the imported name is not a submodule (else the target is the submodule)
    from_root = [found for found in imports if found.target == _top(found.source) and found.source != found.target]
    assert not from_root, "modules importing from their package root (import from the defining module):\n" + "\n".join(
        f"    {found}" for found in from_root
    )


# Forgets the project's modules before each import, so that each is imported as if first (a cycle that one
# import order hides shows up), while torch and the other dependencies are imported once. A failure names
# the last line of project code it went through.
_IMPORT_EACH = """
import importlib, json, os, sys, traceback
packages, failures = sys.argv[1].split(","), {}
for name in sys.argv[2:]:
    for loaded in [module for module in sys.modules if module.split(".")[0] in packages]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except (Exception, SystemExit) as error:
        message = (str(error).splitlines() or [""])[0]
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(os.getcwd())]
        where = f" (at {os.path.relpath(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
        failures[name] = f"{type(error).__name__}: {message}{where}"
print(json.dumps(failures))
"""


def test_every_project_import_names_a_project_module():
    # The fresh-interpreter test runs module-level imports only: an import inside a function (the command
    # lines import late, to start fast) that names a moved module would fail only when the function runs.
    modules = _modules(ROOT)
    broken = [
        str(found)
        for found in _imports(ROOT, modules)
        if _top(found.target) in PACKAGES and found.target not in modules
    ]
    assert not broken, "imports of project modules that do not exist:\n" + "\n".join(broken)


def test_modules_import_in_a_fresh_interpreter():
    modules = _modules(ROOT)
    names = sorted(name for name, path in modules.items() if path.suffix == ".py" and not name.endswith("__main__"))
    packages = sorted({_top(name) for name in modules})
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, ",".join(packages), *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"the import process failed:\n{result.stderr[-3000:]}"
    failures = json.loads(result.stdout.splitlines()[-1])
    assert not failures, f"{len(failures)} of {len(names)} modules fail to import:\n" + "\n".join(
        f"    {name}: {error}" for name, error in failures.items()
    )


def _write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        (root / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "pkg" / name).write_text(text)
    return _modules(root, ("pkg",))


def test_cycle_finder_reports_a_cycle(tmp_path):
    modules = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "def load():\n    from .sub.c import x\n",
            "sub/c.py": "import pkg.a\n",
            "d.py": "from .d import y\n",
        },
    )
    graph = _import_graph(_imports(tmp_path, modules), modules)
    assert sorted(_cycles(graph)) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"], ["pkg.d", "pkg.d"]]
    assert _describe(["pkg.d", "pkg.d"], graph) == "pkg.d -> pkg.d\n    pkg/d.py:1 pkg.d imports pkg.d"


def test_cycle_finder_ignores_type_checking_parents_and_siblings(tmp_path):
    modules = _write_package(
        tmp_path,
        {
            "__init__.py": "from .a import x\nfrom .b import y\n",  # a re-export: a does not import it back
            "a.py": "from .b import y\nimport typing\nif typing.TYPE_CHECKING:\n    from pkg import c\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\nelse:\n    import os\n",
            "c.py": "from . import a, b\n",
        },
    )
    graph = _import_graph(_imports(tmp_path, modules), modules)
    assert _cycles(graph) == []
    assert {source: sorted(targets) for source, targets in graph.items()} == {
        "pkg": ["pkg.a", "pkg.b"],
        "pkg.a": ["pkg.b"],
        "pkg.c": ["pkg.a", "pkg.b"],
    }
