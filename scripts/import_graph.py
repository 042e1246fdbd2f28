"""The import graph of ``synthgen/`` and the architecture rules it must keep.

Reads every module under ``synthgen/`` with :mod:`ast` (nothing is imported), so the
check is fast and sees function-level imports too (``if TYPE_CHECKING:`` blocks are
skipped: they never run). Rules, each reported with the offending modules:

- no import cycles between modules of ``synthgen/``, nor between its packages;
- each package imports only from the layers below its own (:data:`LAYERS`, the README's
  "Architecture");
- ``synthgen/`` imports neither ``prefect`` nor ``dvc``;
- only ``synthgen/tracking/`` imports ``mlflow``;
- no module imports a leading-underscore name from another module;
- no module is over 500 lines, and each opens with a docstring.

Run ``python scripts/import_graph.py`` (exit 1 on a violation, one line each),
``--packages`` for the arrows between packages, or ``--dot`` for the module graph in
Graphviz form. ``tests/unit/test_architecture.py``
runs the same check in ``make test``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "synthgen"
MAX_LINES = 500
FORBIDDEN = {"prefect": "synthgen/ imports neither Prefect nor DVC", "dvc": "synthgen/ imports neither Prefect nor DVC"}
MLFLOW_HOME = "synthgen.tracking"
#: The layers of the library, top (1) to bottom: a package imports only from higher numbers.
LAYERS = {
    "__main__": 0, "cli": 1,
    "stages": 2, "consume": 2,
    "reports": 3, "tracking": 3,
    "validation": 4, "synthesizers": 4,
    "training": 5, "transformers": 5,
    "data": 6,
    "config": 7, "io": 7,
    "errors": 8, "version": 8,
}


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # synthgen modules this one imports
    external: set[str] = field(default_factory=set)  # top-level names of other packages
    private: list[str] = field(default_factory=list)  # "module._name" imported from elsewhere
    missing: list[str] = field(default_factory=list)  # synthgen modules imported that do not exist


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def scan(root: Path = ROOT) -> dict[str, Module]:
    paths = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(p, root): Module(module_name(p, root), p) for p in paths}
    for module in modules.values():
        is_package = module.path.name == "__init__.py"
        tree = ast.parse(module.path.read_text(), str(module.path))
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    _record(module, modules, alias.name, None)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    _record(module, modules, base, alias.name)
    return modules


def _record(module: Module, modules: dict[str, Module], base: str, name: str | None) -> None:
    top = base.split(".")[0]
    if top != PACKAGE:
        module.external.add(top)
        return
    target = f"{base}.{name}" if name and f"{base}.{name}" in modules else base
    if target not in modules:
        module.missing.append(target)
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    if target != module.name:
        module.imports.add(target)
    if name and name.startswith("_") and not name.startswith("__") and target == base:
        module.private.append(f"{base}.{name}")


def package_of(name: str) -> str:
    """``synthgen.stages.common`` -> ``synthgen.stages``; top-level modules are their own package."""
    return ".".join(name.split(".")[:2])


def package_graph(modules: dict[str, Module]) -> dict[str, Module]:
    """The graph of packages (and top-level modules): an edge where any module imports another package's."""
    packages: dict[str, Module] = {}
    for module in modules.values():
        source = packages.setdefault(package_of(module.name), Module(package_of(module.name), module.path))
        source.imports |= {package_of(t) for t in module.imports} - {source.name}
    for module in list(packages.values()):
        for target in module.imports:
            packages.setdefault(target, Module(target, module.path))
    return packages


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(modules[node].imports):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for name in sorted(modules):
        if name not in index:
            visit(name)
    return found


def violations(root: Path = ROOT) -> list[str]:
    modules = scan(root)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(modules)]
    packages = package_graph({k: v for k, v in modules.items() if k != PACKAGE})  # the root is the facade
    problems += [f"package cycle: {' <-> '.join(c)}" for c in cycles(packages)]
    for package in sorted(packages.values(), key=lambda p: p.name):
        short = package.name.removeprefix(PACKAGE + ".")
        if short not in LAYERS:
            problems.append(f"{short}: in no layer of scripts/import_graph.py LAYERS (add it there and to the README)")
            continue
        for target in sorted(package.imports):
            below = target.removeprefix(PACKAGE + ".")
            if below in LAYERS and LAYERS[below] <= LAYERS[short]:
                problems.append(f"{short} (layer {LAYERS[short]}) imports {below} (layer {LAYERS[below]}): "
                                "a package imports only from the layers below it")
    for module in modules.values():
        rel = module.path.relative_to(root)
        for top, why in FORBIDDEN.items():
            if top in module.external:
                problems.append(f"{rel}: imports {top} ({why})")
        if "mlflow" in module.external and not (module.name == MLFLOW_HOME or module.name.startswith(MLFLOW_HOME + ".")):
            problems.append(f"{rel}: imports mlflow (only {MLFLOW_HOME.replace('.', '/')}/ may)")
        for name in module.missing:
            problems.append(f"{rel}: imports {name}, which does not exist")
        for name in module.private:
            problems.append(f"{rel}: imports the private name {name}")
        text = module.path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES:
            problems.append(f"{rel}: {lines} lines (at most {MAX_LINES})")
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            problems.append(f"{rel}: no opening docstring saying what it holds")
    return problems


def dot(root: Path = ROOT) -> str:
    modules = scan(root)
    edges = [f'  "{m.name}" -> "{t}";' for m in modules.values() for t in sorted(m.imports)]
    return "digraph synthgen {\n" + "\n".join(sorted(edges)) + "\n}\n"


def main(argv: list[str]) -> int:
    if "--packages" in argv:
        packages = package_graph({k: v for k, v in scan().items() if k != PACKAGE})
        for name in sorted(packages):
            targets = sorted(t.removeprefix(PACKAGE + ".") for t in packages[name].imports)
            print(f"{name.removeprefix(PACKAGE + '.')} -> {', '.join(targets) or '(leaf)'}")
        return 0
    if "--dot" in argv:
        sys.stdout.write(dot())
        return 0
    problems = violations()
    for line in problems:
        print(line)
    if not problems:
        print(f"import graph ok: {len(scan())} modules, no cycles, layers kept, no forbidden imports")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
