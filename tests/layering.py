"""The layering of docs/internals.md as a checker over a source tree (used by
tests/test_architecture.py, on the repository and on a planted copy of it).

Every ``.py`` file under ``labkit/`` and ``handoff/`` is read (``rglob``: sub-packages such as
``labkit/runtime/engines/`` included); every import statement counts, wherever it is — at
the top, inside a function (a lazy import is still a dependency) or under TYPE_CHECKING —
and relative imports are resolved.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

STDLIB_OK = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "errno",
    "hashlib",
    "io",
    "json",
    "os",
    "re",
    "shutil",
    "stat",
    "tempfile",
    "typing",
    "pathlib",
    "zipfile",
}
TEXT_MODULES = ("labkit/request.py", "labkit/result_text.py", "labkit/stage_text.py")
TORCH_STAGES = {"freeze.py", "export.py", "benchmark.py"}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return names


def sources(root: Path) -> Iterator[Path]:
    for pkg in ("labkit", "handoff"):
        yield from sorted(p for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _under(names: set[str], *prefixes: str) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def layer_violations(root: Path) -> list[str]:
    """One line per import that breaks a layer rule; empty when the tree is layered."""
    out: list[str] = []

    def bad(path: Path, what: str, names: list[str]) -> None:
        if names:
            out.append(f"{path.relative_to(root)}: {what}: {', '.join(names)}")

    for path in sources(root):
        rel = path.relative_to(root).as_posix()
        mods = imports_of(path, root)
        labkit_mods = {m for m in mods if m.split(".")[0] == "labkit"}
        if rel == "labkit/errors.py":
            bad(path, "errors imports beyond the standard library", sorted(_top(mods) - STDLIB_OK))
        elif rel.startswith("labkit/bundle/"):
            bad(
                path,
                "bundle imports a third-party module",
                sorted(_top(mods) - STDLIB_OK - {"labkit", "numpy"}),
            )
            bad(
                path,
                "bundle imports above itself",
                sorted(
                    m
                    for m in labkit_mods
                    if not _under({m}, "labkit.bundle", "labkit.errors") and m != "labkit"
                ),
            )
        elif rel.startswith("labkit/runtime/"):
            bad(
                path,
                "runtime imports torch/onnx",
                sorted(_top(mods) & {"torch", "onnx", "onnxscript"}),
            )
            bad(
                path,
                "runtime imports a layer above it",
                _under(
                    mods, "labkit.pipeline", "labkit.registry", "labkit.serve", "labkit.notebook"
                ),
            )
        elif rel.startswith("labkit/pipeline/"):
            bad(
                path,
                "pipeline imports the notebook layer, serve or the CLI",
                _under(mods, "labkit.notebook", "labkit.serve", "handoff"),
            )
            if "torch" in _top(mods) and path.name not in TORCH_STAGES:
                out.append(f"{rel}: torch outside {sorted(TORCH_STAGES)}")
        elif rel == "labkit/registry.py":
            bad(
                path,
                "registry imports a layer above it",
                _under(mods, "labkit.pipeline", "labkit.notebook", "labkit.serve"),
            )
        elif rel.startswith("labkit/serve/"):
            bad(path, "serve imports torch/onnx", sorted(_top(mods) & {"torch", "onnx"}))
            bad(
                path,
                "serve imports the pipeline or the notebook layer",
                _under(mods, "labkit.pipeline", "labkit.notebook"),
            )
        elif rel.startswith("handoff/"):
            bad(path, "the CLI imports the notebook layer", _under(mods, "labkit.notebook"))
        elif rel in TEXT_MODULES:
            bad(
                path,
                "a text/vocabulary module imports a third-party module",
                sorted(_top(mods) - STDLIB_OK - {"labkit", "math", "sys", "time"}),
            )
            bad(
                path,
                "a text/vocabulary module imports a layer",
                _under(
                    mods,
                    "labkit.pipeline",
                    "labkit.notebook",
                    "labkit.serve",
                    "labkit.runtime",
                    "labkit.registry",
                ),
            )
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (names resolved to real modules).
    Package ``__init__`` files are left out: ``from labkit.notebook import prechecks`` is a
    dependency on ``prechecks``, not on everything the package re-exports."""
    files = {module_name(p, root): p for p in sources(root) if p.name != "__init__.py"}
    packages = {module_name(p, root) for p in sources(root) if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        if not (mod == package or mod.startswith(package + ".")):
            continue
        deps = set()
        for name in imports_of(path, root):
            while name and name not in files and name not in packages:
                name = name.rpartition(".")[0]
            if name in packages:
                continue
            if name and name != mod and name.startswith(package + ".") and name != package:
                deps.add(name)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (import circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found
